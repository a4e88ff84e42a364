"""`fastbox bench startup`: the latency of whole /bin/true containers, phase by phase, and
side by side with runc, crun, bwrap and podman on the same rootfs.

fastbox runs through the Python API: one `fastbox.run` at a time (a fresh cgroup and
namespaces per container, the work the peers do), or, with concurrency above 1 or
pool=True, a `fastbox.Pool` (cgroups and network namespaces made once, `run_many`). Each
fastbox container's latency is its `total` stamp: from the API call to its exit and
teardown. Every peer is timed as the wall time of one `runc run` / `crun run` / `bwrap` /
`podman run --rm` process, one at a time, on a copy of the image's own rootfs, with the
same limits (256 MiB, 1 CPU, 1024 pids; bwrap has no cgroups). Contenders run in
interleaved rounds, so this machine's drift hits them alike; read ratios, not
milliseconds.
"""
import os
import platform
import shutil
import stat
import subprocess
import tempfile

from fastbox.bench import peers, report

COMMAND = ("/bin/true",)
LIMITS = peers.FASTBOX_LIMITS
KNOWN_PEERS = peers.PEERS + ("podman",)
ROUND = 10  # runs per contender per round


class Contender:
    """A name and a timer: timer(k, record) runs k containers, returns k latencies (ms)."""

    def __init__(self, name, timer, close=None):
        self.name, self.timer, self._close = name, timer, close
        self.runs_ms, self.note = [], None

    def warm(self, k):
        self.timer(k, False)

    def time(self, k):
        self.runs_ms += self.timer(k, True)

    def close(self):
        if self._close:
            self._close()


class FastboxContender(Contender):
    def __init__(self, image, network, concurrency, pooled):
        import fastbox
        self.timings = []
        self.pool = None
        self.concurrency = concurrency
        if pooled:
            self.pool = fastbox.Pool(image, size=concurrency, network=network, **LIMITS)

        def timer(k, record):
            if self.pool:
                results = self.pool.run_many(list(COMMAND), count=k, concurrency=concurrency)
            else:
                results = [fastbox.run(image, list(COMMAND), remove=True, network=network,
                                       **LIMITS) for _ in range(k)]
            bad = [r.exit_code for r in results if r.exit_code != 0]
            if bad:
                raise RuntimeError(f"{' '.join(COMMAND)} exited {bad[0]} in {image}")
            if record:
                self.timings += [r.timings for r in results]
            return [r.timings["total"] for r in results]

        super().__init__("fastbox pool" if pooled else "fastbox", timer,
                         lambda: self.pool and self.pool.close())


# ---------------------------------------------------------------- the peers' rootfs

def export_rootfs(layer_dirs, dest):
    """The image's merged filesystem as a plain directory (for the peers, which must not
    touch the store's layers): layers copied bottom-up, overlay whiteouts and opaque
    directories applied."""
    os.makedirs(dest)
    for layer in reversed(list(layer_dirs)):  # layer_dirs is top-most first
        _merge(layer, dest)
    return dest


def _merge(src, dst):
    for entry in os.scandir(src):
        s, d = entry.path, os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # whiteout
            _remove(d)
            continue
        if stat.S_ISDIR(st.st_mode):
            if _opaque(s) or not (os.path.isdir(d) and not os.path.islink(d)):
                _remove(d)
                os.mkdir(d)
            _merge(s, d)
            os.chmod(d, stat.S_IMODE(st.st_mode))
            os.chown(d, st.st_uid, st.st_gid)
            continue
        _remove(d)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(s, d)
            os.chmod(d, stat.S_IMODE(st.st_mode))
        else:
            os.mknod(d, st.st_mode, st.st_rdev)
        os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)


def _opaque(path):
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


# ---------------------------------------------------------------- peers

def _without_netns(bundle):
    """runc/crun: keep the host's network namespace (for --network host)."""
    import json
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "network"]
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def _peer_contender(ws, peer, network, reaper):
    if peer == "bwrap" and network == "host":
        argv = ws.argv("bwrap")
        argv.insert(argv.index("--unshare-all") + 1, "--share-net")
        timer = lambda k: peers.time_runs(argv, k)  # noqa: E731
    else:
        timer = lambda k: ws.time(peer, k)  # noqa: E731
    return Contender(peer, lambda k, record: [t * 1000 for t in reaper.around(timer, k)])


