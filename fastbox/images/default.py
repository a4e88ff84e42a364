"""The root filesystem of the built-in busybox image, made from the host's static busybox.

Entries are sorted and carry one mtime (busybox's own), so the tarball, and with it the image
id, is the same every time on one machine and changes only when busybox does.
"""
import io
import os
import subprocess
import tarfile

from fastbox.errors import ImageError

BUSYBOX = "/bin/busybox"
CHANGES = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["sh"],
}
_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
         "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
         "usr/sbin": 0o755, "var": 0o755}
_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
}


def write_rootfs(fileobj, busybox=BUSYBOX):
    """Write the rootfs as a plain tar to a binary file object; return the mtime it carries."""
    _check_static(busybox)
    mtime = int(os.stat(busybox).st_mtime)
    applets = _applets(busybox)
    dirs = dict(_DIRS, **{os.path.dirname(a): 0o755 for a in applets if os.path.dirname(a) not in _DIRS})
    entries = sorted([(d, "dir") for d in dirs] + [(f, "file") for f in _FILES]
                     + [(a, "link") for a in applets] + [("bin/busybox", "busybox")])
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, kind in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uname, info.gname = mtime, "root", "root"
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, dirs[name]
                tar.addfile(info)
            elif kind == "link":
                info.type, info.mode = tarfile.SYMTYPE, 0o777
                info.linkname = os.path.relpath("bin/busybox", os.path.dirname(name))
                tar.addfile(info)
            elif kind == "file":
                _add_bytes(tar, info, _FILES[name], 0o644)
            else:
                with open(busybox, "rb") as f:
                    info.mode, info.size = 0o755, os.fstat(f.fileno()).st_size
                    tar.addfile(info, f)
    return mtime


def _add_bytes(tar, info, data, mode):
    info.mode, info.size = mode, len(data)
    tar.addfile(info, io.BytesIO(data))


def _applets(busybox):
    """Applet paths ("bin/sh", "usr/bin/[", ...) from `busybox --list-full`."""
    try:
        out = subprocess.run([busybox, "--list-full"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise ImageError(f"cannot list the applets of {busybox}: {e}") from None
    # Paths without a directory (linuxrc) are for initramfs use, not a container.
    return sorted({p for p in out.decode().split() if "/" in p and p != "bin/busybox"})


def _check_static(busybox):
    """Refuse a dynamically linked busybox: the image has no libc, so it could not start."""
    try:
        with open(busybox, "rb") as f:
            elf = f.read(1 << 16)
    except OSError as e:
        raise ImageError(f"the built-in busybox image needs {busybox} "
                         f"(apt-get install busybox-static): {e.strerror}") from None
    if elf[:4] != b"\x7fELF":
        raise ImageError(f"{busybox} is not an ELF executable")
    if _has_interpreter(elf):
        raise ImageError(f"{busybox} is dynamically linked; the built-in image needs a static "
                         "busybox (apt-get install busybox-static)")


def _has_interpreter(elf):
    """Whether an ELF image has a PT_INTERP program header (i.e. needs a dynamic loader)."""
    order = "little" if elf[5] == 1 else "big"
    if elf[4] == 2:  # ELFCLASS64
        phoff, entsize, count = (int.from_bytes(elf[a:b], order) for a, b in ((32, 40), (54, 56), (56, 58)))
    else:
        phoff, entsize, count = (int.from_bytes(elf[a:b], order) for a, b in ((28, 32), (42, 44), (44, 46)))
    return any(int.from_bytes(elf[off:off + 4], order) == 3  # PT_INTERP
               for off in range(phoff, phoff + entsize * count, entsize))
