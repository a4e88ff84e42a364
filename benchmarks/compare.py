"""Side by side: median wall time to start /bin/true in fastbox (CLI and API), runc, crun, bwrap.

    python benchmarks/compare.py [-n 200] [--warmup 10] [--round 20] [--json FILE] [--host-store]

Contenders run interleaved in rounds of --round runs, so drift in machine load hits all alike.
fastbox uses an isolated temp store seeded with the same busybox rootfs as the peers (unless
--host-store) and the peers' limits (256 MiB, 1 CPU, 1024 pids). "C floor" is floor.c, compiled
here: only the syscalls such a container needs, so "vs floor" is each one's overhead over the
kernel's, as a ratio that this machine's drift cancels out of.

"fastbox CLI" is the `fastbox` command as users run it, with `fastbox engine start` done (the
C client hands the run to the warm engine); "CLI (python)" is the same command with no engine
(FASTBOX_NO_ENGINE=1), which runs the whole Python CLI.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


class Contender:
    def __init__(self, name, timer):
        self.name, self.timer, self.times, self.note = name, timer, [], None

    def time(self, k):
        self.times += self.timer(k)


def fastbox_api_timer(fastbox, phases):
    """Times fastbox.run in-process; keeps each run's phase timings in PHASES."""
    def timer(k):
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            result = fastbox.run("busybox", ["/bin/true"], remove=True, **peers.FASTBOX_LIMITS)
            times.append(time.perf_counter() - t0)
            if result.exit_code != 0:
                raise peers.PeerError(f"fastbox.run exit_code {result.exit_code}")
            phases.append(dict(getattr(result, "timings", None) or {}))
        return times
    return timer


FLOOR_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor.c")
FLOOR_SKIP = 77  # floor.c's exit code when the host has no v1 hierarchies for it


def floor_parent():
    return f"fastbox-floor-{os.getpid()}"


