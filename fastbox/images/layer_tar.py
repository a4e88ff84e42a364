"""A layer directory -> an OCI layer tarball: a build step's (fastbox build) or a
container's upperdir (fastbox commit).

A layer directory is in the store's unpacked-layer format, which is overlay's upper
format: a whiteout is a char 0:0 device, an opaque directory has trusted.overlay.opaque=y.
A RUN step's directory is its container's overlay upperdir, so the diff is what overlay
copied up, never found by walking the lower layers (kaniko's cost). Writing the tarball:
whiteouts become `.wh.NAME`, opaque directories `.wh..wh..opq`, each written before its
siblings; overlay's own xattrs (origin, impure, ...) are removed from the directory and
never reach the tar. The tarball is uncompressed, so its digest is its diffID: one hash pass.

A build step does not write its tar: it hashes the tar's bytes as they would be (digest_of,
or TarStream without a file while a COPY makes its files) and the store keeps the layer as
its directory. write_tar() makes the same bytes again from the directory when a push or a
save needs the blob (ImageStore.ensure_blob), which checks them against the diffID.
"""
import hashlib
import os
import stat
import tarfile

from fastbox.images.layer_view import OPAQUE_XATTR, is_opaque, is_whiteout

OVERLAY_XATTR = "trusted.overlay."
# What COPY keeps of a source's xattrs (cp -a keeps all it can): users' own and file
# capabilities. Never trusted.* (overlay acts on trusted.overlay.* in a lower layer) nor
# security labels, which belong to the host.
COPY_XATTRS = ("user.", "security.capability")
MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
_CHUNK = 1 << 20


class _HashingWriter:
    """Counts and hashes what it is given; writes it on to f unless f is None."""

    def __init__(self, f):
        self.f, self.hash, self.size = f, hashlib.sha256(), 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return self.f.write(data) if self.f is not None else len(data)

    def tell(self):
        return self.size


def write_tar(layer_dir, out_path, xattrs=True, strip=True, exclude=()):
    """Write layer_dir as an OCI layer tarball to out_path (new); strip overlay's xattrs
    from layer_dir on the way (xattrs=False: none are read; "copy": only the COPY_XATTRS
    ones, those a COPY gives its files; strip=False: overlay's are left out of the tar but left on the directory, which
    is a live container's upperdir; exclude: relative paths left out, with what is below
    them). Returns (digest, size); the digest is also the diffID.

    Not fsync'ed: a step's blob is as durable as the files it was made from (the context,
    a container's upper layer), and a build killed at any point leaves the store
    consistent without it; the cache checks a blob's size before it trusts it."""
    with open(out_path, "xb", buffering=_CHUNK) as raw:
        return _walk(layer_dir, _HashingWriter(raw), xattrs, strip, exclude)


def digest_of(layer_dir, xattrs=True, strip=True):
    """(digest, size) of the tar write_tar() would write, without writing it."""
    return _walk(layer_dir, _HashingWriter(None), xattrs, strip, ())


def _walk(layer_dir, out, xattrs, strip, exclude):
    walk = _Walk(layer_dir, out)
    walk.read_xattrs, walk.strip, walk.exclude = xattrs, strip, frozenset(exclude)
    walk.dir("")
    out.write(b"\0" * 1024)  # the end-of-archive blocks, padded to a record as tar does
    out.write(b"\0" * (-out.size % tarfile.RECORDSIZE))
    return "sha256:" + out.hash.hexdigest(), out.size


def copied_xattrs(path):
    """{name: value} of the xattrs a COPY keeps of path (a path or an fd), sorted by
    name (their order in the tar is part of the layer's digest)."""
    try:
        names = os.listxattr(path, follow_symlinks=False) if isinstance(path, str) \
            else os.listxattr(path)
    except OSError:
        return {}
    out = {}
    for name in sorted(names):
        if name.startswith(COPY_XATTRS):
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False) \
                    if isinstance(path, str) else os.getxattr(path, name)
            except OSError:
                pass
    return out


def pax_of(xattrs):
    """The pax records of xattrs ({name: value}), None if there are none."""
    return {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
            for k, v in sorted(xattrs.items())} if xattrs else None


class TarStream:
    """A layer tar made entry by entry as a COPY makes its files (steps.Copier): written to
    path, or (path None) only hashed.

    canonical stays True while the entries come in write_tar()'s order (names sorted at
    each level, parents first) and each name once: the stream is then byte for byte what
    write_tar() makes from the finished directory, so its digest is the layer's diffID.
    Otherwise (overlapping sources, a later source replacing an earlier one's file) the
    caller hashes the directory instead (digest_of)."""

    def __init__(self, path=None):
        self.path = path
        self.raw = open(path, "xb", buffering=_CHUNK) if path else None
        self.out = _HashingWriter(self.raw)
        self.canonical, self._last = True, ()

    def header(self, name, mode, uid, gid, size, mtime, kind, linkname="", devmajor=0, devminor=0,
               pax=None):
        self._in_order(name)
        self.out.write(_header(name, mode, uid, gid, size, mtime, kind, linkname, devmajor,
                               devminor, pax))

    def _in_order(self, name):
        key = tuple(name.split("/"))
        if key <= self._last:
            self.canonical = False
        self._last = key

    def data(self, chunk):
        self.out.write(chunk)

    def file(self, name, mode, uid, gid, mtime, data, pax=None):
        """A small regular file's whole entry in one write (a layer of them has many)."""
        self._in_order(name)
        self.out.write(_header(name, mode, uid, gid, len(data), mtime, tarfile.REGTYPE, pax=pax)
                       + data + _ZEROS[:-len(data) % 512])

    def pad(self, size):
        if size % 512:
            self.out.write(b"\0" * (-size % 512))

    def close(self):
        """End the archive: (digest, size)."""
        self.out.write(b"\0" * 1024)
        self.out.write(b"\0" * (-self.out.size % tarfile.RECORDSIZE))
        self.abandon()
        return "sha256:" + self.out.hash.hexdigest(), self.out.size

    def abandon(self):
        if self.raw is not None:
            self.raw.close()


