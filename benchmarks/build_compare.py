"""`fastbox build` against `buildah bud` (apt), and COPY against a plain `cp -a`.

One run makes a temp dir holding a fastbox store (FASTBOX_ROOT), buildah's storage (vfs,
--root/--runroot, chroot isolation) and the contexts, gives both builders the same base
image (fastbox's built-in busybox, saved as an OCI archive and pulled by buildah), and
times, alternating the contenders round by round:

  demo clean      the seed's demo (FROM, RUN rm, COPY site, CMD) with no cache
                  (fastbox --no-cache; buildah bud --layers=false, its default)
  demo cached     the same, rebuilt with everything cached (fastbox; buildah --layers)
  copy big        a context of one SIZE MB file, COPY'd (no cache)
  copy many       a context of FILES small files (1-4 KiB), COPY'd (no cache)
  run write       a RUN writing RUN_MB MB with dd (no cache)
  cp -a big/many  `cp -a` of the same context data into a fresh directory on the same
                  filesystem: the floor a COPY is measured against

Each build is the whole CLI process (`fastbox build`, `buildah bud -q`); with --engine,
fastbox's is the C client served by a warm engine (`fastbox engine start`, as a user who
runs it has it), else the Python CLI (~0.2 s of imports alone). For the COPY
cases the COPY step's own time from fastbox's output ("DONE x.xxs") is reported too.
Between runs the previous image and cache are removed (outside the timing) and `sync`
writes back the page cache. Medians, the ratios fastbox/buildah and COPY/cp -a are
printed; the goals of issue 13: cached rebuild < 0.2 s, clean build <= 0.5x buildah,
COPY <= 1.2x cp -a.

    python benchmarks/build_compare.py -n 5 [--size-mb 200 --files 20000 --run-mb 100] [--json FILE]
    python benchmarks/build_compare.py -n 1 --size-mb 20 --files 2000 --run-mb 10   # smoke
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
CGROUP_PARENT = "fastbox-bench-build"
DEMO = """FROM localhost/fbbase:1
RUN rm -rf /var/www && mkdir -p /var/www
COPY site/ /var/www/
CMD ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
"""


class Bench:
    def __init__(self, work, args):
        self.work, self.args = work, args
        self.env = dict(os.environ, FASTBOX_ROOT=os.path.join(work, "fbroot"),
                        FASTBOX_RUN=os.path.join(work, "fbrun"),
                        FASTBOX_CGROUP_PARENT=CGROUP_PARENT)
        self.env.pop("FASTBOX_NO_ENGINE", None)
        if not args.engine:
            self.env["FASTBOX_NO_ENGINE"] = "1"
        self.buildah_base = ["buildah", "--root", os.path.join(work, "bah-root"), "--runroot",
                             os.path.join(work, "bah-run"), "--storage-driver", "vfs"]
        self.contexts = {}

    def fastbox(self, *args, check=True):
        r = subprocess.run([FASTBOX, *args], env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"fastbox {' '.join(args)}: {r.stderr}")
        return r

    def buildah(self, *args, check=True):
        r = subprocess.run(self.buildah_base + list(args), capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)}: {r.stderr}")
        return r

    def setup(self):
        from fastbox.images.store import ImageStore
        os.environ.update(FASTBOX_ROOT=self.env["FASTBOX_ROOT"], FASTBOX_RUN=self.env["FASTBOX_RUN"])
        ImageStore().ensure_default()
        if self.args.engine:
            self.fastbox("engine", "start")
        self.fastbox("tag", "busybox", "localhost/fbbase:1")
        base = os.path.join(self.work, "base.tar")
        self.fastbox("save", "--format", "oci", "-o", base, "localhost/fbbase:1")
        self.buildah("pull", "-q", f"oci-archive:{base}")
        a = self.args
        self.contexts["demo"] = self._context("demo", DEMO, {"site/index.html": b"<h1>hi</h1>\n"})
        self.contexts["copy big"] = self._context(
            "big", "FROM localhost/fbbase:1\nCOPY data/ /data/\n", {})
        _big_file(os.path.join(self.contexts["copy big"], "data"), a.size_mb)
        self.contexts["copy many"] = self._context(
            "many", "FROM localhost/fbbase:1\nCOPY data/ /data/\n", {})
        _many_files(os.path.join(self.contexts["copy many"], "data"), a.files)
        self.contexts["run write"] = self._context(
            "run", f"FROM localhost/fbbase:1\nRUN dd if=/dev/zero of=/big bs=1M count={a.run_mb} 2>/dev/null\n", {})

    def _context(self, name, dockerfile, files):
        d = os.path.join(self.work, "ctx-" + name)
        os.makedirs(d)
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write(dockerfile)
        for rel, data in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
            with open(os.path.join(d, rel), "wb") as f:
                f.write(data)
        return d

    def reset(self):
        self.fastbox("rmi", "-f", "bench:1", check=False)
        self.fastbox("builder", "prune", "-f")
        self.buildah("rmi", "-f", "bench:1", check=False)
        self.buildah("rmi", "--prune", check=False)
        subprocess.run(["sync"])

    def time_fastbox(self, case, cached=False):
        args = ["build", "-t", "bench:1", self.contexts[case]]
        if not cached:
            args.insert(1, "--no-cache")
        t = time.perf_counter()
        r = self.fastbox(*args)
        wall = time.perf_counter() - t
        steps = [float(x) for x in re.findall(r"^#\d+ DONE (\d+\.\d+)s$", r.stdout, re.M)]
        return wall, (steps[-1] if steps else None)

    def time_buildah(self, case, cached=False):
        args = ["bud", "--isolation", "chroot", "-q", "-t", "bench:1"]
        if cached:
            args.append("--layers")
        t = time.perf_counter()
        self.buildah(*args, self.contexts[case])
        return time.perf_counter() - t

    def time_cp(self, case):
        src = os.path.join(self.contexts[case], "data")
        dest = os.path.join(self.work, "cp-dest")
        t = time.perf_counter()
        subprocess.run(["cp", "-a", src, dest], check=True)
        took = time.perf_counter() - t
        shutil.rmtree(dest)
        return took

    def close(self):
        if self.args.engine:
            self.fastbox("engine", "stop", check=False)
        self.buildah("rm", "--all", check=False)
        self.buildah("rmi", "-a", "-f", check=False)
        subprocess.run(["umount", "-R", os.path.join(self.work, "bah-root")], capture_output=True)
        subprocess.run(["umount", "-R", os.path.join(self.work, "bah-run")], capture_output=True)
        import glob
        for d in glob.glob(f"/sys/fs/cgroup/*/{CGROUP_PARENT}") + glob.glob(f"/sys/fs/cgroup/{CGROUP_PARENT}"):
            try:
                os.rmdir(d)
            except OSError:
                pass


def _big_file(d, size_mb):
    os.makedirs(d)
    with open(os.path.join(d, "big.bin"), "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size_mb):
            f.write(chunk)


def _many_files(d, count):
    for i in range(count):
        sub = os.path.join(d, f"d{i // 500:03d}")
        if i % 500 == 0:
            os.makedirs(sub)
        with open(os.path.join(sub, f"f{i:05d}.txt"), "wb") as f:
            f.write(os.urandom(1024 + (i * 37) % 3072))


def main():
    # the CLI's default network is the bridge: its bridge, veths, nft table and
    # sysctls stay in a namespace of our own, never the host's
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("build_compare")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="rounds")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--run-mb", type=int, default=100)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--engine", action="store_true",
                    help="time fastbox through its engine (fastbox engine start), not the Python CLI")
    args = ap.parse_args()
    if shutil.which("buildah") is None:
        sys.exit("needs buildah (apt)")
    work = tempfile.mkdtemp(prefix="fb-bench-build-", dir="/var/tmp")
    bench = Bench(work, args)
    res = {}

    def add(name, value):
        if value is not None:
            res.setdefault(name, []).append(value)
    try:
        bench.setup()
        for _ in range(args.n):
            for case in ("demo", "copy big", "copy many", "run write"):
                bench.reset()
                wall, step = bench.time_fastbox(case)
                add(f"{case}: fastbox", wall)
                if case.startswith("copy"):
                    add(f"{case}: fastbox COPY step", step)
                    add(f"{case}: cp -a", bench.time_cp(case))
                add(f"{case}: buildah", bench.time_buildah(case))
            bench.reset()
            bench.time_fastbox("demo", cached=True)
            add("demo cached: fastbox", bench.time_fastbox("demo", cached=True)[0])
            bench.time_buildah("demo", cached=True)
            add("demo cached: buildah", bench.time_buildah("demo", cached=True))
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"{'case':34} {'median s':>9}")
    for k, v in med.items():
        print(f"{k:34} {v:9.3f}")
    print()
    for case in ("demo", "demo cached", "copy big", "copy many", "run write"):
        if f"{case}: buildah" in med:
            print(f"{case:12} fastbox/buildah = {med[f'{case}: fastbox'] / med[f'{case}: buildah']:.2f}x")
    for case in ("copy big", "copy many"):
        if f"{case}: cp -a" in med:
            print(f"{case:12} COPY step/cp -a = {med[f'{case}: fastbox COPY step'] / med[f'{case}: cp -a']:.2f}x"
                  f"  (whole build/cp -a = {med[f'{case}: fastbox'] / med[f'{case}: cp -a']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"medians": med, "runs": res, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