def run_floor(argv, k):
    """Seconds per run from K runs of floor ARGV (the binary, then its arguments after N)."""
    r = subprocess.run([argv[0], str(k), *argv[1:]], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise peers.PeerError(f"floor exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


def build_floor(ws):
    """(floor argv, None) once floor.c is compiled into WS and runs here, else (None, why)."""
    gcc = shutil.which("gcc")
    if not gcc:
        return None, "gcc not installed"
    binary = os.path.join(ws.dir, "floor")
    r = subprocess.run([gcc, "-O2", "-o", binary, FLOOR_SRC], capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"gcc failed: {r.stderr.strip()[-300:]}"
    scratch = os.path.join(ws.dir, "floor-scratch")  # each run mounts a tmpfs here, privately
    os.makedirs(scratch, exist_ok=True)
    argv = [binary, ws.rootfs, scratch, floor_parent()]
    probe = subprocess.run([binary, "0", *argv[1:]], capture_output=True, text=True)
    if probe.returncode == FLOOR_SKIP:
        return None, probe.stderr.strip().removeprefix("floor: skipped: ")
    return argv, None


def contenders(ws, seed_note, api_phases):
    """Every contender, plus {name: why} for those that cannot run here."""
    found, skipped = [], {}
    cli = peers.fastbox_cli()
    if not os.access(cli, os.X_OK) or seed_note:
        skipped["fastbox CLI"] = seed_note or f"no fastbox command ({cli})"
    else:
        argv = [cli, "run", "--rm", *peers.FASTBOX_CLI_LIMITS, "busybox", "/bin/true"]
        python_only = {**os.environ, "FASTBOX_NO_ENGINE": "1"}
        found.append(Contender("fastbox CLI", lambda k: peers.time_runs(argv, k)))
        found.append(Contender("CLI (python)", lambda k: peers.time_runs(argv, k, env=python_only)))
    fastbox, why = peers.load_fastbox()
    if fastbox is None or seed_note:
        skipped["fastbox API"] = why or seed_note
    else:
        found.append(Contender("fastbox API", fastbox_api_timer(fastbox, api_phases)))
    for peer in peers.PEERS:
        if peer in ws.skipped:
            skipped[peer] = ws.skipped[peer]
        else:
            found.append(Contender(peer, lambda k, p=peer: ws.time(p, k)))
    floor, why = build_floor(ws)
    if floor is None:
        skipped["C floor"] = why
    else:
        found.append(Contender("C floor", lambda k: run_floor(floor, k)))
    return found, skipped


def run_rounds(found, n, warmup, round_size):
    """Warm each contender up, then N timed runs each, in interleaved rounds."""
    live = []
    for c in found:
        try:
            c.timer(max(warmup, 1))  # also proves it works before timing
            live.append(c)
        except Exception as e:
            c.note = f"failed in warmup: {e}"
    for r in range(0, n, round_size):
        k = min(round_size, n - r)
        shift = (r // round_size) % max(len(live), 1)
        for c in live[shift:] + live[:shift]:  # rotate who goes first
            if c.note is None:
                try:
                    c.time(k)
                except Exception as e:
                    c.note = f"failed after {len(c.times)} runs: {e}"
    return found


def cgroup_mode():
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if peers.hybrid():
        with open(os.path.join(peers.UNIFIED, "cgroup.controllers")) as f:
            ctrls = f.read().split()
        return f"hybrid (v1 + cgroup2 at {peers.UNIFIED} with: {' '.join(ctrls) or 'none'})"
    return "v1"


def version(tool):
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return out.split("\n")[0].split()[-1] if out else None


def machine():
    tools = {t: version(t) for t in peers.PEERS}
    return {"kernel": platform.release(), "nproc": os.cpu_count(), "cgroup": cgroup_mode(),
            "python": platform.python_version(), **{t: v for t, v in tools.items() if v}}


def results_table(found, skipped):
    stats = {c.name: peers.summary_ms(c.times) for c in found if c.times and c.note is None}
    ref = {k: stats[k]["median"] for k in ("fastbox CLI", "fastbox API", "C floor") if k in stats}

    def ratio(median, key):
        return f"{median / ref[key]:8.2f}x" if key in ref else f"{'-':>9}"

    lines = [f"{'name':13} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} "
             f"{'vs CLI':>9} {'vs API':>9} {'vs floor':>9}"]
    for name, s in stats.items():
        lines.append(f"{name:13} {s['n']:4d} {s['median']:10.2f} {s['p90']:8.2f} {s['min']:8.2f} "
                     f"{ratio(s['median'], 'fastbox CLI')} {ratio(s['median'], 'fastbox API')} "
                     f"{ratio(s['median'], 'C floor')}")
    notes = {**skipped, **{c.name: c.note for c in found if c.note}}
    lines += [f"{name:13} skipped: {why}" for name, why in notes.items()]
    return stats, notes, "\n".join(lines)


def phase_medians(api_phases):
    """Median ms-since-call of each phase fastbox.run reports, in order of when it happens."""
    keys = dict.fromkeys(k for t in api_phases for k in t)  # first-seen order breaks ties
    med = {k: statistics.median(t[k] for t in api_phases if k in t) for k in keys}
    return dict(sorted(med.items(), key=lambda kv: kv[1]))


def start_engine(seed_note):
    """`fastbox engine start` in fastbox's (isolated) environment; the argv that stops it."""
    engine = [peers.fastbox_cli(), "engine"]
    if seed_note or not os.access(engine[0], os.X_OK):
        return None
    r = subprocess.run([*engine, "start"], capture_output=True, text=True)
    if r.returncode != 0:
        raise peers.PeerError(f"fastbox engine start: {r.stderr.strip()}")
    return engine


def isolate_fastbox(ws, host_store):
    """Point fastbox at a temp store holding our busybox; returns why fastbox can't run, or None."""
    if host_store:
        return None
    os.environ.update(peers.fastbox_env(ws.dir))
    return peers.seed_busybox(ws.rootfs, ws.dir)


def check_clean(ws, host_store):
    """Leaked fastbox containers, any cgroup the floor kept, then anything else left once all
    is removed."""
    parent = os.environ.get("FASTBOX_CGROUP_PARENT") if not host_store else None
    left = [f"fastbox cgroup {d}" for d in peers.cgroup_children(parent)] if parent else []
    if parent:
        peers.remove_cgroup_tree(parent)
    floor = floor_parent()
    left += [f"floor cgroup {d}" for d in peers.cgroup_dirs(floor)]  # floor.c removes its own
    peers.remove_cgroup_tree(floor)
    parents = (peers.CGROUP_PARENT, floor) + ((parent,) if parent else ())
    return left + peers.leftovers(ws.dir, parents)


def main(argv=None):
    # the CLI's default network is the bridge: its bridge, veths, nft table and
    # sysctls stay in a namespace of our own, never the host's
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("compare")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=200, help="timed runs per contender")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--round", type=int, default=20, help="runs per contender per round")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--host-store", action="store_true",
                   help="use FASTBOX_ROOT/RUN as set (must hold busybox), not a temp store")
    args = p.parse_args(argv)
    info = machine()
    print(" | ".join(f"{k} {v}" for k, v in info.items()))
    api_phases = []
    ws = peers.PeerWorkspace()
    engine = None
    try:
        seed_note = isolate_fastbox(ws, args.host_store)
        engine = start_engine(seed_note)
        found, skipped = contenders(ws, seed_note, api_phases)
        run_rounds(found, args.n, args.warmup, max(args.round, 1))
    finally:
        if engine:
            subprocess.run([*engine, "stop"], stdout=subprocess.DEVNULL)
        ws.close()
        left = check_clean(ws, args.host_store)
    stats, notes, table = results_table(found, skipped)
    print(table)
    phases = phase_medians(api_phases[-args.n:]) if api_phases else {}
    if phases:
        print("fastbox API phases (median ms since call): "
              + "  ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    shown = ", ".join(left[:5]) + (f", ... ({len(left)} in all)" if len(left) > 5 else "")
    print("leftovers:", shown or "none")
    if args.json:
        runs = {c.name: [t * 1000 for t in c.times] for c in found if c.name in stats}
        out = {"machine": info, "args": vars(args), "api_phases_ms": phases, "skipped": notes,
               "leftovers": left,
               "results": {k: {**s, "runs_ms": runs[k]} for k, s in stats.items()}}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
