"""`fastbox bench copyup`: what the first write to an image file costs through the
container's overlay, by file size and storage option, against a plain file on a volume.

A one-layer image (busybox, /data/<size> files of non-zero bytes, and a static timer at
/fbtimer) is imported into a temporary store next to $FASTBOX_ROOT, so its layers sit on
the same filesystem as kept containers' upper dirs. In each container the timer measures,
with CLOCK_MONOTONIC around the system calls only, for each file in turn:

  write   open(O_WRONLY|O_APPEND) + write(1 byte): the open copies the whole file up
  chmod   chmod(0640): a full copy-up, or only the metadata with metacopy=on

Every container makes the first write of every size once; variants run in interleaved
rounds and the table shows the median over rounds. Kept containers (upper on disk) are
removed right after their run.
"""
import os
import shutil
import subprocess
import tarfile
import tempfile

from fastbox.bench import report

DEFAULT_SIZES = "4k,64k,1m,16m,128m"
UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
IMAGE_REF = "fastbox-bench/copyup:latest"

# (op, variant label, run options); "volume" writes /vol/<size> on a host directory.
WRITE_VARIANTS = (
    ("volume (no overlay)", {"remove": True}),
    ("tmpfs upper (--rm)", {"remove": True}),
    ("disk upper", {"remove": False}),
    ("disk upper, volatile", {"remove": False, "storage_opts": ("volatile",)}),
    ("disk upper, metacopy=on", {"remove": False, "storage_opts": ("metacopy=on",)}),
)
CHMOD_VARIANTS = (
    ("tmpfs upper (--rm)", {"remove": True}),
    ("tmpfs upper, metacopy=on", {"remove": True, "storage_opts": ("metacopy=on",)}),
    ("disk upper", {"remove": False}),
    ("disk upper, metacopy=on", {"remove": False, "storage_opts": ("metacopy=on",)}),
)

TIMER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static long long now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* fbtimer write|chmod FILE...: one line "FILE NS" per file, the op's wall time. The files
 * share one directory. */
