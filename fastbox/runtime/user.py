"""Resolving `-u USER[:GROUP]` against the image's own /etc/passwd and /etc/group.

The files are read through the image's merged view, with its symlinks resolved inside the
image: an image holding `etc -> /srv/x` or `etc/passwd -> /root/passwd` must not make a
host file decide the container's uid.
"""
import os
import stat

from fastbox.errors import SpecError
from fastbox.images.layer_view import LayerView


class Identity:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid, gid, groups, home):
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


_cache = {}


def resolve(user, layer_dirs):
    """Names are looked up in the top-most layer holding the file, as the container
    would see it; numeric ids work without an entry. No user means root, looked up the
    same way (for its supplementary groups). Layers never change: cached per process."""
    key = (user or "0", layer_dirs)
    if key not in _cache:
        _cache[key] = _lookup(user or "0", layer_dirs)
    return _cache[key]


def _lookup(user, layer_dirs):
    name, _, group = user.partition(":")
    passwd = _entries(layer_dirs, "etc/passwd")
    entry = _find(passwd, name)
    if entry:
        uid, gid, home = int(entry[2]), int(entry[3]), entry[5] or "/"
    elif name.isdigit():
        uid, gid, home = int(name), 0, "/root" if name == "0" else "/"
    else:
        raise SpecError(f"unable to find user {name}: no matching entries in passwd file")
    groups_file = _entries(layer_dirs, "etc/group")
    if group:
        g = _find(groups_file, group)
        if g:
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise SpecError(f"unable to find group {group}: no matching entries in group file")
    username = entry[0] if entry else None
    extra = tuple(int(g[2]) for g in groups_file
                  if username and len(g) > 3 and username in g[3].split(",") and g[2].isdigit())
    return Identity(uid, gid, tuple(sorted({gid, *extra})), home)


def _entries(layer_dirs, relpath):
    view = LayerView(layer_dirs)
    try:
        found = view.find(view.resolve(relpath))
    except OSError:  # a symlink loop: no file, as in the container
        return []
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return []
    # O_NOFOLLOW: find() checked every ancestor in the layer; the file itself is not a link.
    fd = os.open(found[0], os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, encoding="utf-8", errors="replace") as f:
        return [line.split(":") for line in f.read(1 << 22).splitlines() if line and line[0] != "#"]


def _find(entries, key):
    for e in entries:
        if len(e) >= 4 and (e[0] == key or (key.isdigit() and e[2] == key)):
            return e + [""] * (7 - len(e))
    return None
