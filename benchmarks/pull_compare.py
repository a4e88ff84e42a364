"""Pull + unpack of a multi-layer image from a local registry: fastbox against skopeo + umoci.

One run of this script starts Debian's docker-registry on 127.0.0.1 (temp storage, its own
config), builds a 4-layer image with umoci from files of this host (python3's stdlib, perl's,
part of /usr/bin, then a layer that deletes a directory: ~130 MB, ~2,500 files unpacked),
pushes it with skopeo, and then, alternating round by round, times:

  fastbox CLI   `fastbox pull -q REF` into an empty store (process start included)
  fastbox API   fastbox.images.pull.pull(REF) in this process, into an empty store
  skopeo+umoci  `skopeo copy docker://REF oci:DIR:tag` then `umoci unpack --image DIR:tag B`

Every contender starts from nothing local (a fresh store or layout each round; skopeo's
blob-info cache on a throwaway tmpfs) and ends with the image unpacked and ready to run.
Between runs the previous run's files are removed and the page cache written back (sync),
outside the timing, so that no run pays for another's writeback.
Medians and the ratio fastbox/peer are printed; everything made is removed, the registry
killed.

    python benchmarks/pull_compare.py -n 5 [--json FILE]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST_TREES = [("usr/lib/python3.11", "/usr/lib/python3.11"), ("usr/share/perl", "/usr/share/perl")]
TOOLS = ("docker-registry", "skopeo", "umoci")


class Setup:
    """The registry and the pushed image; close() removes both."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise RuntimeError(f"needs {', '.join(missing)} (apt: docker-registry skopeo umoci)")
        self._start_registry()
        self.ref = f"{self.host}/bench/pull:v1"
        layout = build_image(os.path.join(workdir, "build"))
        skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:img", f"docker://{self.ref}")
        shutil.rmtree(os.path.join(workdir, "build"))

    def _start_registry(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.host = f"127.0.0.1:{port}"
        config = os.path.join(self.workdir, "registry.yml")
        with open(config, "w") as f:
            json.dump({"version": "0.1", "log": {"level": "error"},
                       "storage": {"filesystem": {"rootdirectory": os.path.join(self.workdir, "storage")}},
                       "http": {"addr": self.host}}, f)
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1000):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.01)
        raise RuntimeError("docker-registry did not start")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


def build_image(work):
    """4 layers with umoci: busybox + python's stdlib; perl's; /usr/bin/[a-f]*; then a layer
    deleting perl's unicore tables (whiteouts). Returns the layout (tag "img")."""
    layout, bundle = os.path.join(work, "oci"), os.path.join(work, "bundle")
    os.makedirs(work)
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:img")
    umoci("unpack", "--image", f"{layout}:img", bundle)
    root = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    for dest, src in HOST_TREES:
        shutil.copytree(src, os.path.join(root, dest), symlinks=True)
        umoci("repack", "--refresh-bundle", "--image", f"{layout}:img", bundle)
    os.makedirs(os.path.join(root, "usr/bin"))
    for name in sorted(os.listdir("/usr/bin")):
        path = os.path.join("/usr/bin", name)
        if name[:1] in "abcdef" and os.path.isfile(path) and not os.path.islink(path):
            shutil.copy2(path, os.path.join(root, "usr/bin", name))
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:img", bundle)
    shutil.rmtree(os.path.join(root, "usr/share/perl"), ignore_errors=True)
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:img", bundle)
    umoci("config", "--image", f"{layout}:img", "--config.cmd", "/bin/busybox")
    return layout


def umoci(*args):
    subprocess.run(["umoci", *args], check=True, capture_output=True)


def skopeo(*args):
    """skopeo with its blob-info cache on a private tmpfs: no run reuses another's work."""
    cache = "/var/lib/containers"
    script = f'mount -t tmpfs tmpfs {cache} && exec "$@"' if os.path.isdir(cache) else 'exec "$@"'
    subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "_",
                    "skopeo", *args], check=True, capture_output=True)


def fastbox_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "fastbox")
    return exe if os.path.exists(exe) else shutil.which("fastbox")


def time_fastbox_cli(ref, scratch):
    env = dict(os.environ, FASTBOX_ROOT=scratch)
    t = time.perf_counter()
    subprocess.run([fastbox_exe(), "pull", "-q", ref], env=env, check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t


def time_fastbox_api(ref, scratch):
    from fastbox.images.pull import pull
    from fastbox.images.store import ImageStore
    t = time.perf_counter()
    pull(ref, store=ImageStore(os.path.join(scratch, "images")))
    return time.perf_counter() - t


def time_peer(ref, scratch):
    layout, bundle = os.path.join(scratch, "oci"), os.path.join(scratch, "bundle")
    t = time.perf_counter()
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:img")
    umoci("unpack", "--image", f"{layout}:img", bundle)
    return time.perf_counter() - t


CONTENDERS = {"fastbox CLI": time_fastbox_cli, "fastbox API": time_fastbox_api,
              "skopeo+umoci": time_peer}


def run(rounds, workdir):
    setup = Setup(workdir)
    try:
        times = {name: [] for name in CONTENDERS}
        for i in range(rounds):
            for name, fn in CONTENDERS.items():
                scratch = os.path.join(workdir, f"round-{i}-{name.replace(' ', '-')}")
                os.makedirs(scratch)
                try:
                    times[name].append(fn(setup.ref, scratch))
                finally:
                    shutil.rmtree(scratch)
                    settle()
        return times
    finally:
        setup.close()


def settle():
    """Write back what the last run left dirty (and the deletion of its files) before the
    next run is timed: otherwise each run pays for the previous one's writeback."""
    os.sync()
    time.sleep(0.5)


def summary(times):
    peer = statistics.median(times["skopeo+umoci"])
    return {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                   "ratio_vs_skopeo_umoci": statistics.median(t) / peer, "runs_s": t}
            for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--json", help="write medians and every run here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: umoci unpack and fastbox's store need it", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="fb-pull-bench-")
    try:
        result = summary(run(max(1, args.rounds), workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'contender':<14} {'median':>9} {'min':>9} {'max':>9}  ratio vs skopeo+umoci")
    for name, r in result.items():
        print(f"{name:<14} {r['median_s']:>8.3f}s {r['min_s']:>8.3f}s {r['max_s']:>8.3f}s  "
              f"{r['ratio_vs_skopeo_umoci']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
