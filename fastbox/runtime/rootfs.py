"""The container's filesystem plan: overlay layers, scratch space, volumes, tmpfs, and
the /proc and /sys paths hidden or made read-only (runc's defaults)."""
import os

from fastbox import config

_MASKED = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
          "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# The container's /proc and /sys come from the same kernel as ours: paths this kernel
# lacks need no mount, and what is a file or a directory here is one there (each failed
# attempt is a lookup in the child).
MASKED_FILES = tuple(p for p in _MASKED if os.path.exists(p) and not os.path.isdir(p))
MASKED_DIRS = tuple(p for p in _MASKED if os.path.isdir(p))
READONLY = tuple(p for p in _READONLY if os.path.exists(p))

# csrc/fb_plan.h enum fb_mount_kind
BIND_DIR, BIND_FILE, TMPFS = 1, 2, 3
# An ephemeral container's upper layer lives on a tmpfs mounted inside its own mount
# namespace: nothing touches the disk and exit removes it with the namespace.
SCRATCH_OPTIONS = "mode=755"
# ...and metacopy: chmod/chown of an image file copies its metadata only (measured by
# `fastbox bench copyup`: 0.01 ms against 50-500 ms for a 128-512 MiB file), safe since
# layers are unpacked without their trusted.overlay.* xattrs.
EPHEMERAL_OPTIONS = ["metacopy=on"]


class RootfsPlan:
    __slots__ = ("lowers", "scratch", "scratch_data", "upper", "work", "rootfs",
                 "overlay_opts", "mounts", "container_dir", "etc_is_dir")

    def __init__(self):
        self.scratch = self.scratch_data = self.container_dir = None


def plan(cid, layer_dirs, spec, ephemeral):
    p = RootfsPlan()
    p.etc_is_dir = etc_is_dir(layer_dirs)  # the image's /etc: a directory (or none), no link
    p.lowers = _lowers(layer_dirs, spec, ephemeral, p.etc_is_dir)
    p.overlay_opts = [o for o in spec.storage_opts if o != "tmpfs"]
    if ephemeral and not spec.storage_opts and _metacopy_supported():
        p.overlay_opts = EPHEMERAL_OPTIONS
    if ephemeral:
        p.scratch = _scratch_dir()
        p.scratch_data = SCRATCH_OPTIONS
        p.upper, p.work, p.rootfs = (p.scratch + "/upper", p.scratch + "/work", p.scratch + "/rootfs")
    else:
        d = os.path.join(config.containers_dir(), cid)
        p.container_dir = d
        p.upper, p.work, p.rootfs = d + "/upper", d + "/work", d + "/rootfs"
        # d is the record's directory (0700, so no host user reaches a setuid file in
        # the upper layer); upper stays 0755: its mode is the container's "/".
        for sub in (p.upper, p.work, p.rootfs):
            os.makedirs(sub, mode=0o755, exist_ok=True)  # a restart keeps its upper layer
    p.mounts = [_volume(v, layer_dirs) for v in spec.volumes] + [
        (TMPFS, None, t.target, False, t.options) for t in spec.tmpfs]
    if spec.shm_size:  # --shm-size: a bigger /dev/shm over the core's 64 MiB one
        p.mounts.append((TMPFS, None, "/dev/shm", False, f"mode=1777,size={spec.shm_size}"))
    return p


# ---------------------------------------------------------------- the init layer
# Docker's "init layer": a read-only layer over the image's with empty /etc/hosts,
# /etc/resolv.conf and /etc/hostname, for a container that gets its own bound over
# them. The bind targets then exist, and the start makes nothing in the upper layer
# (busybox has none of them: the child made all three per start, copying /etc up first,
# ~0.1 ms of a bridge start). One directory, shared by every such container.
INIT_FILES = ("hosts", "resolv.conf", "hostname")
_init_made = set()
_etc_dir = {}  # an image's layer_dirs -> whether its /etc is a directory (or absent)


def _lowers(layer_dirs, spec, ephemeral, etc_dir):
    """The overlay's layers, top-most first: the init layer over the image's for a
    container whose /etc files are bound (all but an ephemeral one with no network of
    its own: the child writes those into its upper layer), unless the image's /etc is no
    directory (a symlink: the init layer's /etc would hide it)."""
    if (ephemeral and spec.network in ("none", "host")) or not etc_dir:
        return list(layer_dirs)
    return [init_layer()] + list(layer_dirs)


def etc_is_dir(layer_dirs):
    key = tuple(layer_dirs)
    if key not in _etc_dir:
        import stat
        _etc_dir[key] = True
        for layer in key:
            try:
                st = os.lstat(os.path.join(layer, "etc"))
            except FileNotFoundError:
                continue
            # a directory; or a whiteout (a char device 0:0): no /etc, made like a new one
            _etc_dir[key] = stat.S_ISDIR(st.st_mode) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
            break
    return _etc_dir[key]


def init_layer():
    """The init layer's directory, made once (in a temp directory, renamed into place:
    a concurrent start sees it whole or not at all)."""
    path = os.path.join(config.images_dir(), "init-layer")
    if path in _init_made or os.path.isdir(path):
        _init_made.add(path)
        return path
    import tempfile
    config.private_dir(config.images_dir())
    tmp = tempfile.mkdtemp(prefix=".init-layer-", dir=config.images_dir())
    try:
        os.chmod(tmp, 0o755)
        os.mkdir(os.path.join(tmp, "etc"), 0o755)
        for name in INIT_FILES:
            os.close(os.open(os.path.join(tmp, "etc", name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.rename(tmp, path)
    except OSError:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(path):  # not made by a concurrent start either
            raise
    _init_made.add(path)
    return path


def _fill_volume(v, path, layer_dirs):
    from fastbox.volumes import populate
    try:
        populate.from_image(path, layer_dirs, v.target)
    except OSError as e:
        from fastbox.errors import StartError
        raise StartError(f"cannot copy the image's {v.target} into volume {v.source}: "
                         f"{e.strerror or e}", "volumes", e.errno or 0) from None


_scratch_made = set()


def _scratch_dir():
    """One empty host directory serves every ephemeral container: each mounts its own
    tmpfs over it, visible only in its own mount namespace."""
    path = os.path.join(config.run_dir(), "scratch")
    if path not in _scratch_made:
        config.private_dir(path)
        _scratch_made.add(path)
    return path


_metacopy = []


def _metacopy_supported():
    """The kernel's overlay has metacopy (its module parameter exists once loaded);
    asked once per process once the answer is yes, not per container."""
    if not _metacopy:
        if not os.path.exists("/sys/module/overlay/parameters/metacopy"):
            return False
        _metacopy.append(True)
    return True


def _volume(v, layer_dirs):
    """Docker creates a missing host directory for -v, and a missing named volume (an
    empty volume takes the image's files at its path, unless nocopy); a file is bound
    as a file."""
    if v.kind == "volume":
        from fastbox.volumes import store
        path = store.data_path(v.source, v.anonymous)
        if not v.nocopy:
            _fill_volume(v, path, layer_dirs)
        return (BIND_DIR, path, v.target, v.readonly, None)
    try:
        is_dir = os.path.isdir(v.source) or not os.path.exists(v.source)
        if not os.path.exists(v.source):
            os.makedirs(v.source, mode=0o755)
    except OSError as e:
        from fastbox.errors import SpecError
        raise SpecError(f"invalid volume {v.source}: {e.strerror}") from None
    return (BIND_DIR if is_dir else BIND_FILE, v.source, v.target, v.readonly, None)
