"""Prepare runc, crun and bwrap on one busybox rootfs and time them starting /bin/true.

Used by `fastbox bench startup --compare` and by benchmarks/ (whose peers.py is this module).

Every peer does the work fastbox does on `run`: pid, mount, uts, ipc, net and cgroup
namespaces (bwrap: no cgroup limits, it has none), and for runc/crun a cgroup with the same
limits (256 MiB, 1 CPU, 1024 pids) made under the absolute parent /fastbox-peers.

    python benchmarks/peers.py -n 20                         # time every peer, clean up, verify
    python fastbox/bench/peers.py time-crun --bundle B ...   # the in-namespace crun loop (internal)

Standard library only: this file is also run as a script inside a private mount namespace.
"""
import argparse
import contextlib
import ctypes
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

PEERS = ("runc", "crun", "bwrap")
CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
CGROUP_PARENT = "fastbox-peers"
MEMORY_LIMIT = 256 * 1024 * 1024
CPU_QUOTA, CPU_PERIOD = 100000, 100000
PIDS_LIMIT = 1024
# Drops cgroup2 from a private mount namespace so crun 1.8 sees plain v1 (it refuses hybrid).
CRUN_WRAPPER = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified && exec "$@"', "_"]


class PeerError(RuntimeError):
    pass


# ---------------------------------------------------------------- rootfs and bundles

def build_rootfs(dest):
    """A busybox rootfs: the static binary, one symlink per applet, passwd, empty mount points."""
    busybox = "/bin/busybox"
    os.makedirs(os.path.join(dest, "bin"))
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = os.path.join(dest, applet)
        if os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return dest


def rootfs_tar(rootfs, dest):
    """The rootfs as a tar (for importing the same bytes into fastbox's store)."""
    with tarfile.open(dest, "w") as tar:
        for name in sorted(os.listdir(rootfs)):
            tar.add(os.path.join(rootfs, name), arcname=name)
    return dest