def _octal(n, width):
    return b"%0*o\0" % (width - 1, n)


def _header(name, mode, uid, gid, size, mtime, kind, linkname="", devmajor=0, devminor=0,
            pax=None):
    """A tar header (ustar, or pax through tarfile when a field does not fit): measured
    at ~3 us against tarfile's ~35 us, which is most of a layer of small files."""
    bname, blink = name.encode("utf-8", "surrogateescape"), linkname.encode("utf-8", "surrogateescape")
    if pax or len(bname) > 100 or len(blink) > 100 or not bname.isascii() or \
            not blink.isascii() or max(uid, gid) > 0o7777777 or size > 0o77777777777 or \
            not 0 <= mtime <= 0o77777777777:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.size, info.mtime = mode, uid, gid, size, mtime
        info.type, info.linkname, info.uname, info.gname = kind, linkname, "", ""
        info.devmajor, info.devminor = devmajor, devminor
        info.pax_headers = pax or {}
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    fields = b"".join((_octal(mode & 0o7777, 8), _octal(uid, 8), _octal(gid, 8),
                       _octal(size, 12), _octal(mtime, 12)))
    dev = _octal(devmajor, 8) + _octal(devminor, 8)
    # the checksum of the parts, not of the 512 bytes (the rest is constant)
    check = _CHECK_BASE + sum(bname) + sum(fields) + kind[0] + sum(blink) + sum(dev)
    return b"".join((bname.ljust(100, b"\0"), fields, b"%06o\0 " % check, kind,
                     blink.ljust(100, b"\0"), b"ustar\x0000", _ZEROS[:64], dev, _ZEROS[:167]))


_CHECK_BASE = 8 * ord(" ") + sum(b"ustar\x0000")  # the checksum field counts as spaces
_ZEROS = bytes(511)


class _Walk:
    def __init__(self, root, out):
        self.root, self.out, self.links = root, out, {}

    def dir(self, rel):
        path = os.path.join(self.root, rel) if rel else self.root
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        sts = [(e, e.stat(follow_symlinks=False)) for e in entries]
        # Whiteouts first: a reader applying entries in order never deletes what this
        # very layer adds.
        for e, st in sts:
            if is_whiteout(st):
                self.marker(rel, ".wh." + e.name, st)
        for e, st in sts:
            if not is_whiteout(st):
                self.entry(rel + e.name if not rel else rel + "/" + e.name, e.path, st)

    def marker(self, rel, name, st):
        self.out.write(_header(f"{rel}/{name}" if rel else name, 0, 0, 0, 0, int(st.st_mtime),
                               tarfile.REGTYPE))

    exclude = frozenset()

    def entry(self, rel, path, st):
        if rel in self.exclude:
            return
        mode, perm = st.st_mode, stat.S_IMODE(st.st_mode)
        pax = pax_of(self.xattrs(path))
        head = (perm, st.st_uid, st.st_gid)
        mtime = int(st.st_mtime)
        if stat.S_ISDIR(mode):
            self.out.write(_header(rel, *head, 0, mtime, tarfile.DIRTYPE, pax=pax))
            if is_opaque(path):
                self.marker(rel, ".wh..wh..opq", st)
            self.dir(rel)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                self.out.write(_header(rel, *head, 0, mtime, tarfile.LNKTYPE, self.links[key], pax=pax))
                return
            self.links[key] = rel
            self.out.write(_header(rel, *head, st.st_size, mtime, tarfile.REGTYPE, pax=pax))
            self.content(path, st.st_size)
        elif stat.S_ISLNK(mode):
            self.out.write(_header(rel, *head, 0, mtime, tarfile.SYMTYPE, os.readlink(path), pax=pax))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            self.out.write(_header(rel, *head, 0, mtime, kind, "", os.major(st.st_rdev),
                                   os.minor(st.st_rdev), pax=pax))
        elif stat.S_ISFIFO(mode):
            self.out.write(_header(rel, *head, 0, mtime, tarfile.FIFOTYPE, pax=pax))
        # sockets are not part of an image (Docker skips them too)

    def content(self, path, size):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            left = size
            while left > 0:
                chunk = os.read(fd, min(left, _CHUNK))
                if not chunk:
                    raise OSError(f"{path} shrank while it was written into its layer")
                self.out.write(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        self.out.write(b"\0" * (-size % 512))

    read_xattrs = strip = True

    def xattrs(self, path):
        """The entry's xattrs for the tar; overlay's own are removed from the directory
        (all but opaque, which the caller reads)."""
        if not self.read_xattrs:
            return {}
        if self.read_xattrs == "copy":
            return copied_xattrs(path)
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError:
            return {}
        out = {}
        for name in names:
            if name.startswith(OVERLAY_XATTR):
                if name != OPAQUE_XATTR and self.strip:
                    os.removexattr(path, name, follow_symlinks=False)
                continue
            try:
                out[name] = os.getxattr(path, name, follow_symlinks=False)
            except OSError:
                pass
        return out
