"""fastbox.bench.report and the parsers behind `fastbox bench`: statistics, the phase
breakdown, tables, CSV and JSON, on made-up results (no container runs here)."""
import csv
import io
import json
import os
import stat

import pytest

from fastbox.bench import copyup, report, startup


def latency_rows(lines):
    """{contender: fields} of a startup table's latency rows (name, then n)."""
    return {f[0]: f for f in (line.split() for line in lines) if len(f) > 2 and f[1].isdigit()}


def timings(base, step=1.0):
    """A run whose stamps follow report.STAMPS, `step` ms apart, starting at base."""
    return {key: base + i * step for i, key in enumerate(report.STAMPS)}


def test_percentile_interpolates_like_numpy():
    v = [1.0, 2.0, 3.0, 4.0]
    assert report.percentile(v, 0) == 1.0
    assert report.percentile(v, 50) == 2.5
    assert report.percentile(v, 100) == 4.0
    assert report.percentile(v, 90) == pytest.approx(3.7)
    assert report.percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        report.percentile([], 50)


def test_summarize():
    s = report.summarize([3.0, 1.0, 2.0, 10.0])
    assert s["n"] == 4 and s["min"] == 1.0 and s["max"] == 10.0
    assert s["median"] == 2.5 and s["mean"] == 4.0
    assert s["min"] <= s["median"] <= s["p90"] <= s["p99"] <= s["max"]


def test_ratios_are_to_the_reference():
    c = report.add_ratios({"fastbox": {"median": 2.0}, "runc": {"median": 20.0}}, "fastbox")
    assert c["fastbox"]["ratio"] == 1.0 and c["runc"]["ratio"] == 10.0
    c = report.add_ratios({"runc": {"median": 20.0}}, "fastbox")
    assert c["runc"]["ratio"] is None


def test_phase_breakdown_adds_up_to_the_median_total():
    runs = [timings(0.1, 1.0), timings(0.2, 2.0), timings(0.3, 1.5)]
    b = report.phase_breakdown(runs)
    assert list(b["stamps_ms"]) == list(report.STAMPS)
    assert list(b["durations_ms"]) == [name for _, name in report.PHASES]
    assert sum(b["durations_ms"].values()) == pytest.approx(b["stamps_ms"]["total"])
    assert all(d >= 0 for d in b["durations_ms"].values())
    assert b["durations_ms"]["teardown"] == pytest.approx(
        b["stamps_ms"]["total"] - b["stamps_ms"]["exited"])


def test_phase_breakdown_skips_stamps_most_runs_lack():
    runs = [timings(0, 1.0) for _ in range(3)]
    for t in runs[:2]:
        del t["child_start"]
    b = report.phase_breakdown(runs)
    assert "child_start" not in b["stamps_ms"]
    assert "child runs" not in b["durations_ms"]
    assert sum(b["durations_ms"].values()) == pytest.approx(b["stamps_ms"]["total"])


def startup_result():
    fb = [2.0, 2.5, 3.0, 2.2]
    runc = [20.0, 22.0, 21.0, 25.0]
    contenders = {"fastbox": {**report.summarize(fb), "runs_ms": fb},
                  "runc": {**report.summarize(runc), "runs_ms": runc}}
    report.add_ratios(contenders, "fastbox")
    return {"benchmark": "startup", "machine": {"kernel": "6.18"},
            "config": {"n": 4, "concurrency": 1, "image": "busybox", "network": "none",
                       "warmup": 1, "command": ["/bin/true"]},
            "reference": "fastbox", "contenders": contenders,
            "skipped": {"podman": "podman not installed"},
            "phases": report.phase_breakdown([timings(0.1), timings(0.2)]),
            "notes": [], "leftovers": []}


def test_startup_table():
    text = report.startup_table(startup_result())
    rows = latency_rows(text.splitlines())
    assert rows["fastbox"][1] == "4" and rows["fastbox"][-1] == "1.00x"
    assert rows["runc"][2] == "21.50" and rows["runc"][-1] == "9.15x"
    assert "skipped podman: podman not installed" in text
    assert "clone+namespaces" in text and "teardown" in text
    assert "LEFT BEHIND" not in text


def test_startup_table_shows_leftovers():
    result = startup_result()
    result["leftovers"] = ["cgroup /sys/fs/cgroup/memory/fastbox-peers/runc-1"]
    assert "LEFT BEHIND: cgroup" in report.startup_table(result)