class Reaper:
    """Makes this process the reaper of the peers' orphans while it lives (bwrap leaves
    its pid-namespace init to the nearest subreaper, else init) and reaps them after each
    timed call: zombies that were not our children when it was made. Only for use while
    no fastbox container of this process runs (the rounds are sequential), so no other
    child's exit status is taken."""

    PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37

    def __init__(self):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        was = ctypes.c_int(0)
        self.libc.prctl(self.PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
        self.was = was.value
        self.initial = _children()
        self.libc.prctl(self.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def around(self, fn, *args):
        try:
            return fn(*args)
        finally:
            self.reap()

    def reap(self):
        """Reap the orphans that have exited; True when none is left alive."""
        alive = False
        for pid in _children() - self.initial:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    zombie = f.read().rpartition(")")[2].split()[0] == "Z"
                if zombie:
                    os.waitpid(pid, os.WNOHANG)
                else:
                    alive = True
            except (OSError, ChildProcessError):
                pass
        return not alive

    def close(self):
        import time
        deadline = time.monotonic() + 2
        while not self.reap() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.libc.prctl(self.PR_SET_CHILD_SUBREAPER, self.was, 0, 0, 0)


def _children():
    out = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


class Podman:
    """podman run --rm with PEERS.md's flags, its storage in the workspace (untested
    here: podman is not installed on the project's machine)."""

    IMAGE = "localhost/fastbox-bench-rootfs:latest"

    def __init__(self, workdir, rootfs, network):
        self.dir = os.path.join(workdir, "podman")
        os.makedirs(self.dir)
        self.cgroup = f"{peers.CGROUP_PARENT}/podman-{os.getpid()}"
        self.base = ["podman", "--root", os.path.join(self.dir, "root"),
                     "--runroot", os.path.join(self.dir, "run"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        tar = peers.rootfs_tar(rootfs, os.path.join(self.dir, "rootfs.tar"))
        r = subprocess.run(self.base + ["import", tar, self.IMAGE], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise peers.PeerError(f"podman import exited {r.returncode}: {r.stderr.strip()[-300:]}")
        self.argv = self.base + [
            "run", "--rm", "--network", network,
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
            f"--cgroup-parent=/{self.cgroup}", "--memory", "256m", "--cpus", "1",
            "--pids-limit", "1024", self.IMAGE, *COMMAND]

    def timer(self, k, record):
        return [t * 1000 for t in peers.time_runs(self.argv, k)]

    def close(self):
        subprocess.run(self.base + ["rm", "-af"], capture_output=True)
        subprocess.run(self.base + ["rmi", "-af"], capture_output=True)
        for m in reversed(peers.mounts_under(self.dir)):
            subprocess.run(["umount", "-l", m], capture_output=True)
        peers.remove_cgroup_tree(self.cgroup)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the run

def machine():
    out = {"kernel": platform.release(), "nproc": os.cpu_count(),
           "python": platform.python_version()}
    from fastbox.runtime import cgroup
    out["cgroup"] = cgroup.layout().mode
    for tool in KNOWN_PEERS:
        if shutil.which(tool):
            try:
                line = subprocess.run([tool, "--version"], capture_output=True, text=True,
                                      timeout=10).stdout.split("\n")[0]
            except (OSError, subprocess.SubprocessError):
                continue
            out[tool] = line.split()[-1] if line else "?"
    return out


def parse_compare(text):
    """'runc,crun' -> ("runc", "crun"); unknown names raise ValueError."""
    names = tuple(dict.fromkeys(n.strip() for n in (text or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in KNOWN_PEERS]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}: choose from {', '.join(KNOWN_PEERS)}")
    return names


def run(n=100, concurrency=1, image="busybox", network="none", warmup=5, compare=(),
        pool=None, round_size=ROUND, progress=None):
    """The startup benchmark; returns a result dict (see fastbox.bench.report).
    progress(done, total), if given, is called after every round of every contender."""
    from fastbox import api
    from fastbox.spec import RunSpec
    if n < 1 or concurrency < 1 or warmup < 0:
        raise ValueError("-n and --concurrency must be at least 1, --warmup at least 0")
    spec = RunSpec(image, list(COMMAND), network=network, **LIMITS)  # validates
    img = api.resolve_image(spec.image)
    pooled = concurrency > 1 if pool is None else pool
    found, skipped, notes = [], {}, []
    workdir = tempfile.mkdtemp(prefix="fastbox-bench-")
    ws = podman = None
    leftovers = []
    reaper = Reaper() if compare else None
    try:
        found.append(FastboxContender(img.ref, network, concurrency, pooled))
        wanted = [p for p in compare if p in peers.PEERS]
        if wanted:
            ws = peers.PeerWorkspace(base=workdir, peers=wanted,
                                     rootfs=lambda d: export_rootfs(img.layer_dirs, d))
            skipped.update(ws.skipped)
            for peer in ws.available:
                if network == "host" and peer != "bwrap":
                    _without_netns(ws.bundles[peer])
                found.append(_peer_contender(ws, peer, network, reaper))
        if "podman" in compare:
            if not shutil.which("podman"):
                skipped["podman"] = "podman not installed"
            else:
                rootfs = ws.rootfs if ws else export_rootfs(img.layer_dirs, os.path.join(workdir, "rootfs"))
                try:
                    podman = Podman(workdir, rootfs, network)
                    found.append(Contender("podman", lambda k, r: reaper.around(podman.timer, k, r)))
                except (OSError, peers.PeerError) as e:
                    skipped["podman"] = str(e)
        if compare and concurrency > 1:
            notes.append(f"fastbox ran {concurrency} containers at a time; the peers one at a time")
        _rounds(found, n, warmup, max(round_size, 1), progress)
    finally:
        for c in found:
            try:
                c.close()
            except Exception as e:  # reported, never hidden
                leftovers.append(f"{c.name}: close failed: {e}")
        if podman:
            podman.close()
        if ws:
            ws.close()
            leftovers += ws.own_leftovers()
        if reaper:
            reaper.close()
        shutil.rmtree(workdir, ignore_errors=True)
    fb = found[0]
    if fb.note:
        raise RuntimeError(f"fastbox failed: {fb.note}")
    contenders = {c.name: {**report.summarize(c.runs_ms), "runs_ms": c.runs_ms}
                  for c in found if c.runs_ms and not c.note}
    report.add_ratios(contenders, fb.name)
    skipped.update({c.name: c.note for c in found if c.note})
    return {"benchmark": "startup", "machine": machine(),
            "config": {"n": n, "concurrency": concurrency, "image": img.ref, "network": network,
                       "warmup": warmup, "command": list(COMMAND), "pool": pooled,
                       "limits": {k: str(v) for k, v in LIMITS.items()},
                       "pool_setup_ms": fb.pool.setup_ms if fb.pool else None},
            "reference": fb.name, "contenders": contenders, "skipped": skipped,
            "phases": report.phase_breakdown(fb.timings), "notes": notes,
            "leftovers": leftovers}


def _rounds(found, n, warmup, round_size, progress):
    """Warm each contender up (which also proves it works), then n timed runs each, in
    rounds of round_size whose order rotates. fastbox failing ends the run; a peer failing
    is noted and dropped."""
    total = n * len(found)
    done = 0
    for c in found:
        try:
            c.warm(max(warmup, 1))
        except Exception as e:
            if c is found[0]:
                raise
            c.note = f"failed in warmup: {e}"
    live = [c for c in found if c.note is None]
    for r in range(0, n, round_size):
        k = min(round_size, n - r)
        shift = (r // round_size) % len(live)
        for c in live[shift:] + live[:shift]:
            if c.note is not None:
                continue
            try:
                c.time(k)
            except Exception as e:
                if c is found[0]:
                    raise
                c.note = f"failed after {len(c.runs_ms)} runs: {e}"
            done += k
            if progress:
                progress(done, total)
