"""Statistics and output for `fastbox bench`: summaries, the per-phase breakdown, tables,
JSON, CSV and plots. Pure functions of the result dicts that startup.py and copyup.py
build, so they are tested without running a container.

A startup result:
    {"benchmark": "startup", "machine": {...}, "config": {...},
     "contenders": {name: {"n", "median", "p90", "p99", "min", "max", "mean", "ratio",
                           "runs_ms": [...]}},
     "reference": "fastbox", "skipped": {name: why},
     "phases": {"stamps_ms": {stamp: median ms since the call},
                "durations_ms": {phase: ms}}, "leftovers": [...]}
A copy-up result:
    {"benchmark": "copyup", "machine": {...}, "config": {"sizes": [...], "rounds": R},
     "rows": [{"op", "variant", "median_ms": {size: ms}, "runs_ms": {size: [...]}}],
     "conclusion": [...]}
"""
import csv
import io
import json
import math

# The core's and the API's stamps in the order they happen, and the name of the phase that
# ends at each (its duration is the difference from the stamp before).
PHASES = (
    ("image", "resolve"),          # spec validated, image resolved
    ("start", "plan"),             # Python planned the container, entered the core
    ("cgroup_ready", "cgroup setup"),  # cgroups made, limits written
    ("cloned", "clone+namespaces"),    # clone3 with the new namespaces returned
    ("child_start", "child runs"),     # the child's first instruction
    ("cgroup", "cgroup join"),         # child in its cgroups, cgroup namespace
    ("rootfs", "overlay"),             # overlay (and scratch tmpfs) mounted
    ("pivot", "pivot_root"),
    ("mounts", "mounts"),              # /proc, /dev, /sys, volumes, masks
    ("exec", "identity+seccomp"),      # hostname, ids, capabilities, seccomp
    ("execed", "exec"),                # the parent saw the exec
    ("exited", "run+exit"),            # the program ran and exited, namespaces went
    ("total", "teardown"),             # cgroups removed: total - exited
)
STAMPS = tuple(s for s, _ in PHASES)
PHASE_OF = dict(PHASES)
STAT_KEYS = ("n", "median", "p90", "p99", "min", "max", "mean")


