"""Side by side, in one run: exec into a running container, the monitor's memory, and
starting detached containers — fastbox (CLI and API) against runc and crun.

    python benchmarks/lifecycle_compare.py [-n 100] [--warmup 5] [--containers 100]
                                           [--conmons 10] [--json FILE]

1. exec /bin/true into a running container, interleaved round by round (the order rotates
   each round, so drift in machine load hits all alike):
     `fastbox exec ID /bin/true` through the engine (`fastbox engine start`, as users run
     it) and through the Python CLI (FASTBOX_NO_ENGINE=1), `Container.exec_run(["/bin/true"])`
     (in-process), `runc exec ID /bin/true`, `crun exec ID /bin/true`; then, the same way,
     listing containers: `fastbox ps` (engine, Python CLI), `runc list`, `crun list`.
   The peers' containers are `run -d` from bundles on the same busybox rootfs running
   `sleep 3600`, each in an absolute cgroup under /fastbox-peers (same limits as fastbox's:
   256 MiB, 1 CPU, 1024 pids). crun 1.8 refuses hybrid cgroups: every crun call happens in a
   private mount namespace with /sys/fs/cgroup/unified unmounted there (peers.crun_namespace),
   entered outside the timed region.
2. The resident memory of the per-container monitor: fastbox-monitor against conmon (apt),
   which is started here by hand around a runc container (conmon runs `runc create`, we run
   `runc start`), as podman would; VmRSS and PSS (shared pages divided among sharers).
3. Starting --containers detached `sleep 3600` containers one after another, interleaved
   container by container: fastbox API (containers.run), fastbox CLI (`fastbox run -d`),
   and, for reference, `runc run -d` / `crun run -d` (no monitor, no log: less work).

fastbox runs against a temp FASTBOX_ROOT/RUN and its own cgroup parent, with the same busybox
rootfs imported as `busybox`. This process makes itself a child subreaper, so monitors,
conmons and peer container processes that daemonize reparent here and are reaped. Everything
made is removed at the end; the run fails (exit 1) if cgroups, processes or mounts are left.
Benchmarks report; they never assert on time.
"""
import argparse
import contextlib
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
LONG_RUNNING = ["sleep", "3600"]
PR_SET_CHILD_SUBREAPER = 36


# ---------------------------------------------------------------- processes

