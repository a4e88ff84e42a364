"""An empty volume takes the image's files at its mount point, as Docker's do (unless
nocopy): before the container starts, what the image shows at that path is copied
into the volume with its owners, modes, extended attributes, times, hard links and
symlinks as they are. The volume's own root takes the owner and mode of the image's
directory. A volume with anything in it is never touched.

The image is read through LayerView, so the mount point's path is resolved inside the
image (`/conf -> /etc` makes /conf/app the image's /etc/app, never the host's), and no
symlink of the image is ever followed on the host: links are copied as links. A mount
point that is itself a symlink is not followed (the mount refuses it). Everything written into
the volume is made relative to directory fds opened with O_NOFOLLOW, so a container
that holds the volume meanwhile cannot redirect the copy out of it."""
import errno
import fcntl
import os
import stat

from fastbox.file_copy import copy_fd
from fastbox.images.layer_view import LayerView

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN_LINKS = 256  # first copies of hard-linked files held open to link the others to


def from_image(data_dir, layer_dirs, target):
    """Fill the volume directory data_dir from the image's files at target, if the
    volume is empty and the image has a directory there. Locked on the volume, so two
    containers starting with a new volume copy once."""
    root = os.open(data_dir, _DIR)
    try:
        if _has_entries(root):
            return
        lock = os.open(os.path.dirname(data_dir), _DIR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _has_entries(root):
                _copy_into(root, LayerView(layer_dirs), target)
        finally:
            os.close(lock)
    finally:
        os.close(root)


def _has_entries(dir_fd):
    with os.scandir(dir_fd) as it:
        return next(it, None) is not None


def _copy_into(root, view, target):
    try:  # a mount point that is itself a symlink is refused at the mount: not followed
        rel = view.resolve(target, follow_last=False)
    except OSError:  # a symlink loop in the image: nothing to copy
        return
    found = view.find(rel)
    if found is None or not stat.S_ISDIR(found[1].st_mode):
        return
    copy = _TreeCopy(view)
    try:
        copy.children(rel, root)
    finally:
        copy.close()
    _set_meta(root, found[0], found[1])


class _TreeCopy:
    def __init__(self, view):
        self.view = view
        self.links = {}  # (dev, ino) of a source -> fd of its first copy

    def children(self, rel, dst):
        """Copy the merged directory rel of the image into the directory fd dst."""
        for name in self.view.listdir(rel):
            child = f"{rel}/{name}" if rel else name
            found = self.view.find(child)
            if found is not None:
                self.entry(child, found[0], found[1], name, dst)

    def entry(self, rel, src, st, name, dst):
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            fd = os.open(name, _DIR, dir_fd=dst)
            try:
                self.children(rel, fd)
                _set_meta(fd, src, st)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            self.regular(src, st, name, dst)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), name, dir_fd=dst)  # as it is: never followed
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst,
                     follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dst)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
            try:  # an O_PATH fd takes chown/chmod through /proc: no open of the node
                os.chown(f"/proc/self/fd/{fd}", st.st_uid, st.st_gid)
                os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(mode))
                os.utime(f"/proc/self/fd/{fd}", ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        # sockets: nothing to copy, as with any copy of a tree

    def regular(self, src, st, name, dst):
        key = (st.st_dev, st.st_ino)
        if key in self.links:
            os.link(f"/proc/self/fd/{self.links[key]}", name, dst_dir_fd=dst,
                    follow_symlinks=True)
            return
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dst)
        keep = st.st_nlink > 1 and len(self.links) < _MAX_OPEN_LINKS
        try:
            _copy_data(src, fd)
            _set_meta(fd, src, st)
            if keep:
                self.links[key] = fd
        finally:
            if not keep:
                os.close(fd)

    def close(self):
        for fd in self.links.values():
            os.close(fd)
        self.links.clear()


def _copy_data(src, out):
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        copy_fd(fd, out)
    finally:
        os.close(fd)


def _set_meta(fd, src, st):
    """Owner first (it clears setuid bits and file capabilities), then mode, extended
    attributes (overlay's own excepted) and times."""
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        if name.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(fd, name, os.getxattr(src, name, follow_symlinks=False))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