int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int do_chmod = strcmp(argv[1], "chmod") == 0;
    /* Untimed: copy the files' directory up first (a file made and removed in it), so
     * the first file timed pays for its own copy-up only. */
    char warm[4096];
    const char *slash = strrchr(argv[2], '/');
    int n = slash ? (int)(slash - argv[2]) : 0;
    snprintf(warm, sizeof warm, "%.*s/.fbtimer-warm", n, argv[2]);
    int wfd = open(warm, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (wfd >= 0) {
        close(wfd);
        unlink(warm);
    }
    for (int i = 2; i < argc; i++) {
        long long t0 = now(), t1;
        if (do_chmod) {
            if (chmod(argv[i], 0640) < 0) {
                perror(argv[i]);
                return 1;
            }
            t1 = now();
        } else {
            int fd = open(argv[i], O_WRONLY | O_APPEND | O_CLOEXEC);
            if (fd < 0 || write(fd, "x", 1) != 1) {
                perror(argv[i]);
                return 1;
            }
            t1 = now();
            close(fd);
        }
        printf("%s %lld\n", argv[i], t1 - t0);
    }
    return 0;
}
"""


def parse_sizes(text):
    """'4k,1m' -> [("4k", 4096), ("1m", 1048576)]."""
    out = []
    for label in (s.strip().lower() for s in text.split(",") if s.strip()):
        number, unit = (label[:-1], label[-1]) if label[-1] in UNITS else (label, "")
        try:
            size = int(float(number) * UNITS.get(unit, 1))
        except ValueError:
            raise ValueError(f"invalid size {label!r}: use e.g. 4k, 64k, 1m, 512m") from None
        if size < 1:
            raise ValueError(f"invalid size {label!r}: must be at least 1 byte")
        out.append((label, size))
    if not out:
        raise ValueError("no sizes given")
    return out


def compile_timer(workdir):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("fastbox bench copyup needs gcc to build its static timer")
    src = os.path.join(workdir, "fbtimer.c")
    out = os.path.join(workdir, "fbtimer")
    with open(src, "w") as f:
        f.write(TIMER_C)
    r = subprocess.run([gcc, "-static", "-O2", "-o", out, src], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the timer failed (static libc missing?): {r.stderr[-300:]}")
    return out


class _Pattern:
    """size bytes of a repeated random MiB (never zero: no hole to skip in a copy-up)."""

    def __init__(self, size, block):
        self.left, self.block, self.pos = size, block, 0

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(self.block) - self.pos)
            out += self.block[self.pos:self.pos + take]
            self.pos = (self.pos + take) % len(self.block)
        self.left -= n
        return bytes(out)


def write_image_tar(path, timer, sizes):
    """busybox's rootfs + /fbtimer + /data/<label> for each size."""
    import io
    from fastbox.images import default
    block = os.urandom(1 << 20)
    buf = io.BytesIO()
    default.write_rootfs(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as src, tarfile.open(path, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
        info = tarfile.TarInfo("fbtimer")
        info.mode, info.size = 0o755, os.path.getsize(timer)
        with open(timer, "rb") as f:
            out.addfile(info, f)
        d = tarfile.TarInfo("data")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        out.addfile(d)
        for label, size in sizes:
            info = tarfile.TarInfo(f"data/{label}")
            info.mode, info.size = 0o644, size
            out.addfile(info, _Pattern(size, block))
    return path


def _volume_files(dest, sizes):
    os.makedirs(dest)
    block = os.urandom(1 << 20)
    for label, size in sizes:
        with open(os.path.join(dest, label), "wb") as f:
            p = _Pattern(size, block)
            while p.left:
                f.write(p.read(1 << 20))


def _run_one(img, op, paths, options):
    """One container running the timer; {path: ms}. A kept container is removed after."""
    from fastbox import api
    from fastbox.runtime import container
    from fastbox.spec import RunSpec
    t0 = container.now()
    spec = RunSpec(img.ref, ["/fbtimer", op, *paths], **options)
    result = api.run_spec(spec, img, t0, capture_output=True)
    try:
        if result.exit_code != 0:
            raise RuntimeError(f"the timer exited {result.exit_code}: "
                               f"{result.stderr.decode(errors='replace').strip()[-300:]}")
        out = {}
        for line in result.stdout.decode().splitlines():
            path, ns = line.rsplit(" ", 1)
            out[path] = int(ns) / 1e6
        return out
    finally:
        if not spec.remove:
            from fastbox.state.store import StateStore
            StateStore().remove(result.id, force=True)


def run(sizes=DEFAULT_SIZES, rounds=3, progress=None):
    """The copy-up benchmark; returns a result dict (see fastbox.bench.report).
    progress(done, total) is called after each container."""
    from fastbox import config
    from fastbox.images.store import ImageStore
    from fastbox.bench.startup import machine
    sizes = parse_sizes(sizes) if isinstance(sizes, str) else list(sizes)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    os.makedirs(config.root(), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-copyup-", dir=config.root())
    try:
        timer = compile_timer(workdir)
        tar = write_image_tar(os.path.join(workdir, "image.tar"), timer, sizes)
        img = ImageStore(root=os.path.join(workdir, "images")).import_tar(tar, IMAGE_REF)
        os.unlink(tar)
        vol = os.path.join(workdir, "volume")
        _volume_files(vol, sizes)
        jobs = [("write", name, opts) for name, opts in WRITE_VARIANTS] + \
               [("chmod", name, opts) for name, opts in CHMOD_VARIANTS]
        runs = {(op, name): {label: [] for label, _ in sizes} for op, name, _ in jobs}
        total, done = rounds * len(jobs), 0
        for r in range(rounds):
            shift = r % len(jobs)
            for op, name, opts in jobs[shift:] + jobs[:shift]:
                if name.startswith("volume"):
                    opts = {**opts, "volumes": [f"{vol}:/vol"]}
                    paths = [f"/vol/{label}" for label, _ in sizes]
                else:
                    paths = [f"/data/{label}" for label, _ in sizes]
                got = _run_one(img, op, paths, opts)
                for (label, _), path in zip(sizes, paths):
                    runs[(op, name)][label].append(got[path])
                done += 1
                if progress:
                    progress(done, total)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    labels = [label for label, _ in sizes]
    rows = [{"op": op, "variant": name,
             "median_ms": {s: report.percentile(sorted(v), 50) for s, v in runs[(op, name)].items()},
             "runs_ms": runs[(op, name)]} for op, name, _ in jobs]
    result = {"benchmark": "copyup", "machine": machine(),
              "config": {"sizes": labels, "bytes": dict(sizes), "rounds": rounds},
              "rows": rows}
    result["conclusion"] = conclusion(result)
    return result


def conclusion(result):
    """Which option makes the cheapest first write, at the largest size, among those an
    ephemeral (--rm) container can take."""
    largest = result["config"]["sizes"][-1]
    writes = {r["variant"]: r["median_ms"][largest] for r in result["rows"] if r["op"] == "write"}
    chmods = {r["variant"]: r["median_ms"][largest] for r in result["rows"] if r["op"] == "chmod"}
    overlay = {k: v for k, v in writes.items() if not k.startswith("volume")}
    if not overlay:
        return []
    best = min(overlay, key=overlay.get)
    lines = [f"cheapest first write of {largest} through the overlay: {best} "
             f"({overlay[best]:.2f} ms; " + ", ".join(f"{k} {v:.2f}" for k, v in overlay.items()
                                                      if k != best) + ")"]
    if "volume (no overlay)" in writes:
        lines.append(f"a volume (no copy-up): {writes['volume (no overlay)']:.3f} ms")
    meta = [k for k in chmods if "metacopy" in k]
    if meta:
        plain = {k: v for k, v in chmods.items() if "metacopy" not in k}
        lines.append(f"chmod of {largest}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in chmods.items())
                     + (" (metacopy=on copies only metadata)" if plain else ""))
    return lines