def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap():
    """Collect every child that has exited (daemonized monitors end up ours)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def memory_of(pid):
    """{'rss_kb', 'anon_kb', 'file_kb', 'pss_kb'} of a live process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[{"VmRSS": "rss_kb", "RssAnon": "anon_kb", "RssFile": "file_kb"}[key]] = \
                    int(value.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["pss_kb"] = int(line.split()[1])
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


def timed(argv, env=None):
    """Seconds for one run of argv (output discarded); raises PeerError on failure."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, **QUIET)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        why = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             env=env)
        raise peers.PeerError(f"{' '.join(argv)} exited {r.returncode}: {why.stderr.strip()[-300:]}")
    return dt


# ---------------------------------------------------------------- runc / crun containers

class OciPeer:
    """Detached runc or crun containers on the shared rootfs, one bundle dir each (the
    config differs only by cgroupsPath), all under /fastbox-peers/lc-<tool>-<pid>/."""

    def __init__(self, tool, workdir, rootfs):
        self.tool, self.rootfs = tool, rootfs
        self.base = os.path.join(workdir, tool)
        self.state = os.path.join(self.base, "state")
        self.cgroup = f"{peers.CGROUP_PARENT}/lc-{tool}-{os.getpid()}"
        os.makedirs(self.state)
        template = peers.make_bundle(os.path.join(self.base, "template"), rootfs, "template",
                                     shutil.which("runc") or tool)
        with open(os.path.join(template, "config.json")) as f:
            self.config = json.load(f)
        self.config["process"]["args"] = LONG_RUNNING
        self.ids = []

    def ns(self):
        return peers.crun_namespace() if self.tool == "crun" else contextlib.nullcontext()

    def bundle(self, cid):
        path = os.path.join(self.base, cid)
        os.makedirs(path)
        config = json.loads(json.dumps(self.config))
        config["linux"]["cgroupsPath"] = f"/{self.cgroup}/{cid}"
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path

    def argv(self, *args):
        return [self.tool, "--root", self.state, *args]

    def run_detached(self, cid):
        """Seconds for `TOOL run -d` of a new container (bundle written beforehand)."""
        bundle = self.bundle(cid)
        self.ids.append(cid)
        with self.ns():
            return timed(self.argv("run", "-d", "-b", bundle, cid))

    def exec_true(self, cid):
        with self.ns():
            return timed(self.argv("exec", cid, "/bin/true"))

    def list(self):
        with self.ns():
            return timed(self.argv("list"))

    def init_pid(self, cid):
        with self.ns():
            r = subprocess.run(self.argv("state", cid), capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
        return json.loads(r.stdout)["pid"] if r.returncode == 0 else None

    def delete_all(self):
        deleted = list(self.ids)
        for cid in self.ids:
            with self.ns():
                subprocess.run(self.argv("delete", "--force", cid), **QUIET)
        self.ids = []
        # The killed inits take a moment to go (and, unless we are their subreaper, to be
        # reaped by init: a zombie still names its cgroup in /proc/PID/cgroup).
        # Only the deleted containers' cgroups are waited for: a container kept by the
        # caller (autostart_compare's exec target) keeps the parent in use, and waiting
        # for it cost 10 s a round.
        gone = [f"{self.cgroup}/{cid}" for cid in deleted]
        for _ in range(500):
            reap()
            for path in gone:
                peers.remove_cgroup_tree(path)
            if not any(peers.cgroup_dirs(p) for p in gone) and \
                    not peers.processes_matching([f"/{p}/" for p in gone]):
                break
            time.sleep(0.02)
        peers.remove_cgroup_tree(self.cgroup)  # the parent too, once nothing is left in it


class Conmon:
    """conmon 2.x started by hand around a runc container: conmon runs `runc create`,
    daemonizes, and waits; `runc start` then runs the container under it."""

    def __init__(self, runc, workdir):
        self.runc, self.dir = runc, tempfile.mkdtemp(prefix="cm-", dir=workdir)
        self.started = []  # (cid, conmon pid)

    def start(self, cid):
        bundle = self.runc.bundle(cid)
        self.runc.ids.append(cid)
        d = os.path.join(self.dir, cid[-6:])
        os.makedirs(os.path.join(d, "exits"))
        argv = ["conmon", "-c", cid, "-u", cid, "-n", cid, "-r", shutil.which("runc"),
                "--runtime-arg", "--root", "--runtime-arg", self.runc.state, "-b", bundle,
                "-p", os.path.join(d, "pid"), "-P", os.path.join(d, "conmon.pid"),
                "-l", "k8s-file:" + os.path.join(d, "log"), "--exit-dir", os.path.join(d, "exits"),
                "--socket-dir-path", d, "--log-level", "error"]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if r.returncode != 0:
            raise peers.PeerError(f"conmon exited {r.returncode}: {r.stderr.strip()[-300:]}")
        with open(os.path.join(d, "conmon.pid")) as f:
            pid = int(f.read())
        # conmon's parent returns once it has daemonized; the container exists when
        # `runc create` (run by conmon) has written its pid file.
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(d, "pid")):
            if time.monotonic() > deadline or comm(pid) != "conmon":
                raise peers.PeerError(f"conmon did not create {cid}")
            time.sleep(0.005)
        timed(self.runc.argv("start", cid))
        init = self.runc.init_pid(cid)
        if not init or _ppid(init) != pid:
            raise peers.PeerError(f"{cid}'s init {init} is not conmon {pid}'s child")
        self.started.append((cid, pid))
        return pid


# ---------------------------------------------------------------- fastbox

class Fastbox:
    def __init__(self, workdir, rootfs):
        for key, value in peers.fastbox_env(workdir).items():
            os.environ[key] = value
        self.parent = os.environ["FASTBOX_CGROUP_PARENT"]
        why = peers.seed_busybox(rootfs, workdir)
        if why:
            raise peers.PeerError(why)
        from fastbox import containers
        self.api = containers
        self.cli = peers.fastbox_cli()
        self.made = []

    def run_api(self):
        t0 = time.perf_counter()
        c = self.api.run("busybox", LONG_RUNNING, **peers.FASTBOX_LIMITS)
        dt = time.perf_counter() - t0
        self.made.append(c)
        return dt, c

    def run_cli(self):
        t0 = time.perf_counter()
        r = subprocess.run([self.cli, "run", "-d", *peers.FASTBOX_CLI_LIMITS, "busybox",
                            *LONG_RUNNING], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise peers.PeerError(f"fastbox run -d exited {r.returncode}: {r.stderr.strip()[-300:]}")
        c = self.api.get(r.stdout.strip())
        self.made.append(c)
        return dt, c

    def start_engine(self):
        r = subprocess.run([self.cli, "engine", "start"], capture_output=True, text=True)
        if r.returncode != 0:
            raise peers.PeerError(f"fastbox engine start: {r.stderr.strip()}")

    def stop_engine(self):
        subprocess.run([self.cli, "engine", "stop"], **QUIET)

    def cli_command(self, *args, engine=True):
        """Seconds for `fastbox ARGS...`: through the engine, or the Python CLI."""
        env = None if engine else {**os.environ, "FASTBOX_NO_ENGINE": "1"}
        return timed([self.cli, *args], env)

    @staticmethod
    def exec_api(c):
        t0 = time.perf_counter()
        result = c.exec_run(["/bin/true"])
        dt = time.perf_counter() - t0
        if result.exit_code != 0:
            raise peers.PeerError(f"exec_run exit code {result.exit_code}")
        return dt

    def remove_all(self):
        for c in self.made:
            with contextlib.suppress(Exception):
                c.remove(force=True)
        self.made = []
        reap()


# ---------------------------------------------------------------- the three parts

def summary(times):
    return peers.summary_ms(times) if times else None


def bench_exec(fb, runc, crun, n, warmup):
    target = {"fastbox": fb.run_api()[1]}
    for peer in (runc, crun):
        if peer:
            cid = f"lc-exec-{peer.tool}-{os.getpid()}"
            peer.run_detached(cid)
            target[peer.tool] = cid
    cid = target["fastbox"].id
    contenders = [
        ("fastbox exec (CLI, engine)", lambda: fb.cli_command("exec", cid, "/bin/true")),
        ("fastbox exec (Python CLI)",
         lambda: fb.cli_command("exec", cid, "/bin/true", engine=False)),
        ("Container.exec_run (API)", lambda: fb.exec_api(target["fastbox"]))]
    if runc:
        contenders.append(("runc exec", lambda: runc.exec_true(target["runc"])))
    if crun:
        contenders.append(("crun exec", lambda: crun.exec_true(target["crun"])))
    return interleaved(contenders, n, warmup), target


def bench_list(fb, runc, crun, n, warmup):
    """Listing containers (one running per tool: the exec targets)."""
    contenders = [("fastbox ps (CLI, engine)", lambda: fb.cli_command("ps")),
                  ("fastbox ps (Python CLI)", lambda: fb.cli_command("ps", engine=False))]
    if runc:
        contenders.append(("runc list", runc.list))
    if crun:
        contenders.append(("crun list", crun.list))
    return interleaved(contenders, n, warmup)


def interleaved(contenders, n, warmup):
    """Round by round, the order rotating each round, so drift hits all alike."""
    python_floor = [sys.executable, "-c", "pass"]
    contenders = contenders + [("(ref) python -c pass", lambda: timed(python_floor))]
    times = {name: [] for name, _ in contenders}
    for i in range(warmup + n):
        k = i % len(contenders)
        for name, fn in contenders[k:] + contenders[:k]:
            dt = fn()
            if i >= warmup:
                times[name].append(dt)
        reap()
    return times


def bench_memory(fb, target, runc, conmons, workdir):
    """Monitor memory: the exec target's monitor, plus every fastbox monitor running then;
    conmon around `conmons` runc containers."""
    mine = [memory_of(c.inspect()["MonitorPid"]) for c in fb.made if c.reload().status == "running"]
    theirs, note = [], None
    if runc is None or not shutil.which("conmon"):
        note = "conmon or runc not installed"
    else:
        cm = Conmon(runc, workdir)
        try:
            for i in range(conmons):
                pid = cm.start(f"lc-conmon-{os.getpid()}-{i}")
                if comm(pid) != "conmon":
                    raise peers.PeerError(f"pid {pid} from conmon's pid file is {comm(pid)!r}")
                theirs.append(memory_of(pid))
        except peers.PeerError as e:
            note = str(e)
    return mine, theirs, note


def bench_start(fb, runc, crun, count):
    contenders = [("fastbox containers.run (API)", lambda i: fb.run_api()[0]),
                  ("fastbox run -d (CLI)", lambda i: fb.run_cli()[0])]
    for peer in (runc, crun):
        if peer:
            contenders.append((f"{peer.tool} run -d (no monitor)",
                               lambda i, p=peer: p.run_detached(f"lc-start-{p.tool}-{os.getpid()}-{i}")))
    times = {name: [] for name, _ in contenders}
    for i in range(count):
        k = i % len(contenders)
        for name, fn in contenders[k:] + contenders[:k]:
            times[name].append(fn(i))
        reap()
    running = sum(1 for c in fb.made if c.reload().status == "running")
    return times, running


# ---------------------------------------------------------------- report

def ratio(a, b):
    return f"{a / b:6.2f}x" if a and b else "     -"


def table_latency(title, times, refs):
    print(f"\n{title}")
    heads = "".join(f"  vs {r:<5}" for r in refs)
    print(f"  {'':32} {'median ms':>10} {'p90 ms':>9} {'min ms':>9} {'n':>5}{heads}")
    medians = {name: summary(t)["median"] for name, t in times.items() if t}
    ref_medians = {r: next((m for name, m in medians.items() if name.startswith(r)), None) for r in refs}
    for name, t in times.items():
        s = summary(t)
        if not s:
            continue
        cols = "".join(f"  {ratio(s['median'], ref_medians[r]):>7}" for r in refs)
        print(f"  {name:32} {s['median']:10.2f} {s['p90']:9.2f} {s['min']:9.2f} {s['n']:5}{cols}")


def table_memory(mine, theirs, note):
    print("\nmonitor memory per container (kB; median over the monitors measured)")
    print(f"  {'':32} {'VmRSS':>8} {'RssAnon':>8} {'RssFile':>8} {'PSS':>8} {'n':>5}")

    def row(name, samples):
        if not samples:
            return None
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        print(f"  {name:32} {med['rss_kb']:8.0f} {med['anon_kb']:8.0f} {med['file_kb']:8.0f} "
              f"{med['pss_kb']:8.0f} {len(samples):5}")
        return med

    a = row("fastbox-monitor", mine)
    b = row("conmon " + conmon_version(), theirs)
    if a and b:
        print(f"  {'ratio fastbox/conmon':32} {a['rss_kb'] / b['rss_kb']:8.2f} "
              f"{'':8} {'':8} {a['pss_kb'] / b['pss_kb']:8.2f}")
    if note:
        print(f"  conmon: {note}")


def conmon_version():
    with contextlib.suppress(OSError):
        r = subprocess.run(["conmon", "--version"], capture_output=True, text=True)
        return r.stdout.split()[2] if r.returncode == 0 else ""
    return ""


def table_start(times, count):
    print(f"\nstart {count} detached containers one after another (interleaved), sleep 3600")
    print(f"  {'':32} {'total s':>8} {'per/s':>7} {'median ms':>10} {'p90 ms':>9}   vs runc")
    ref = next((statistics.median(t) for name, t in times.items() if name.startswith("runc")), None)
    for name, t in times.items():
        s = summary(t)
        print(f"  {name:32} {sum(t):8.2f} {len(t) / sum(t):7.1f} {s['median']:10.2f} {s['p90']:9.2f}"
              f"   {ratio(statistics.median(t), ref)}")


# ---------------------------------------------------------------- main

def main(argv=None):
    # the CLI's default network is the bridge: its bridge, veths, nft table and
    # sysctls stay in a namespace of our own, never the host's
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("lifecycle_compare")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="timed exec rounds")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--conmons", type=int, default=10)
    parser.add_argument("--json", help="write the raw timings here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root")
    become_subreaper()
    workdir = tempfile.mkdtemp(prefix="fblc-")
    rootfs = peers.build_rootfs(os.path.join(workdir, "rootfs"))
    ocis, skipped = {}, {}
    for tool in ("runc", "crun"):
        if shutil.which(tool):
            ocis[tool] = OciPeer(tool, workdir, rootfs)
        else:
            skipped[tool] = "not installed"
    runc, crun = ocis.get("runc"), ocis.get("crun")
    fb = None
    results = {"host": {"kernel": platform.release(), "cpus": os.cpu_count()}}
    try:
        fb = Fastbox(workdir, rootfs)
        fb.start_engine()
        exec_times, target = bench_exec(fb, runc, crun, args.n, args.warmup)
        list_times = bench_list(fb, runc, crun, args.n, args.warmup)
        start_times, running = bench_start(fb, runc, crun, args.containers)
        mine, theirs, note = bench_memory(fb, target, runc, args.conmons, workdir)
        print(f"fastbox lifecycle vs peers — kernel {platform.release()}, {os.cpu_count()} CPUs; "
              f"peers skipped: {skipped or 'none'}")
        table_latency(f"exec /bin/true into a running container (n={args.n}, interleaved)",
                      exec_times, ["runc", "crun"])
        table_latency(f"list containers (n={args.n}, interleaved)", list_times,
                      ["runc", "crun"])
        table_memory(mine, theirs, note)
        table_start(start_times, args.containers)
        print(f"\n  fastbox containers still running at the end of the start phase: {running} "
              f"of {2 * args.containers + 1}")
        results.update(exec=exec_times, list=list_times, start=start_times, monitor_memory=mine,
                       conmon_memory=theirs, conmon_note=note)
    finally:
        if fb:
            fb.stop_engine()
            fb.remove_all()
        for peer in ocis.values():
            peer.delete_all()
        reap()
        left = _leftovers(workdir, [p.cgroup for p in ocis.values()]
                          + ([fb.parent] if fb else []))
        if not peers.mounts_under(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("\nleftovers:", ", ".join(left) if left else "none")
    return 1 if left else 0


def _leftovers(workdir, parents):
    """What is left after cleanup; a process may take a moment to go, so look twice."""
    for fastbox_parent in parents[-1:]:
        if fastbox_parent.startswith("fastbox-bench-"):
            leaked = peers.cgroup_children(fastbox_parent)
            if not leaked:
                peers.remove_cgroup_tree(fastbox_parent)
    for _ in range(50):
        left = peers.leftovers(workdir, tuple(parents))
        if not left:
            return []
        time.sleep(0.1)
        reap()
    return left


if __name__ == "__main__":
    sys.exit(main())
