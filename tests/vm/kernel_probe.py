"""What this kernel offers of the syscalls and cgroup/overlay features fastbox's core
uses or falls back from; one line each. Run by guest.sh in the VM lane (and runnable on
any host, as root): `python3 tests/vm/kernel_probe.py`. Informational: it fails only if
it cannot run at all."""
import ctypes
import errno
import os
import platform
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

AT_FDCWD = -100
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
CLOSE_RANGE_CLOEXEC = 1 << 2
RESOLVE_IN_ROOT = 0x10


def sys(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *args)
    return r if r >= 0 else -ctypes.get_errno()


def verdict(r, ok=lambda r: r >= 0):
    return "yes" if ok(r) else f"no ({errno.errorcode.get(-r, -r)})"


def show(name, what):
    print(f"  {name:<34} {what}")


def main():
    print(f"kernel {platform.release()}")
    # clone3 with a too-small struct: EINVAL where it exists, ENOSYS where not.
    r = sys(435, None, ctypes.c_size_t(0))
    show("clone3", "yes" if r == -errno.EINVAL else verdict(r))
    r = sys(436, ctypes.c_uint(1 << 20), ctypes.c_uint((1 << 20) + 1), ctypes.c_uint(CLOSE_RANGE_CLOEXEC))
    show("close_range(CLOSE_RANGE_CLOEXEC)", verdict(r))

    class OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
    how = OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT)
    r = sys(437, ctypes.c_int(AT_FDCWD), b"/", ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    show("openat2(RESOLVE_IN_ROOT)", verdict(r))
    if r >= 0:
        os.close(r)
    r = sys(434, ctypes.c_int(os.getpid()), ctypes.c_uint(0))
    show("pidfd_open", verdict(r))
    if r >= 0:
        os.close(r)
    # mount_setattr with flags it must reject: EINVAL where it exists.
    r = sys(442, ctypes.c_int(-1), b"", ctypes.c_uint(0xFFFFFFFF), None, ctypes.c_size_t(0))
    show("mount_setattr", "yes" if r in (-errno.EINVAL, -errno.EBADF) else verdict(r))

    with tempfile.TemporaryDirectory() as d:
        # a tmpfs of our own: overlay needs an upper that supports its xattrs
        libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, None)
        for sub in ("l1", "l2", "m"):
            os.mkdir(os.path.join(d, sub))
        try:
            fd = sys(430, b"overlay", ctypes.c_uint(0))
            show("fsopen(overlay) (new mount API)", verdict(fd))
            if fd >= 0:
                os.close(fd)
                # Before 6.5 overlay has no fs_context of its own: fsconfig takes any key
                # and only FSCONFIG_CMD_CREATE tells.
                os.mkdir(f"{d}/u")
                os.mkdir(f"{d}/w")
                r = fsconfig_overlay([("lowerdir+", f"{d}/l1"), ("lowerdir+", f"{d}/l2"),
                                      ("upperdir", f"{d}/u"), ("workdir", f"{d}/w")])
                show("overlay lowerdir+ (6.8)", verdict(r) + ("" if r >= 0 else
                     ": the core falls back to a joined lowerdir, then to mount(2)"))
                r = fsconfig_overlay([("lowerdir", f"{d}/l1:{d}/l2"),
                                      ("upperdir", f"{d}/u"), ("workdir", f"{d}/w")])
                show("overlay via fsconfig lowerdir", verdict(r))
            for i, opt in enumerate(("volatile", "metacopy=on", "userxattr", "redirect_dir=on")):
                os.mkdir(f"{d}/u{i}")
                os.mkdir(f"{d}/w{i}")  # fresh: a volatile mount leaves its work dir unusable
                data = f"lowerdir={d}/l1:{d}/l2,upperdir={d}/u{i},workdir={d}/w{i},{opt}".encode()
                r = libc.mount(b"overlay", f"{d}/m".encode(), b"overlay", 0, data)
                show(f"overlay option {opt}", "yes" if r == 0 else f"no ({errno.errorcode.get(ctypes.get_errno())})")
                if r == 0:
                    libc.umount2(f"{d}/m".encode(), 0)
        finally:
            libc.umount2(d.encode(), 2)

    root = "/sys/fs/cgroup"
    probe = os.path.join(root, "fastbox-vm-probe")
    # Makes (and removes) a cgroup to list its files: only where told this is a guest.
    if "--guest" in sys_argv() and os.path.exists(os.path.join(root, "cgroup.controllers")):
        print(f"  cgroup2 root controllers           {open(root + '/cgroup.controllers').read().strip()}")
        try:
            with open(root + "/cgroup.subtree_control") as f:
                print(f"  root subtree_control               {f.read().strip() or '(none)'}")
            with open(root + "/cgroup.subtree_control", "w") as f:
                f.write("+memory +cpu +pids")  # what fastbox enables too
            os.mkdir(probe)
            for name in ("cgroup.kill", "memory.peak", "memory.swap.max", "memory.oom.group",
                         "pids.peak", "pids.events", "cpu.max", "cpu.max.burst", "cpu.stat",
                         "memory.events"):
                show(name, "yes" if os.path.exists(os.path.join(probe, name)) else "no")
        finally:
            os.rmdir(probe)
    print(f"  BPF_PROG_TYPE_CGROUP_DEVICE        "
          f"{'yes (CONFIG_CGROUP_BPF)' if _config('CONFIG_CGROUP_BPF') else 'unknown'}")


def fsconfig_overlay(pairs):
    """fsopen + fsconfig strings + CMD_CREATE: 0 or -errno (no mount is made)."""
    fd = sys(430, b"overlay", ctypes.c_uint(0))
    if fd < 0:
        return fd
    try:
        for key, value in pairs:
            r = sys(431, fd, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)
            if r < 0:
                return r
        return min(0, sys(431, fd, FSCONFIG_CMD_CREATE, None, None, 0))
    finally:
        os.close(fd)


def sys_argv():
    import sys as _sys
    return _sys.argv[1:]


def _config(key):
    for path in (f"/boot/config-{platform.release()}", "/proc/config.gz"):
        try:
            if path.endswith(".gz"):
                import gzip
                text = gzip.open(path, "rt").read()
            else:
                text = open(path).read()
        except OSError:
            continue
        return f"{key}=y" in text
    return False


if __name__ == "__main__":
    main()
