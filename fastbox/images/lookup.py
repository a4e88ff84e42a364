"""The run path's view of the image store: a tag or digest reference -> Image, read from
the store's refs/ and resolved/ records alone (see store.py for the layout).

Kept apart from store.py so that `fastbox run` imports ~100 lines, not ~850: on this
machine a module's import costs in page faults roughly what it costs in size. Only os,
marshal and the reference parser. An id, an id prefix, a missing record or anything to
repair goes to ImageStore.resolve.
"""
import marshal
import os

from fastbox.errors import SpecError
from fastbox.images.reference import normalize

CACHE_VERSION = 1
# A record without one of these (written by an older fastbox) is rebuilt from the blobs.
INFO_KEYS = frozenset(("v", "id", "layers", "env", "entrypoint", "cmd", "working_dir", "user",
                       "created", "size", "exposed", "volumes"))
HEX = frozenset("0123456789abcdef")


class Image:
    """What a container needs from an image; read-only."""

    __slots__ = ("id", "ref", "manifest_digest", "layer_dirs", "env", "entrypoint", "cmd",
                 "working_dir", "user", "exposed", "volumes")

    def __init__(self, id, ref, manifest_digest, layer_dirs, env, entrypoint, cmd, working_dir, user,
                 exposed=(), volumes=()):
        put = object.__setattr__
        put(self, "id", id)
        put(self, "ref", ref)
        put(self, "manifest_digest", manifest_digest)
        put(self, "layer_dirs", layer_dirs)  # top-most first, as overlay's lowerdir wants them
        put(self, "env", env)
        put(self, "entrypoint", entrypoint)
        put(self, "cmd", cmd)
        put(self, "working_dir", working_dir)
        put(self, "user", user)
        put(self, "exposed", exposed)  # EXPOSE's ports, "80/tcp": what -P publishes
        put(self, "volumes", volumes)  # VOLUME's paths: an anonymous volume each

    def __setattr__(self, name, value):
        raise AttributeError(f"Image.{name} is read-only")

    def __delattr__(self, name):
        raise AttributeError(f"Image.{name} is read-only")

    def __repr__(self):
        return f"Image(id={self.id[:19]!r}, ref={self.ref!r}, layers={len(self.layer_dirs)})"


# A process that starts many containers resolves the same tags again and again. A memo
# entry holds while the tag's refs/ file is the very same file (every write replaces it
# by rename: new inode, new ctime), which one stat proves.
_memo = {}


def find(root, ref):
    """The Image the tag or digest reference `ref` names in the store at ROOT (absolute),
    or None: not a name, not recorded, or unreadable (ImageStore.resolve then decides)."""
    hit = _memo.get((root, ref))
    if hit is not None:
        path, ident, image = hit
        try:
            st = os.stat(path)
            if (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == ident:
                return image
        except OSError:
            pass
    if is_full_id(ref):
        return None
    try:
        name = normalize(ref)
    except SpecError:
        return None
    path = f"{root}/refs/{quote(name)}"
    digest = read_digest(path)
    info = read_info(root, digest) if digest else None
    if info is None:
        return None
    image = image_of(root, info, name, digest)
    try:
        st = os.stat(path)
        _memo[(root, ref)] = (path, (st.st_ino, st.st_mtime_ns, st.st_ctime_ns), image)
    except OSError:
        pass
    return image


def image_of(root, info, ref, digest):
    """The Image a run-path record describes, its layers under ROOT."""
    layers = f"{root}/layers/"
    return Image(info["id"], ref, digest, tuple([layers + h for h in info["layers"]]),
                 info["env"], info["entrypoint"], info["cmd"], info["working_dir"], info["user"],
                 info["exposed"], info["volumes"])


def read_info(root, digest):
    """The run-path record of a manifest (resolved/<hex>), or None if missing or unreadable."""
    try:
        info = marshal.loads(read_file(f"{root}/resolved/{digest[7:]}"))
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if type(info) is dict and info.get("v") == CACHE_VERSION and info.keys() >= INFO_KEYS:
        return info
    return None


def is_full_id(ref):
    hex_part = ref[7:] if ref.startswith("sha256:") else ref
    return len(hex_part) == 64 and HEX.issuperset(hex_part)


def quote(name):
    return name.replace("%", "%25").replace("/", "%2F").replace(":", "%3A")


def read_digest(path):
    try:
        digest = read_file(path).decode("ascii", "replace").strip()
    except OSError:
        return None
    if len(digest) == 71 and digest.startswith("sha256:") and HEX.issuperset(digest[7:]):
        return digest
    return None


def read_file(path):
    # os.open/os.read: no TextIOWrapper or BufferedReader to build on the run path.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if len(data) < 65536:  # a short read of a regular file is its end
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