def test_startup_csv():
    rows = list(csv.DictReader(io.StringIO(report.startup_csv(startup_result()))))
    assert tuple(rows[0]) == report.STARTUP_CSV
    latency = {r["name"]: r for r in rows if r["section"] == "latency"}
    assert float(latency["runc"]["median_ms"]) == pytest.approx(21.5)
    assert float(latency["fastbox"]["ratio"]) == 1.0
    phases = [r for r in rows if r["section"] == "phase"]
    assert [r["name"] for r in phases] == [name for _, name in report.PHASES]
    assert float(phases[-1]["at_ms"]) == pytest.approx(report.STAMPS.index("total") + 0.15)


def test_json_with_and_without_runs():
    result = startup_result()
    assert json.loads(report.to_json(result))["contenders"]["runc"]["runs_ms"] == [20.0, 22.0, 21.0, 25.0]
    slim = json.loads(report.to_json(result, runs=False))
    assert "runs_ms" not in slim["contenders"]["runc"] and slim["contenders"]["runc"]["n"] == 4
    assert "runs_ms" in result["contenders"]["runc"]  # the original is untouched


def copyup_result():
    def row(op, variant, ms):
        return {"op": op, "variant": variant, "median_ms": dict(zip(["4k", "1m"], ms)),
                "runs_ms": {"4k": [ms[0]], "1m": [ms[1]]}}
    result = {"benchmark": "copyup", "config": {"sizes": ["4k", "1m"], "rounds": 1}, "rows": [
        row("write", "volume (no overlay)", [0.01, 0.01]),
        row("write", "tmpfs upper (--rm)", [0.05, 0.5]),
        row("write", "disk upper", [0.8, 2.0]),
        row("write", "disk upper, volatile", [0.1, 0.4]),
        row("chmod", "disk upper", [0.7, 1.9]),
        row("chmod", "disk upper, metacopy=on", [0.05, 0.02])]}
    result["conclusion"] = copyup.conclusion(result)
    return result


def test_copyup_conclusion_names_the_cheapest_overlay_option():
    lines = copyup.conclusion(copyup_result())
    assert lines[0].startswith("cheapest first write of 1m through the overlay: disk upper, volatile (0.40 ms")
    assert "volume" not in lines[0]
    assert lines[1] == "a volume (no copy-up): 0.010 ms"
    assert "metacopy=on copies only metadata" in lines[2]


def test_copyup_table_and_csv():
    result = copyup_result()
    text = report.copyup_table(result)
    head = next(line for line in text.splitlines() if line.startswith("op "))
    assert head.split()[-2:] == ["4k", "1m"]
    assert any(line.split()[-2:] == ["0.10", "0.40"] for line in text.splitlines()
               if line.startswith("write  disk upper, volatile"))
    rows = list(csv.DictReader(io.StringIO(report.copyup_csv(result))))
    assert len(rows) == 6 * 2
    assert rows[0] == {"op": "write", "variant": "volume (no overlay)", "size": "4k",
                       "median_ms": "0.0100", "runs_ms": "0.0100"}


def test_parse_sizes():
    assert copyup.parse_sizes("4k, 64k,1m,512M,100") == [
        ("4k", 4096), ("64k", 65536), ("1m", 1 << 20), ("512m", 512 << 20), ("100", 100)]
    for bad in ("", "x", "4q", "0k"):
        with pytest.raises(ValueError):
            copyup.parse_sizes(bad)


def test_parse_compare():
    assert startup.parse_compare("runc, crun,runc") == ("runc", "crun")
    assert startup.parse_compare(None) == ()
    with pytest.raises(ValueError, match="unknown peer docker"):
        startup.parse_compare("bwrap,docker")


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are 0/0 device nodes: needs root")
def test_export_rootfs_applies_whiteouts_and_opaque_dirs(tmp_path):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower / "etc", lower / "opaque", upper / "opaque"):
        d.mkdir(parents=True)
    (lower / "etc" / "gone").write_text("x")
    (lower / "etc" / "kept").write_text("lower")
    (lower / "opaque" / "old").write_text("x")
    (upper / "etc").mkdir()
    (upper / "etc" / "kept").write_text("upper")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "new").write_text("x")
    os.symlink("etc/kept", upper / "link")
    dest = startup.export_rootfs([str(upper), str(lower)], str(tmp_path / "out"))
    assert sorted(os.listdir(os.path.join(dest, "etc"))) == ["kept"]
    assert open(os.path.join(dest, "etc", "kept")).read() == "upper"
    assert os.listdir(os.path.join(dest, "opaque")) == ["new"]
    assert os.readlink(os.path.join(dest, "link")) == "etc/kept"


def test_plot_needs_matplotlib_with_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(report.PlotUnavailable, match="needs matplotlib"):
        report.plot_startup(startup_result(), "/nonexistent/x.png")
