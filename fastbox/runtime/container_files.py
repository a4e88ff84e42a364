"""Files inside a running container, reached from the host for `cp` and `export`.

Every path the user names inside the container is resolved with openat2(2) and
RESOLVE_IN_ROOT from an fd on the container's root (/proc/PID/root, pinned by a pidfd):
a symlink the container planted, absolute or full of `..`, resolves inside the
container's root, never to the host's files (CVE-2018-15664, docker cp). Below that
point every entry is opened by name from its parent's fd, O_NOFOLLOW: a symlink is
copied as a symlink, never followed. The host side is the user's own and is trusted.
"""
import ctypes
import os
import stat

from fastbox.errors import ContainerStateError, SpecError
from fastbox.file_copy import copy_fd

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x02, 0x04, 0x08, 0x10
SCOPED = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
# Set by fastbox.cli.offline_root to the stopped container's root it mounted.
OFFLINE_ROOT_ENV = "FASTBOX_OFFLINE_ROOT"


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = []


def openat2(dirfd, path, flags, resolve, mode=0):
    """openat2(2), which Python's os lacks (the core uses it in C on the start path;
    this is the CLI's `cp`, off that path)."""
    if not _libc:
        _libc.append(ctypes.CDLL(None, use_errno=True))
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc[0].syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how),
                          ctypes.sizeof(how))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return fd


class NotRunning(ContainerStateError):
    """A stopped container: its files are reached through fastbox.cli.offline_root."""


