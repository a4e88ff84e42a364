"""fastbox-runtime against runc and crun as the OCI runtime under real clients, in one run:

    python benchmarks/oci_compare.py [-n 50] [--warmup 3] [--only verbs,exec,ctr,podman] [--json FILE]

1. verbs: the verbs alone, as a shim calls them: `create` + `start` + `state` until
   "stopped" + `delete` of a /bin/true bundle (busybox rootfs, absolute cgroupsPath).
2. exec: `RUNTIME exec ID /bin/true` into a running container.
3. ctr: `ctr run --rm --rootfs ROOTFS --runc-binary RUNTIME ID /bin/true` against a
   containerd started here (CRI off, root/state/sockets in a temp dir).
4. podman: `podman --runtime RUNTIME run --rm --network none IMAGE /bin/true` (cgroupfs,
   file events, vfs storage, roots in a temp dir).

Rounds are interleaved (the runtime order rotates each round) so drift in machine load
hits all alike. The whole driver re-executes itself in a private mount namespace with a
tmpfs on /run (containerd's shim sockets, podman's state) and /sys/fs/cgroup/unified
unmounted there: crun 1.8 refuses this host's hybrid cgroups otherwise, and every
runtime then sees the same (v1) hierarchy. The host is untouched; cgroups go under
/fastbox-oci-bench*, removed at the end. Reports medians and ratios to runc; never
asserts on time. Goals (issue 14): verbs <= 0.3x runc, ctr run --rm <= 0.65x runc.
"""
import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.dirname(HERE))  # the installed package first: it has libexec/
PARENT = "fastbox-oci-bench"
UNIFIED = "/sys/fs/cgroup/unified"
DEVNULL = subprocess.DEVNULL


def fastbox_runtime():
    from fastbox.oci import runtime_binary
    return runtime_binary()


def runtimes():
    out = {"fastbox": fastbox_runtime()}
    for name in ("runc", "crun"):
        if shutil.which(name):
            out[name] = shutil.which(name)
    return out


