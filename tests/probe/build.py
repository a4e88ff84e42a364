"""Build the probe and a rootfs tarball holding busybox + /probe.

    python tests/probe/build.py OUT_DIR     # writes OUT_DIR/probe and OUT_DIR/rootfs.tar

Used by tests/conftest.py (the `probe` fixture); runnable by hand to poke at the probe.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "probe.c")


def compiler():
    """gcc on PATH, or None."""
    return shutil.which("gcc")


def compile_probe(out_path, cc=None):
    """gcc -static -O2: the probe must run in an image that has no libc."""
    cc = cc or compiler()
    if cc is None:
        raise FileNotFoundError("gcc is not installed")
    subprocess.run([cc, "-static", "-O2", "-Wall", "-o", out_path, SOURCE], check=True,
                   capture_output=True)
    return out_path


def write_rootfs(tar_path, probe_path):
    """busybox's image rootfs (the one fastbox builds from the host) plus /probe, plus a few
    fixtures: a non-executable file and a directory to try to execute, and image env."""
    from fastbox.images import default
    buf = io.BytesIO()
    default.write_rootfs(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r") as src, tarfile.open(tar_path, "w") as out:
        for member in src:
            data = src.extractfile(member) if member.isreg() else None
            out.addfile(member, data)
        info = tarfile.TarInfo("probe")
        info.mode, info.size = 0o755, os.path.getsize(probe_path)
        with open(probe_path, "rb") as f:
            out.addfile(info, f)
        _add(out, "etc/not-executable", b"#!/bin/sh\necho should not run\n", 0o644)
        _add(out, "etc/fixture", b"from the image\n", 0o644)
        d = tarfile.TarInfo("srv/data")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        out.addfile(d)
        _add(out, "srv/data/layer-file", b"lower\n", 0o644)
    return tar_path


def _add(tar, name, data, mode):
    info = tarfile.TarInfo(name)
    info.mode, info.size = mode, len(data)
    tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    probe = compile_probe(os.path.join(out, "probe"))
    print(write_rootfs(os.path.join(out, "rootfs.tar"), probe))