def percentile(sorted_values, q):
    """The q-th percentile (0..100) of sorted values, linear between closest ranks
    (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values_ms):
    """n, median, p90, p99, min, max, mean of a list of milliseconds."""
    v = sorted(values_ms)
    return {"n": len(v), "median": percentile(v, 50), "p90": percentile(v, 90),
            "p99": percentile(v, 99), "min": v[0], "max": v[-1], "mean": sum(v) / len(v)}


def add_ratios(contenders, reference):
    """Each contender's median over the reference's (so the reference is 1.0)."""
    ref = contenders.get(reference, {}).get("median")
    for stats in contenders.values():
        stats["ratio"] = stats["median"] / ref if ref else None
    return contenders


def phase_breakdown(timings):
    """Per-phase medians of the stamps (ms since the call) over runs, and each phase's
    duration as the difference between consecutive median stamps. In every run the stamps
    nearly only grow: the child's first stamp can come before the parent sees clone3
    return, so a phase that ends before the one before it counts 0 and the next is measured
    from the later stamp. The durations are never negative and add up to the median total."""
    stamps = {}
    for key in STAMPS:
        values = [t[key] for t in timings if key in t]
        if values and len(values) * 2 >= len(timings):  # a stamp most runs have
            stamps[key] = percentile(sorted(values), 50)
    durations, prev = {}, 0.0
    for key, value in stamps.items():
        durations[PHASE_OF[key]] = max(value - prev, 0.0)
        prev = max(prev, value)
    return {"stamps_ms": stamps, "durations_ms": durations}


# ---------------------------------------------------------------- text

def _ms(x):
    return f"{x:.2f}" if x is not None else "-"


def _ratio(x):
    return f"{x:.2f}x" if x is not None else "-"


def startup_table(result):
    """The latency table, skipped contenders, and the per-phase breakdown, as text."""
    lines = []
    cfg = result.get("config", {})
    if cfg:
        lines.append(f"{' '.join(cfg.get('command', []))} in {cfg.get('image')}, "
                     f"network {cfg.get('network')}, concurrency {cfg.get('concurrency')}, "
                     f"n {cfg.get('n')}, warmup {cfg.get('warmup')}")
    ref = result.get("reference", "fastbox")
    head = f"{'contender':<16} {'n':>5} {'median':>8} {'p90':>8} {'p99':>8} {'min':>8} {'max':>8}  vs {ref}"
    lines += [head, "-" * len(head)]
    for name, s in result.get("contenders", {}).items():
        lines.append(f"{name:<16} {s['n']:>5} {_ms(s['median']):>8} {_ms(s['p90']):>8} "
                     f"{_ms(s['p99']):>8} {_ms(s['min']):>8} {_ms(s['max']):>8}  {_ratio(s.get('ratio'))}")
    lines.append("(ms per container, start to exit and teardown)")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"skipped {name}: {why}")
    phases = result.get("phases") or {}
    durations, stamps = phases.get("durations_ms", {}), phases.get("stamps_ms", {})
    if durations:
        lines += ["", f"{ref} phases (medians, ms)", f"  {'phase':<18} {'duration':>9} {'at':>9}"]
        for (stamp, at), (name, d) in zip(stamps.items(), durations.items()):
            lines.append(f"  {name:<18} {d:>9.3f} {at:>9.3f}   ({stamp})")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    if result.get("leftovers"):
        lines.append("LEFT BEHIND: " + ", ".join(result["leftovers"]))
    return "\n".join(lines)


def copyup_table(result):
    """Median ms per size for each (op, variant), then the conclusion."""
    sizes = result["config"]["sizes"]
    head = f"{'op':<6} {'variant':<28}" + "".join(f"{s:>10}" for s in sizes)
    lines = ["first write (open O_WRONLY|O_APPEND + write 1 byte) and chmod, timed inside "
             "the container; median ms", head, "-" * len(head)]
    for row in result["rows"]:
        lines.append(f"{row['op']:<6} {row['variant']:<28}"
                     + "".join(f"{_ms(row['median_ms'].get(s)):>10}" for s in sizes))
    lines += result.get("conclusion", [])
    return "\n".join(lines)


def to_json(result, runs=True):
    """The result as JSON; runs=False drops the per-run lists."""
    if not runs:
        result = _without_runs(result)
    return json.dumps(result, indent=2)


def _without_runs(result):
    out = dict(result)
    if "contenders" in out:
        out["contenders"] = {k: {kk: vv for kk, vv in v.items() if kk != "runs_ms"}
                             for k, v in out["contenders"].items()}
    if "rows" in out:
        out["rows"] = [{k: v for k, v in r.items() if k != "runs_ms"} for r in out["rows"]]
    return out


STARTUP_CSV = ("section", "name", "n", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms",
               "mean_ms", "ratio", "at_ms")


def startup_csv(result):
    """One row per contender (section "latency") and per fastbox phase (section "phase":
    median_ms is its duration, at_ms its median stamp)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(STARTUP_CSV)
    for name, s in result.get("contenders", {}).items():
        w.writerow(["latency", name, s["n"]] + [_num(s[k]) for k in STAT_KEYS[1:]]
                   + [_num(s.get("ratio")), ""])
    phases = result.get("phases") or {}
    for (stamp, at), (name, d) in zip(phases.get("stamps_ms", {}).items(),
                                     phases.get("durations_ms", {}).items()):
        w.writerow(["phase", name, "", _num(d), "", "", "", "", "", "", _num(at)])
    return buf.getvalue()