def make_bundle(base, name, args):
    bundle = os.path.join(base, name)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "tmp", "etc", "run"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy(os.path.realpath("/bin/busybox"), os.path.join(rootfs, "bin/busybox"))
    for a in ("sh", "true", "sleep"):
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    subprocess.run([fastbox_runtime(), "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"].update(terminal=False, args=args)
    cfg["root"]["readonly"] = False
    cfg["linux"]["cgroupsPath"] = f"/{PARENT}/{name}"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def run(argv, **kw):
    """stderr to a file, not a pipe: a created container holds the runtime's stdio."""
    with tempfile.TemporaryFile() as err:
        r = subprocess.run(argv, stdin=DEVNULL, stdout=DEVNULL, stderr=err, **kw)
        if r.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {err.read().decode()[-400:]}")
    return r


def verbs_once(binary, root, bundle, cid):
    run([binary, "--root", root, "create", "--bundle", bundle, cid])
    run([binary, "--root", root, "start", cid])
    while True:
        r = subprocess.run([binary, "--root", root, "state", cid], stdout=subprocess.PIPE, stderr=DEVNULL, text=True)
        if json.loads(r.stdout)["status"] == "stopped":
            break
    run([binary, "--root", root, "delete", cid])


def interleave(names, rounds, warmup, once):
    times = {n: [] for n in names}
    for i in range(warmup + rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for n in order:
            t = timed(lambda: once(n))
            if i >= warmup:
                times[n].append(t)
    return times


def bench_verbs(rts, base, n, warmup):
    bundle = make_bundle(base, "verbs", ["/bin/true"])
    roots = {name: os.path.join(base, f"root-{name}") for name in rts}
    return interleave(list(rts), n, warmup, lambda name: verbs_once(rts[name], roots[name], bundle, "v1"))


def bench_exec(rts, base, n, warmup):
    bundle = make_bundle(base, "execbox", ["/bin/sleep", "3600"])
    roots = {name: os.path.join(base, f"exec-root-{name}") for name in rts}
    for name, binary in rts.items():
        run([binary, "--root", roots[name], "create", "--bundle", bundle, f"x-{name}"])
        run([binary, "--root", roots[name], "start", f"x-{name}"])
    try:
        return interleave(list(rts), n, warmup,
                          lambda name: run([rts[name], "--root", roots[name], "exec", f"x-{name}", "/bin/true"]))
    finally:
        for name, binary in rts.items():
            subprocess.run([binary, "--root", roots[name], "delete", "--force", f"x-{name}"], stderr=DEVNULL)


def start_containerd(base):
    d = os.path.join(base, "containerd")
    os.makedirs(d)
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{d}/ctd.sock"\n[ttrpc]\n  address = "{d}/ctd.sock.ttrpc"\n')
    proc = subprocess.Popen(["containerd", "-c", f"{d}/config.toml"], stdout=DEVNULL, stderr=DEVNULL)
    for _ in range(600):
        if os.path.exists(f"{d}/ctd.sock"):
            break
        time.sleep(0.01)
    return proc, ["ctr", "-a", f"{d}/ctd.sock", "-n", PARENT], f"{d}/fifo"


def bench_ctr(rts, base, n, warmup):
    rootfs = os.path.join(make_bundle(base, "ctrbox", ["/bin/true"]), "rootfs")
    proc, ctr, fifo = start_containerd(base)
    try:
        return interleave(list(rts), n, warmup, lambda name: run(
            ctr + ["run", "--rm", "--fifo-dir", fifo, "--rootfs", "--runc-binary", rts[name], rootfs,
                   f"c-{name}", "/bin/true"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def bench_podman(rts, base, n, warmup):
    d = os.path.join(base, "podman")
    os.makedirs(d)
    rootfs = os.path.join(make_bundle(base, "podbox", ["/bin/true"]), "rootfs")
    with tarfile.open(f"{d}/rootfs.tar", "w") as t:
        t.add(rootfs, arcname=".")
    with open(f"{d}/containers.conf", "w") as f:
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    env = dict(os.environ, CONTAINERS_CONF=f"{d}/containers.conf")
    base_argv = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/runroot", "--tmpdir", f"{d}/tmp",
                 "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    run(base_argv + ["import", f"{d}/rootfs.tar", "bb"], env=env)
    flags = ["--network", "none", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
             f"--cgroup-parent=/{PARENT}-podman"]
    try:
        return interleave(list(rts), n, warmup, lambda name: run(
            base_argv + ["--runtime", rts[name], "run", "--rm", *flags, "bb", "/bin/true"], env=env))
    finally:
        subprocess.run(base_argv + ["rm", "-af"], env=env, stdout=DEVNULL, stderr=DEVNULL)


def remove_cgroups():
    for top in glob.glob(f"/sys/fs/cgroup/*/{PARENT}*"):
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def report(results, as_json):
    lines = []
    for what, times in results.items():
        med = {n: statistics.median(t) for n, t in times.items() if t}
        base = med.get("runc")
        lines.append(f"{what}:")
        for n, m in med.items():
            ratio = f"{m / base:.2f}x runc" if base else ""
            lines.append(f"  {n:8s} median {m:8.2f} ms  min {min(times[n]):8.2f}  n={len(times[n])}  {ratio}")
    print("\n".join(lines))
    if as_json:
        with open(as_json, "w") as f:
            json.dump({w: {n: {"median_ms": statistics.median(t), "samples_ms": t} for n, t in times.items()}
                       for w, times in results.items()}, f, indent=1)


def main():
    # the CLI's default network is the bridge: its bridge, veths, nft table and
    # sysctls stay in a namespace of our own, never the host's
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("oci_compare")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", default="verbs,exec,ctr,podman")
    ap.add_argument("--json")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.inside:
        script = ("mount --make-rprivate / && mount -t tmpfs -o mode=755 tmpfs /run && "
                  f"(! mountpoint -q {UNIFIED} || umount {UNIFIED}) && exec \"$@\"")
        return subprocess.call(["unshare", "-m", "sh", "-c", script, "_", sys.executable,
                                os.path.abspath(__file__), "--inside", *sys.argv[1:]])
    rts = runtimes()
    benches = {"verbs": bench_verbs, "exec": bench_exec, "ctr": bench_ctr, "podman": bench_podman}
    results = {}
    with tempfile.TemporaryDirectory(prefix="fb-oci-bench-") as base:
        try:
            for what in a.only.split(","):
                results[what] = benches[what](rts, base, a.n, a.warmup)
                print(f"{what}: done", file=sys.stderr)
        finally:
            remove_cgroups()
    report(results, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
