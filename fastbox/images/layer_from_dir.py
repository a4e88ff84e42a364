"""An overlay upper directory as an OCI layer tar (for `fastbox commit`): what the
container changed, with overlay's whiteouts turned into the layer format's, as the
build engineer's fastbox/build/layer.py does for RUN steps (to be unified):
  - a character device 0:0 (a deleted file) becomes an empty `.wh.<name>`;
  - a directory marked opaque (trusted.overlay.opaque=y: made anew over a lower one)
    gets `.wh..wh..opq` inside it, before its other entries;
  - overlay's own xattrs are not carried (no xattr is);
  - whiteouts come before their siblings.
The upper directory is the container's: walked by fds, O_NOFOLLOW, so a symlink in it
is stored as a symlink and never followed, whatever the container does meanwhile."""
import os
import stat
import tarfile

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def write_layer(upper_dir, fileobj):
    """Write upper_dir's changes as an uncompressed tar stream on fileobj."""
    fd = os.open(upper_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _add_children(tar, fd, "")
    finally:
        os.close(fd)


def _is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(fd):
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(fd, name) == b"y":
                return True
        except OSError:
            continue
    return False


def _add_children(tar, dir_fd, prefix):
    if prefix and _opaque(dir_fd):
        tar.addfile(_info(prefix + ".wh..wh..opq", None))
    names = sorted(os.listdir(dir_fd))
    stats = {n: os.stat(n, dir_fd=dir_fd, follow_symlinks=False) for n in names}
    # whiteouts first: an extractor applies them before it adds the siblings
    for name in sorted(names, key=lambda n: not _is_whiteout(stats[n])):
        st = stats[name]
        path = prefix + name
        if _is_whiteout(st):
            tar.addfile(_info(prefix + ".wh." + name, None))
        elif stat.S_ISDIR(st.st_mode):
            tar.addfile(_info(path + "/", st))
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
            try:
                _add_children(tar, sub, path + "/")
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(f, "rb") as src:
                info = _info(path, st)
                info.size = os.fstat(src.fileno()).st_size
                tar.addfile(info, src)
        elif stat.S_ISLNK(st.st_mode):
            info = _info(path, st)
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            tar.addfile(info)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            info = _info(path, st)
            info.type = (tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else
                         tarfile.BLKTYPE if stat.S_ISBLK(st.st_mode) else tarfile.FIFOTYPE)
            if not stat.S_ISFIFO(st.st_mode):
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tar.addfile(info)
        # sockets have no tar form


def _info(name, st):
    info = tarfile.TarInfo(name)
    if name.endswith("/"):
        info.type = tarfile.DIRTYPE
    if st is None:  # a whiteout marker: an empty regular file
        info.mode, info.mtime = 0o644, 0
        return info
    info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    return info
