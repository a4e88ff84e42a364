"""fastbox from a shell with no manual set-up (the engine starts by itself) against runc
and crun, in the same run, as ratios:

    python benchmarks/autostart_compare.py [-n 50] [--warmup 5] [--json FILE]

1. The first command with no engine running: `fastbox ps` (Python CLI; it starts an
   engine in the background), and how long until that engine serves.
2. Then, interleaved round by round (the order rotates each round):
     ps:      `fastbox ps`               vs `runc list`, `crun list`
     run -d:  `fastbox run -d` (its monitor included) vs `runc run -d`, `crun run -d`
              (no monitor, no log)
     run:     `fastbox run --rm busybox true` (foreground)
     exec:    `fastbox exec ID /bin/true` vs `runc exec`, `crun exec`
     logs:    `fastbox logs ID`
   The issue's goals are printed beside the figures: `ps` at or below `crun list`, and
   `run -d` at most 0.6x `crun run -d`.

Containers are `sleep 3600` on the same busybox rootfs with the same limits
(lifecycle_compare.py's set-up: peers in absolute cgroups under /fastbox-peers, crun in a
private mount namespace with /sys/fs/cgroup/unified unmounted). Everything made is removed,
the engine is stopped, and the run fails (exit 1) if anything is left. Benchmarks report;
they never assert on time.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle_compare as lc  # noqa: E402
import peers  # noqa: E402


def wait_for_engine(run_dir, timeout=60.0):
    """Seconds until engine.pid names a live engine (it is written once it serves)."""
    t0 = time.perf_counter()
    path = os.path.join(run_dir, "engine.pid")
    while time.perf_counter() - t0 < timeout:
        try:
            with open(path) as f:
                pid = int(f.read().split()[0])
            if os.path.exists(f"/proc/{pid}"):
                return time.perf_counter() - t0
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.002)
    raise peers.PeerError("no engine started by itself")


def first_command(fb):
    """(seconds of the first `fastbox ps`, seconds more until the engine serves)."""
    first = lc.timed([fb.cli, "ps"])
    return first, wait_for_engine(os.environ["FASTBOX_RUN"])


class Runs:
    """`fastbox run -d`: each round's container is removed after the round, untimed."""

    def __init__(self, fb):
        self.fb, self.ids = fb, []

    def detached(self):
        t0 = time.perf_counter()
        r = subprocess.run([self.fb.cli, "run", "-d", *peers.FASTBOX_CLI_LIMITS, "busybox",
                            *lc.LONG_RUNNING], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise peers.PeerError(f"fastbox run -d: {r.stderr.strip()[-300:]}")
        self.ids.append(r.stdout.strip())
        return dt

    def clean(self):
        if self.ids:
            subprocess.run([self.fb.cli, "rm", "-f", *self.ids], **lc.QUIET)
            self.ids = []
        lc.reap()


def bench(fb, runc, crun, n, warmup):
    target = fb.run_api()[1]
    fb.api.get(target.id)
    peer_ids = {}
    for peer in (runc, crun):
        if peer:
            peer_ids[peer.tool] = f"as-exec-{peer.tool}-{os.getpid()}"
            peer.run_detached(peer_ids[peer.tool])
    runs = Runs(fb)
    counter = iter(range(1 << 30))
    groups = {
        "ps": [("fastbox ps", lambda: fb.cli_command("ps"))]
        + [(f"{p.tool} list", p.list) for p in (runc, crun) if p],
        "run -d": [("fastbox run -d", runs.detached)]
        + [(f"{p.tool} run -d", lambda p=p: p.run_detached(f"as-{p.tool}-{os.getpid()}-{next(counter)}"))
           for p in (runc, crun) if p],
        "run": [("fastbox run --rm true", lambda: fb.cli_command("run", "--rm", "busybox", "true"))],
        "exec": [("fastbox exec", lambda: fb.cli_command("exec", target.id, "/bin/true"))]
        + [(f"{p.tool} exec", lambda p=p: p.exec_true(peer_ids[p.tool])) for p in (runc, crun) if p],
        "logs": [("fastbox logs", lambda: fb.cli_command("logs", target.id))],
    }
    times = {group: {name: [] for name, _ in contenders} for group, contenders in groups.items()}
    for i in range(warmup + n):
        for group, contenders in groups.items():
            k = i % len(contenders)
            for name, fn in contenders[k:] + contenders[:k]:
                dt = fn()
                if i >= warmup:
                    times[group][name].append(dt)
        runs.clean()
        for peer in (runc, crun):
            if peer:  # only the exec targets stay
                keep = peer_ids[peer.tool]
                extra = [c for c in peer.ids if c != keep]
                peer.ids = extra
                peer.delete_all()
                peer.ids = [keep]
    return times


def report(first, ready, times):
    print(f"first command with no engine running: fastbox ps {first * 1000:.1f} ms; "
          f"the engine it started served {ready * 1000:.0f} ms later")
    medians = {}
    for group, by_name in times.items():
        print(f"\n{group}")
        print(f"  {'':26} {'median ms':>10} {'p90 ms':>9} {'min ms':>9} {'n':>5}")
        for name, t in by_name.items():
            s = peers.summary_ms(t)
            medians[name] = s["median"]
            print(f"  {name:26} {s['median']:10.2f} {s['p90']:9.2f} {s['min']:9.2f} {s['n']:5}")
    print("\ngoals (issue 15), same run:")
    for mine, theirs, goal in (("fastbox ps", "crun list", 1.0),
                               ("fastbox run -d", "crun run -d", 0.6),
                               ("fastbox ps", "runc list", None),
                               ("fastbox run -d", "runc run -d", None),
                               ("fastbox exec", "crun exec", None),
                               ("fastbox exec", "runc exec", None)):
        if mine in medians and theirs in medians:
            r = medians[mine] / medians[theirs]
            verdict = "" if goal is None else (f"  goal <= {goal}: {'met' if r <= goal else 'NOT met'}")
            print(f"  {mine} / {theirs}: {r:5.2f}x{verdict}")


def main(argv=None):
    # the CLI's default network is the bridge: its bridge, veths, nft table and
    # sysctls stay in a namespace of our own, never the host's
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("autostart_compare")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", help="write the raw timings here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root")
    lc.become_subreaper()
    workdir = tempfile.mkdtemp(prefix="fbas-")
    rootfs = peers.build_rootfs(os.path.join(workdir, "rootfs"))
    ocis = {tool: lc.OciPeer(tool, workdir, rootfs) for tool in ("runc", "crun")
            if shutil.which(tool)}
    runc, crun = ocis.get("runc"), ocis.get("crun")
    fb, left = None, []
    os.environ.pop("FASTBOX_NO_ENGINE", None)
    os.environ["FASTBOX_ENGINE_IDLE"] = "600"
    try:
        fb = lc.Fastbox(workdir, rootfs)
        os.unlink(os.path.join(os.environ["FASTBOX_RUN"], "engine.off"))  # as a fresh install
        first, ready = first_command(fb)
        times = bench(fb, runc, crun, args.n, args.warmup)
        print(f"fastbox with the engine started by itself vs peers — kernel {platform.release()}, "
              f"{os.cpu_count()} CPUs, n={args.n} interleaved\n")
        report(first, ready, times)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"first_ms": first * 1000, "engine_ready_ms": ready * 1000,
                           "times": times}, f, indent=1)
    finally:
        if fb:
            fb.stop_engine()
            fb.remove_all()
        for peer in ocis.values():
            peer.delete_all()
        lc.reap()
        left = lc._leftovers(workdir, [p.cgroup for p in ocis.values()] + ([fb.parent] if fb else []))
        if not peers.mounts_under(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nleftovers:", ", ".join(left) if left else "none")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
