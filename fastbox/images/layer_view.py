"""The filesystem a stack of unpacked layer directories shows, read without a mount.

The store's unpacked layers are in overlay's upper format: a whiteout is a char 0:0 device,
an opaque directory has trusted.overlay.opaque=y. Reading an image's files this way (its
/etc/passwd for `-u NAME`, a build's COPY sources) must resolve the image's symlinks inside
the image, never on the host: a layer may hold `etc -> /` or `etc/passwd -> /root/x`.
"""
import os
import stat

OPAQUE_XATTR = "trusted.overlay.opaque"


def is_whiteout(st):
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path):
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) in (b"y", b"x")
    except OSError:
        return False


class LayerView:
    """The filesystem a stack of layer directories (top-most first) shows, read without a
    mount: a whiteout hides what is below it, an opaque directory hides lower contents."""

    def __init__(self, layer_dirs):
        self.layers = list(layer_dirs)

    def find(self, rel):
        """(host path, lstat) of the entry at rel ("a/b", relative to the root), or None.
        No symlink is ever followed on the host: in each layer, every ancestor of rel is
        checked with lstat to be a real directory first (a layer may hold `a -> /`, and
        a/etc must not reach the host's /etc)."""
        rel = rel.strip("/")
        if not rel:
            return (self.layers[0], os.lstat(self.layers[0])) if self.layers else None
        parts = rel.split("/")
        for layer in self.layers:
            state = _ancestors(layer, parts)
            if state == _HIDDEN:
                return None
            if state == _ABSENT:
                continue
            path = os.path.join(layer, rel)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None:
                return None if is_whiteout(st) else (path, st)
            if state == _OPAQUE:
                return None
        return None

    def listdir(self, rel):
        """The names in the directory at rel, merged over the layers."""
        rel = rel.strip("/")
        parts = rel.split("/") if rel else []
        names, hidden = set(), set()
        for layer in self.layers:
            state = _ancestors(layer, parts + ["-"]) if parts else _PRESENT
            if state == _HIDDEN:
                break
            if state == _ABSENT:
                continue
            path = os.path.join(layer, rel) if rel else layer
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                if state == _OPAQUE:
                    break
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            with os.scandir(path) as it:
                for e in it:
                    if e.name in names or e.name in hidden:
                        continue
                    if is_whiteout(e.stat(follow_symlinks=False)):
                        hidden.add(e.name)
                    else:
                        names.add(e.name)
            if is_opaque(path) or state == _OPAQUE:
                break
        return sorted(names)

    def resolve(self, rel, follow_last=True):
        """rel with every symlink in it resolved inside this root (as the container would
        see it); returns the resolved relative path (which may not exist)."""
        parts = [p for p in rel.strip("/").split("/") if p and p != "."]
        done, hops = [], 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cand = "/".join(done + [part])
            found = self.find(cand)
            if found and stat.S_ISLNK(found[1].st_mode) and (parts or follow_last):
                hops += 1
                if hops > 40:
                    raise OSError(40, "too many levels of symbolic links", rel)
                target = os.readlink(found[0])
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            done.append(part)
        return "/".join(done)


_PRESENT, _ABSENT, _HIDDEN, _OPAQUE = range(4)


def _ancestors(layer, parts):
    """What this layer makes of the ancestors of parts: _ABSENT (one is not in it: look
    below), _HIDDEN (one is a whiteout or not a directory: nothing below shows, and
    nothing of this layer is reachable there), _OPAQUE (all real directories, one opaque:
    this layer is the last to look in), or _PRESENT (all real directories)."""
    path, state = layer, _PRESENT
    for part in parts[:-1]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return _HIDDEN if state == _OPAQUE else _ABSENT
        if not stat.S_ISDIR(st.st_mode):
            return _HIDDEN
        if is_opaque(path):
            state = _OPAQUE
    return state
