"""Host data is root's alone: what fastbox keeps on the host can be neither read nor
traversed by other users (Docker keeps /var/lib/docker 0710 and its container and
overlay directories 0700/0710).

Why traversal matters as much as reading: a container's writable layer and the image
layers hold files the container chose, setuid-root binaries included; a host user who
can reach one by path can run it and be root. A directory 0700 on the way stops that
(the layers' own modes must stay as the image says: they are the container's).

New directories are made 0700 and records 0600 where they are written. A store made
before that rule is tightened once, the first time a command opens it: the marker file
ROOT/.private says it was done, so the check costs one stat per command.
"""
import os
import stat

from fastbox import config

MARKER = ".private"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_checked = set()  # roots found tight in this process


def ensure_private():
    """Tighten FASTBOX_ROOT and FASTBOX_RUN once if they predate this rule."""
    root = config.root()
    if root in _checked:
        return
    if not os.path.exists(os.path.join(root, MARKER)):
        tighten(root, config.run_dir())
    _checked.add(root)


def tighten(root, run=None):
    """Make an existing store root's alone: the root and run directories, every
    container directory and the files in it, the names, the image store's directories
    (not what the layers hold). Then write the marker. Returns nothing; a root that does
    not exist yet is made private."""
    config.private_dir(root)
    _chmod_dir(root)
    if run:
        config.private_dir(run)
        _chmod_dir(run)
        for entry in _entries(run):
            _chmod(os.path.join(run, entry))
    containers = os.path.join(root, "containers")
    for entry in _entries(containers):
        path = os.path.join(containers, entry)
        _chmod(path)
        for name in _entries(path):
            inner = os.path.join(path, name)
            if not os.path.isdir(inner) or os.path.islink(inner):
                _chmod(inner)
    _chmod_dir(containers)
    images = os.path.join(root, "images")
    for entry in _entries(images):
        _chmod(os.path.join(images, entry))
    _chmod_dir(images)
    fd = os.open(os.path.join(root, MARKER), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                 PRIVATE_FILE)
    os.close(fd)


def _entries(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _chmod_dir(path):
    """A shared sticky directory (someone's FASTBOX_ROOT=/tmp) is not ours to close."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_ISVTX and st.st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)


def _chmod(path):
    """Directories 0700, regular files 0600; sockets, symlinks and the rest untouched
    (a symlink's target is handled where it is listed: images/ may be one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o077:
            os.chmod(path, PRIVATE_DIR)
    elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o177:
        os.chmod(path, PRIVATE_FILE)