def copyup_csv(result):
    """One row per (op, variant, size): the median and every run."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("op", "variant", "size", "median_ms", "runs_ms"))
    for row in result["rows"]:
        for size in result["config"]["sizes"]:
            if size in row["median_ms"]:
                runs = " ".join(f"{x:.4f}" for x in row.get("runs_ms", {}).get(size, []))
                w.writerow((row["op"], row["variant"], size, _num(row["median_ms"][size]), runs))
    return buf.getvalue()


def _num(x):
    return "" if x is None else f"{x:.4f}"


# ---------------------------------------------------------------- plots

class PlotUnavailable(RuntimeError):
    pass


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'fastbox[plot]' "
                              "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_startup(result, path):
    """Latency distributions (box plot, log scale) per contender, the CDFs, and a stacked
    bar of the reference's phases. path ends in .png (or any format matplotlib writes) or
    .html (an SVG in a page, with the table)."""
    plt = _pyplot()
    contenders = result["contenders"]
    fig, (box, cdf, bar) = plt.subplots(1, 3, figsize=(15, 5), width_ratios=[3, 3, 2])
    names = list(contenders)
    data = [contenders[n]["runs_ms"] for n in names]
    try:
        box.boxplot(data, tick_labels=names, showfliers=True, whis=(1, 99))
    except TypeError:  # matplotlib < 3.9
        box.boxplot(data, labels=names, showfliers=True, whis=(1, 99))
    box.set_yscale("log")
    _plain_ticks(box.yaxis)
    box.set_ylabel("ms per container (log)")
    box.set_title("latency (whiskers p1-p99)")
    for name, runs in zip(names, data):
        v = sorted(runs)
        cdf.plot(v, [(i + 1) / len(v) for i in range(len(v))], label=name)
    cdf.set_xscale("log")
    _plain_ticks(cdf.xaxis)
    cdf.set_xlabel("ms per container (log)")
    cdf.set_ylabel("fraction of runs")
    cdf.set_title("CDF")
    cdf.legend()
    durations = (result.get("phases") or {}).get("durations_ms", {})
    bottom = 0.0
    cmap = plt.get_cmap("tab20")
    for i, (phase, d) in enumerate(durations.items()):
        bar.bar([result.get("reference", "fastbox")], [d], bottom=bottom, label=f"{phase} {d:.2f}",
                color=cmap(i % 20))
        bottom += d
    bar.set_ylabel("ms (median stamps)")
    bar.set_title("phases")
    if durations:
        bar.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    cfg = result.get("config", {})
    fig.suptitle(f"fastbox bench startup: {' '.join(cfg.get('command', []))} "
                 f"(network {cfg.get('network')}, concurrency {cfg.get('concurrency')})")
    fig.tight_layout()
    _save(fig, path, startup_table(result))
    plt.close(fig)


def plot_copyup(result, path):
    """Median ms against file size, one line per (op, variant), log-log."""
    plt = _pyplot()
    sizes = result["config"]["sizes"]
    ops = list(dict.fromkeys(r["op"] for r in result["rows"]))
    fig, axes = plt.subplots(1, len(ops), figsize=(7 * len(ops), 5), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for row in (r for r in result["rows"] if r["op"] == op):
            xs = [s for s in sizes if s in row["median_ms"]]
            ax.plot(range(len(xs)), [max(row["median_ms"][s], 1e-4) for s in xs], marker="o",
                    label=row["variant"])
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_yscale("log")
        _plain_ticks(ax.yaxis)
        ax.set_xlabel("file size")
        ax.set_ylabel("median ms (log)")
        ax.set_title(op)
        ax.legend(fontsize=8)
    fig.suptitle("fastbox bench copyup: first write through the overlay")
    fig.tight_layout()
    _save(fig, path, copyup_table(result))
    plt.close(fig)


def _plain_ticks(axis):
    """3, 10, 30 rather than 3x10^0 on log axes."""
    from matplotlib.ticker import FuncFormatter
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else ""))


def _save(fig, path, table):
    if str(path).lower().endswith((".html", ".htm")):
        import html
        svg = io.StringIO()
        fig.savefig(svg, format="svg")
        body = svg.getvalue()
        body = body[body.index("<svg"):]  # drop the XML prologue inside HTML
        with open(path, "w") as f:
            f.write("<!doctype html>\n<meta charset=utf-8>\n<title>fastbox bench</title>\n"
                    f"{body}\n<pre>{html.escape(table)}</pre>\n")
    else:
        fig.savefig(path, dpi=110)