class ContainerRoot:
    """The root of a running container, pinned: `with ContainerRoot(record) as root:`;
    of a stopped one inside fastbox.cli.offline_root's mount namespace."""

    def __init__(self, record):
        self.record = record
        self.fd = self.pidfd = -1
        self.offline = None

    def __enter__(self):
        from fastbox.state import process
        r = self.record
        if r.get("status") != "running" or not r.get("pid"):
            self.offline = os.environ.get(OFFLINE_ROOT_ENV)
            if not self.offline:
                raise NotRunning(f"container {r['id'][:12]} is not running")
            self.fd = os.open(self.offline, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            return self
        try:
            self.pidfd = os.pidfd_open(r["pid"])
            self.fd = os.open(f"/proc/{r['pid']}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise ContainerStateError(f"container {r['id'][:12]} is not running") from None
        # the pid was the container's init when both fds were taken: the pidfd pins it
        if process.start_time(r["pid"]) != r.get("pid_start"):
            self.close()
            raise ContainerStateError(f"container {r['id'][:12]} is not running")
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for fd in (self.fd, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.pidfd = -1

    def open(self, path, flags=os.O_PATH):
        """path (absolute or not: from the container's /) resolved inside the root."""
        return openat2(self.fd, path, flags, SCOPED)

    def open_parent(self, path):
        """(fd of path's directory, path's last name), the directory resolved inside the
        root; the last name is not followed (a symlink is the thing itself)."""
        parent, name = split(path)
        return self.open(parent, os.O_PATH | os.O_DIRECTORY), name

    def mount_points(self):
        """The container's mount points other than / (its volumes, /proc, /sys, /dev):
        export leaves their contents out, as Docker's does."""
        out = set()
        if self.offline:
            return out  # the overlay alone: nothing is mounted in it
        try:
            with open(f"/proc/{self.record['pid']}/mountinfo") as f:
                for line in f:
                    point = line.split()[4].encode().decode("unicode_escape")
                    if point != "/":
                        out.add(point)
        except OSError:
            pass
        return out


def split(path):
    """'/a/b/c' -> ('/a/b', 'c'); '/' and '.' names are refused as a last name."""
    norm = os.path.normpath("/" + path.lstrip("/"))
    parent, name = os.path.split(norm)
    return parent, name or "."


# ------------------------------------------------------------------ walking a tree by fds

def entries(dir_fd, name, arcname, skip=()):
    """(arcname, lstat, fd or None, link target or None) for name under dir_fd and,
    if a directory, everything below it, depth first; a regular file's fd is open for
    reading (the caller closes it). skip: container paths whose contents are left out."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        yield arcname, st, None, os.readlink(name, dir_fd=dir_fd)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
        yield arcname, st, fd, None
    elif stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=dir_fd)
        try:
            yield arcname, st, None, None
            if "/" + arcname.strip("/") in skip:
                return
            for child in sorted(os.listdir(fd)):
                yield from entries(fd, child, f"{arcname.rstrip('/')}/{child}" if arcname
                                   else child, skip)
        finally:
            os.close(fd)
    else:  # device, fifo, socket: the node itself
        yield arcname, st, None, None


def write_tree(source, dst_dir_fd, dst_name=None, owner=None):
    """Make what entries() yields by fds: the first entry (the top) at dst_name under
    dst_dir_fd, or, with dst_name None, the top is dst_dir_fd itself (left as it is) and
    the rest goes into it. Each parent is a directory this call made or found without
    following a symlink. owner: (uid, gid) for everything made, else each entry's own."""
    made = {}  # arcname -> fd of a directory made or found
    try:
        first = True
        for arcname, st, fd, link in source:
            try:
                if first:
                    first = False
                    if dst_name is None:
                        made[arcname] = os.dup(dst_dir_fd)
                        continue
                    parent, name = dst_dir_fd, dst_name
                else:
                    parent_arc, name = os.path.split(arcname)
                    parent = made.get(parent_arc)
                    if parent is None:
                        raise SpecError(f"cannot copy {arcname}: its directory was not copied")
                made_fd = _make(parent, name, st, fd, link, owner)
                if made_fd is not None:
                    made[arcname] = made_fd
            finally:
                if isinstance(fd, int):
                    os.close(fd)
    finally:
        for fd in made.values():
            os.close(fd)


def _make(parent, name, st, src_fd, link, owner):
    uid, gid = owner or (st.st_uid, st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            pass
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        return fd
    _replace(parent, name)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(link, name, dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=parent)
        try:
            _copy_data(src_fd, fd)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
    else:
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=parent)
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    return None


def _replace(parent, name):
    """An existing non-directory at name goes (unlinked, never written through: it may
    be a symlink or a hard link to something else)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(f"cannot overwrite directory {name!r} with a non-directory")
    os.unlink(name, dir_fd=parent)


def _copy_data(src, dst):
    if hasattr(src, "read"):  # a tar member's file object
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                return
            os.write(dst, chunk)
    copy_fd(src, dst)


# ------------------------------------------------------------------ tar streams

def tar_out(source, fileobj):
    """What entries() yields as a tar stream on fileobj (Docker's cp and export send
    one)."""
    import tarfile
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for arcname, st, fd, link in source:
            try:
                info = tarfile.TarInfo(arcname + ("/" if stat.S_ISDIR(st.st_mode) and arcname else ""))
                info.mode, info.uid, info.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                info.mtime = int(st.st_mtime)
                if stat.S_ISLNK(st.st_mode):
                    info.type, info.linkname = tarfile.SYMTYPE, link
                elif stat.S_ISREG(st.st_mode):
                    info.size = st.st_size
                elif stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                    info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                elif stat.S_ISFIFO(st.st_mode):
                    info.type = tarfile.FIFOTYPE
                else:
                    continue  # a socket has no tar form
                if not arcname:  # export: the root itself has no entry, as in Docker's
                    continue
                if fd is not None:
                    with os.fdopen(os.dup(fd), "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
            finally:
                if fd is not None:
                    os.close(fd)


def tar_entries(fileobj):
    """A tar stream (cp - CTR:DIR) as entries() yields them, each member's path
    checked: no absolute path, no `..`, no hard link (made by name, it could reach
    anything)."""
    import tarfile

    class _Stat:
        def __init__(self, m):
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK,
                    tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
                    tarfile.FIFOTYPE: stat.S_IFIFO}.get(m.type, stat.S_IFREG)
            self.st_mode = kind | (m.mode & 0o7777)
            self.st_uid, self.st_gid = m.uid, m.gid
            self.st_atime_ns = self.st_mtime_ns = int(m.mtime) * 10 ** 9
            self.st_rdev = os.makedev(m.devmajor, m.devminor) if m.ischr() or m.isblk() else 0

    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        yield ".", None, None, None  # the top: the destination directory itself
        for m in tar:
            name = os.path.normpath(m.name)
            if name.startswith(("/", "..")) or name == ".":
                if name == ".":
                    continue
                raise SpecError(f"refusing tar member {m.name!r}: outside the destination")
            if m.islnk():
                raise SpecError(f"refusing tar member {m.name!r}: hard links are not supported")
            if not (m.isreg() or m.isdir() or m.issym() or m.ischr() or m.isblk() or m.isfifo()):
                continue
            yield ("./" + name, _Stat(m), tar.extractfile(m) if m.isreg() else None,
                   m.linkname if m.issym() else None)