def make_bundle(bundle, rootfs, name, spec_tool):
    """An OCI bundle running /bin/true on ROOTFS in cgroup /fastbox-peers/NAME."""
    os.makedirs(bundle)
    subprocess.run([spec_tool, "spec"], cwd=bundle, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["ociVersion"] = "1.0.2"  # crun 1.8 rejects >= 1.2.0
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": rootfs, "readonly": False}
    linux = config["linux"]
    # Absolute: a relative path nests under the caller's own (memory) cgroup.
    linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{name}"
    if not any(ns["type"] == "cgroup" for ns in linux["namespaces"]):
        linux["namespaces"].append({"type": "cgroup"})
    resources = linux.setdefault("resources", {})
    resources["memory"] = {"limit": MEMORY_LIMIT}
    resources["cpu"] = {"quota": CPU_QUOTA, "period": CPU_PERIOD}
    resources["pids"] = {"limit": PIDS_LIMIT}
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return bundle


# ---------------------------------------------------------------- timing

def run_once(argv, env=None):
    """One run with output discarded; on failure, rerun to capture why."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
    if r.returncode != 0:
        why = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             env=env)
        raise PeerError(f"{' '.join(argv)} exited {r.returncode}: {why.stderr.strip()[-500:]}")


def time_runs(argv, n, warmup=0, env=None):
    """Wall-clock seconds of N runs of ARGV (in ENV, else ours), after WARMUP untimed ones."""
    for _ in range(warmup):
        run_once(argv, env)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        run_once(argv, env)
        times.append(time.perf_counter() - t0)
    return times


def oci_argv(tool, state, bundle, cid):
    return [tool, "--root", state, "run", "-b", bundle, cid]


def force_delete(tool, state, cid):
    """Drop a container a failed run left behind (a clean `run` deletes it itself)."""
    subprocess.run([tool, "--root", state, "delete", "--force", cid],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hybrid():
    return os.path.ismount(UNIFIED)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def crun_namespace():
    """Run the body in a private mount namespace without cgroup2, then return to ours.

    For callers that must time crun themselves (pytest-benchmark); needs a single-threaded
    process, since unshare/setns of a mount namespace refuse a shared fs struct.
    """
    if not hybrid():
        yield
        return
    if threading.active_count() != 1:
        raise PeerError("crun_namespace needs a single-threaded process")
    libc = ctypes.CDLL(None, use_errno=True)
    cwd = os.getcwd()
    home = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
        try:
            # Private first, so the umount below never propagates to the host.
            _check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None), "mount MS_PRIVATE")
            _check(libc.umount2(UNIFIED.encode(), 2), "umount2 unified")
            yield
        finally:
            _check(libc.setns(home, 0x00020000), "setns back")
            os.chdir(cwd)
    finally:
        os.close(home)


def time_crun_driver(state, bundle, cid, n, warmup=0):
    """Time crun through this file's time-crun mode, run inside the crun namespace."""
    argv = [sys.executable, os.path.abspath(__file__), "time-crun", "--state", state,
            "--bundle", bundle, "--id", cid, "-n", str(n), "--warmup", str(warmup)]
    if hybrid():
        argv = CRUN_WRAPPER + argv
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        raise PeerError(f"crun driver exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


# ---------------------------------------------------------------- cgroups, leftovers

def cgroup_dirs(parent):
    """/sys/fs/cgroup/<hierarchy>/PARENT for every hierarchy that has it."""
    return sorted(glob.glob(os.path.join(CGROUP_ROOT, "*", parent)))


def remove_cgroup_tree(path):
    """rmdir PATH ("fastbox-x" or "fastbox-x/leaf"), the cgroups under it, then its parent
    if empty, in every hierarchy. Only for paths this code names: nothing else is removed."""
    parts = path.split("/")
    if not parts[0].startswith("fastbox-") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"refusing to remove cgroup {path!r}")
    for top in cgroup_dirs(path):
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            with contextlib.suppress(OSError):  # busy: reported by leftovers()
                os.rmdir(dirpath)
    for depth in range(len(parts) - 1, 0, -1):  # a parent still in use by others stays
        for top in cgroup_dirs("/".join(parts[:depth])):
            with contextlib.suppress(OSError):
                os.rmdir(top)


def mounts_under(path):
    """Mount points in our mount namespace at or below PATH."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 etc.
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def processes_matching(needles):
    """PIDs (not ours) whose cgroup or command line mentions any needle."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                text = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                text += f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles):
            pids.append(int(pid))
    return pids


def leftovers(workdir, cgroup_parents=(CGROUP_PARENT,)):
    """What a benchmark left behind: cgroups, processes, mounts under WORKDIR."""
    found = [f"cgroup {d}" for p in cgroup_parents for d in cgroup_dirs(p)]
    needles = [f"/{p}/" for p in cgroup_parents] + [f":/{p}\n" for p in cgroup_parents]
    needles.append(os.path.realpath(workdir))
    found += [f"process {pid}" for pid in processes_matching(needles)]
    found += [f"mount {m}" for m in mounts_under(workdir)]
    return found


# ---------------------------------------------------------------- the workspace

class PeerWorkspace:
    """A temp dir with the shared rootfs, one bundle and state dir per OCI peer.

    Container ids and cgroups carry our pid, so two benchmark runs never share a container.
    """

    def __init__(self, base=None, rootfs=None, peers=PEERS):
        """rootfs: a callable filling the given directory with the shared rootfs (default:
        build_rootfs, busybox from the host); peers: which of PEERS to prepare."""
        self.dir = tempfile.mkdtemp(prefix="fastbox-peers-", dir=base)
        self.peers = tuple(p for p in PEERS if p in peers)
        try:
            self.rootfs = (rootfs or build_rootfs)(os.path.join(self.dir, "rootfs"))
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        spec_tool = shutil.which("runc") or shutil.which("crun")
        self.skipped = {}
        self.bundles = {}
        for peer in self.peers:
            if not shutil.which(peer):
                self.skipped[peer] = f"{peer} not installed"
            elif peer != "bwrap":
                self.bundles[peer] = make_bundle(os.path.join(self.dir, f"bundle-{peer}"),
                                                 self.rootfs, self.cid(peer), spec_tool)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def available(self):
        return [p for p in self.peers if p not in self.skipped]

    def cid(self, peer):
        return f"{peer}-{os.getpid()}"

    def state(self, peer):
        return os.path.join(self.dir, f"{peer}-state")

    def argv(self, peer):
        """One run's command line (crun's only works inside crun_namespace)."""
        if peer == "bwrap":
            return ["bwrap", "--unshare-all", "--bind", self.rootfs, "/",
                    "--proc", "/proc", "--dev", "/dev", "/bin/true"]
        return oci_argv(peer, self.state(peer), self.bundles[peer], self.cid(peer))

    def time(self, peer, n, warmup=0):
        """Seconds per run of PEER; crun's loop runs in its own mount namespace."""
        try:
            if peer == "crun":
                return time_crun_driver(self.state(peer), self.bundles[peer],
                                        self.cid(peer), n, warmup)
            return time_runs(self.argv(peer), n, warmup)
        except PeerError:
            if peer == "runc":
                force_delete("runc", self.state(peer), self.cid(peer))
            raise

    def close(self):
        """Remove bundles, state dirs, our /fastbox-peers cgroups (not another run's)."""
        for peer in self.bundles:
            remove_cgroup_tree(f"{CGROUP_PARENT}/{self.cid(peer)}")
        if mounts_under(self.dir):  # never rmtree through a mount
            raise PeerError(f"mounts left under {self.dir}: {mounts_under(self.dir)}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self):
        return leftovers(self.dir) + ([f"dir {self.dir}"] if os.path.exists(self.dir) else [])

    def own_leftovers(self):
        """leftovers() of this workspace's containers only: other runs (with other pids)
        may be using /fastbox-peers at the same time."""
        own = tuple(f"{CGROUP_PARENT}/{self.cid(peer)}" for peer in self.bundles)
        return leftovers(self.dir, own) + ([f"dir {self.dir}"] if os.path.exists(self.dir) else [])


# ---------------------------------------------------------------- fastbox on the same rootfs

FASTBOX_LIMITS = {"memory": "256m", "cpus": 1, "pids_limit": 1024}
FASTBOX_CLI_LIMITS = ["--memory", "256m", "--cpus", "1", "--pids-limit", "1024"]


def fastbox_env(workdir):
    """Store, run dir and cgroup parent of our own, so a benchmark never touches the user's.
    The run dir is made with engine.off in it (what `fastbox engine stop` leaves): no engine
    starts by itself there, so a benchmark measures the path it asks for, and runs one
    only through `fastbox engine start` (benchmarks/autostart_compare.py removes the file)."""
    run = os.path.join(workdir, "fastbox-run")
    os.makedirs(run, mode=0o700, exist_ok=True)
    with open(os.path.join(run, "engine.off"), "w"):
        pass
    return {"FASTBOX_ROOT": os.path.join(workdir, "fastbox-root"), "FASTBOX_RUN": run,
            "FASTBOX_CGROUP_PARENT": f"fastbox-bench-{os.getpid()}"}


def fastbox_cli():
    """The `fastbox` script of the install this interpreter imports (a console_scripts wrapper
    or a plain script, both land next to sys.executable), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "fastbox")
    return beside if os.access(beside, os.X_OK) else shutil.which("fastbox") or beside


def load_fastbox():
    """(module, None) when the fastbox API is usable, else (None, why)."""
    try:
        import fastbox
    except Exception as e:  # the core may not have landed or built yet
        return None, f"import fastbox failed: {type(e).__name__}: {e}"
    if not callable(getattr(fastbox, "run", None)):
        return None, "fastbox has no run() yet"
    return fastbox, None


def seed_busybox(rootfs, workdir, image="busybox"):
    """Import ROOTFS into the (isolated) fastbox store as IMAGE; None on success, else why.

    Uses `fastbox import TAR NAME` (docker import's shape); the one place to change if the
    store's import command is spelled differently.
    """
    cli = fastbox_cli()
    if not os.access(cli, os.X_OK):
        return f"no fastbox console script ({cli})"
    tar = rootfs_tar(rootfs, os.path.join(workdir, "busybox-rootfs.tar"))
    r = subprocess.run([cli, "import", tar, image], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"`fastbox import` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}"
    return None


def cgroup_children(parent):
    """Cgroups left under PARENT (a fastbox cgroup parent): containers that leaked."""
    return sorted(d for top in cgroup_dirs(parent) for d in glob.glob(os.path.join(top, "*/")))


# ---------------------------------------------------------------- stats and CLI

def summary_ms(times):
    ms = sorted(t * 1000 for t in times)
    p90 = statistics.quantiles(ms, n=10)[-1] if len(ms) > 1 else ms[0]
    return {"median": statistics.median(ms), "p90": p90, "min": ms[0], "n": len(ms)}


def _time_crun_main(args):
    """The crun loop, run by time_crun_driver inside the private mount namespace."""
    argv = oci_argv("crun", args.state, args.bundle, args.id)
    try:
        times = time_runs(argv, args.n, args.warmup)
    except PeerError as e:
        force_delete("crun", args.state, args.id)
        sys.exit(str(e))
    json.dump(times, sys.stdout)


def _bench_main(args):
    with PeerWorkspace() as ws:
        for peer, why in ws.skipped.items():
            print(f"{peer:6} skipped: {why}")
        for peer in ws.available:
            try:
                s = summary_ms(ws.time(peer, args.n, args.warmup))
            except PeerError as e:
                print(f"{peer:6} failed: {e}")
                continue
            print(f"{peer:6} median {s['median']:7.2f} ms  p90 {s['p90']:7.2f} ms  "
                  f"min {s['min']:7.2f} ms  (n={s['n']})")
    left = ws.leftovers()
    print("leftovers:", ", ".join(left) if left else "none")
    return 1 if left else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    sub = parser.add_subparsers(dest="cmd")
    crun = sub.add_parser("time-crun", help="time N crun runs, print JSON seconds")
    crun.add_argument("--state", required=True)
    crun.add_argument("--bundle", required=True)
    crun.add_argument("--id", required=True)
    crun.add_argument("-n", type=int, default=20)
    crun.add_argument("--warmup", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "time-crun":
        return _time_crun_main(args)
    return _bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
