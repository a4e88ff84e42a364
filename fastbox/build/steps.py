"""The steps that change a stage's filesystem, each writing one new layer directory:
RUN (a fastbox container whose upper layer is the directory), COPY/ADD (files copied in,
with their parents' metadata taken from the layers below), WORKDIR's mkdir."""
import errno
import hashlib
import os
import shutil
import stat
import tarfile
import time

from fastbox.images import layer_tar
from fastbox.images.layer_view import LayerView
from fastbox.errors import FastboxError

_CHUNK = 1 << 20
_BIG = 4 << 20  # a file this large is copied by the kernel while its hashes are computed


class BuildError(FastboxError):
    """A step failed (docker build exits 1)."""

    exit_code = 1


def run_container(argv, layer_dirs, base, *, env, workdir, user, network, volumes=(),
                  tmpfs=(), out_fd=None, quiet=False):
    """Run argv in a container on layer_dirs (top first), its upper layer base/upper.
    Returns (exit code, captured output when quiet)."""
    from fastbox.images.lookup import Image
    from fastbox.runtime import container, step
    from fastbox.runtime.cgroup import dirs_for
    from fastbox.runtime.stdio import Stdio
    from fastbox.spec import RunSpec
    from fastbox.state import owners
    options = {"network": network} if network else {}  # else the run path's default
    spec = RunSpec("fastbox-build-step", list(argv), env=[f"{k}={v}" for k, v in env.items()],
                   workdir=workdir or None, user=user or None, remove=True,
                   storage_opts=step.LAYER_OVERLAY_OPTIONS, volumes=volumes, tmpfs=tmpfs,
                   **options)
    image = Image("", "", "", tuple(layer_dirs), (), (), (), workdir or "", user or "")
    owners.begin_once()
    cid = container.new_id()
    stdout = None if quiet or out_fd is None else out_fd
    with Stdio(None, stdout, stdout, quiet) as io:
        claim = owners.claim(cid, owners.RUN, cgroups=dirs_for(cid))
        try:
            started = step.start(cid, spec, image, base, io.child_fds())
            try:
                code, out, err = container.supervise(started, io)
            finally:
                container.teardown(started)
        finally:
            claim.release()
    return code, (out or b"") + (err or b"")


def finish_upper(base):
    """After a RUN: base/upper is the layer; the rest of base goes."""
    for sub in ("work", "rootfs"):
        shutil.rmtree(os.path.join(base, sub), ignore_errors=True)
    return os.path.join(base, "upper")


class Copier:
    """Writes files into a new (empty) layer directory at paths of the stage's filesystem
    (view), and, as it goes, the layer's tar (layer_tar.TarStream, which may only hash it):
    every source file is read once, its bytes going to the tar and, when its digest is not
    known yet, to the hash that keys the cache, while the kernel copies them into the
    layer's file (copy_file_range: a reflink where the filesystem has them). Whatever it
    makes it gives the tar with the metadata it gives the directory, so the tar unpacks to
    exactly the directory. Used as a context manager (a large file's hashes run in threads
    of its own, the two hashes and the copy on different cores)."""

    def __init__(self, layer_dir, view: LayerView, tar=None, known=None):
        self.dir, self.view, self.tar = layer_dir, view, tar
        self.known = known or {}   # source host path -> content digest already known
        self.digests = {}          # source host path -> content digest computed here
        self.now = time.time_ns() // 10**9 * 10**9  # new directories' time (whole seconds, as tar keeps)
        self.dir_times = {}        # layer path -> mtime ns, set last
        self.real_dirs = set()     # of the layer, checked with lstat during this copy
        self.made_dirs = set()     # made (and written to the tar) by this copy
        self.made = set()          # every path this copy made (the directory starts empty)
        self._threads = None
        self._kernel_copy = True   # copy_file_range works here (until it says otherwise)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None

    def host(self, rel):
        return f"{self.dir}/{rel}" if rel else self.dir  # rel: relative, no leading /

    def _dir(self, rel, uid, gid, mode, mtime_ns, like=None):
        """A directory of the layer gets its metadata once: the first source to make it
        sets it (a tar entry for it twice would unpack differently by tool); like: the
        directory whose kept xattrs it takes (layer_tar.COPY_XATTRS)."""
        if rel in self.made_dirs:
            return
        self.made_dirs.add(rel)
        path = self.host(rel)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        xattrs = layer_tar.copied_xattrs(like) if like else None
        for name, value in (xattrs or {}).items():
            os.setxattr(path, name, value, follow_symlinks=False)
        self.dir_times[path] = mtime_ns
        self.real_dirs.add(rel)
        if self.tar:
            self.tar.header(rel, mode, uid, gid, 0, mtime_ns // 10**9, tarfile.DIRTYPE,
                            pax=layer_tar.pax_of(xattrs))

    def ensure_dir(self, rel, owner=None, mode=None):
        """rel and its parents as directories in the layer: an existing one of the stage
        keeps its metadata (its mode and owner are copied into the layer); a new one is
        0755 (or mode), root's (or owner)."""
        parts = [p for p in rel.strip("/").split("/") if p]
        for n in range(1, len(parts) + 1):
            sub = "/".join(parts[:n])
            if sub in self.real_dirs:
                continue
            path = self.host(sub)
            if os.path.isdir(path) and not os.path.islink(path):
                self.real_dirs.add(sub)
                continue
            if sub in self.made and os.path.lexists(path):
                os.unlink(path)
            below = self.view.find(sub)
            os.mkdir(path)
            self.made.add(sub)
            if below and stat.S_ISDIR(below[1].st_mode):
                st = below[1]
                self._dir(sub, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                          below[0])  # as overlay's copy-up would make it
            else:
                uid, gid = owner or (0, 0)
                self._dir(sub, uid, gid, 0o755 if mode is None or n < len(parts) else mode,
                          self.now)

    def exists_as_dir(self, rel):
        path = self.host(rel)
        if os.path.isdir(path) and not os.path.islink(path):
            return True
        found = self.view.find(rel)
        return bool(found and stat.S_ISDIR(found[1].st_mode))

    def put(self, target, entries, owner=None, chmod=None):
        """Copy entries ((relative path, host path, lstat), the top first with relative path
        "") to target. owner: (uid, gid) for all, else each entry's own; chmod: the mode
        for all."""
        target = target.strip("/")
        for rel, src, st in entries:
            dest = f"{target}/{rel}" if rel else target
            uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
            mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
            if rel == "" and stat.S_ISDIR(st.st_mode):
                if self.exists_as_dir(dest):  # it keeps its metadata
                    self.ensure_dir(dest, owner, mode)
                else:  # a new directory takes the source's
                    self.ensure_dir(dest.rpartition("/")[0], owner)
                    self.place(dest, src, st, uid, gid, mode)
                continue
            parent = dest.rpartition("/")[0]
            if rel == "" or not self._real_dir(parent):
                # an earlier source may have put a symlink where this one has a directory:
                # never write through it (it would reach the host)
                self.ensure_dir(parent, owner)
            self.place(dest, src, st, uid, gid, mode)

    def _real_dir(self, rel):
        if rel in self.real_dirs or not rel:
            return True
        try:
            ok = stat.S_ISDIR(os.lstat(self.host(rel)).st_mode)
        except OSError:
            return False
        if ok:
            self.real_dirs.add(rel)
        return ok

    def place(self, dest, src, st, uid, gid, mode):
        path = self.host(dest)
        kind = st.st_mode
        if not stat.S_ISDIR(kind) and (dest in self.real_dirs or dest in self.made_dirs):
            # a directory replaced by a file or link is no longer one
            self.real_dirs = {d for d in self.real_dirs if d != dest and not d.startswith(dest + "/")}
            self.made_dirs = {d for d in self.made_dirs if d != dest and not d.startswith(dest + "/")}
        old = None
        if dest in self.made:  # else it cannot be there: the directory started empty
            try:
                old = os.lstat(path)
            except FileNotFoundError:
                pass
        self.made.add(dest)
        if old is not None and not (stat.S_ISDIR(kind) and stat.S_ISDIR(old.st_mode)):
            if stat.S_ISDIR(old.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        mtime = st.st_mtime_ns // 10**9
        if stat.S_ISREG(kind):
            self._copy_file(src, path, dest, st, uid, gid, mode)
            return
        if stat.S_ISDIR(kind):
            if old is None or not stat.S_ISDIR(old.st_mode):
                os.mkdir(path)
            self._dir(dest, uid, gid, mode, st.st_mtime_ns, src)
            return
        link = ""
        if stat.S_ISLNK(kind):
            link = os.readlink(src)
            os.symlink(link, path)
            tar_kind = tarfile.SYMTYPE
        elif stat.S_ISFIFO(kind):
            os.mkfifo(path)
            tar_kind = tarfile.FIFOTYPE
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            os.mknod(path, kind, st.st_rdev)
            tar_kind = tarfile.CHRTYPE if stat.S_ISCHR(kind) else tarfile.BLKTYPE
        else:
            return  # a socket: not part of an image
        os.chown(path, uid, gid, follow_symlinks=False)
        if not stat.S_ISLNK(kind):
            os.chmod(path, mode)
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)
        if self.tar:
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if tar_kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else (0, 0)
            self.tar.header(dest, 0o777 if stat.S_ISLNK(kind) else mode, uid, gid, 0, mtime,
                            tar_kind, link, *dev)

    def _copy_file(self, src, path, dest, st, uid, gid, mode):
        """One read of the source: to the layer's file, the tar, and the content hash
        unless its digest is known. Raw fds: a Python file object's set-up costs more
        than a small file's copy."""
        fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            size = os.fstat(fin).st_size
            if size != st.st_size:
                raise BuildError(f"{src} changed while it was copied")
            fout = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                hasher = None if src in self.known else hashlib.sha256()
                mtime = st.st_mtime_ns // 10**9
                xattrs = layer_tar.copied_xattrs(fin)
                pax = layer_tar.pax_of(xattrs)
                if size >= _BIG:
                    if self.tar:
                        self.tar.header(dest, mode, uid, gid, size, mtime, tarfile.REGTYPE,
                                        pax=pax)
                    self._copy_big(fin, fout, size, hasher, src)
                    if self.tar:
                        self.tar.pad(size)
                else:
                    data = os.read(fin, size) if size else b""
                    if len(data) != size:
                        raise BuildError(f"{src} shrank while it was copied")
                    if data:
                        _write_all(fout, data)
                    if self.tar:
                        self.tar.file(dest, mode, uid, gid, mtime, data, pax)
                    if hasher:
                        hasher.update(data)
                if hasher:
                    self.digests[src] = hasher.hexdigest()
                os.fchown(fout, uid, gid)
                os.fchmod(fout, mode)
                for name, value in xattrs.items():  # after fchown, which drops capabilities
                    os.setxattr(fout, name, value)
                os.utime(fout, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fout)
        finally:
            os.close(fin)

    def _copy_big(self, fin, fout, size, hasher, src):
        """The kernel copies (copy_file_range; a reflink on XFS or btrfs) in one thread,
        the content hash runs in another, the tar's hash here: sha256 is the cost of a
        large file, and each of its two streams is serial."""
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor
            self._threads = ThreadPoolExecutor(2, thread_name_prefix="fastbox-copy")
        copying = self._threads.submit(self._copy_range, fin, fout, size) \
            if self._kernel_copy else None
        try:
            self._hash_big(fin, fout, size, hasher, src, write=copying is None)
        finally:
            copied = copying.result() if copying is not None else True  # its fds stay open until then
        if not copied:
            self._kernel_copy = False  # not on this filesystem: write what we read
            os.ftruncate(fout, 0)
            offset = 0
            while offset < size:
                chunk = os.pread(fin, min(size - offset, _CHUNK), offset)
                if not chunk:
                    raise BuildError(f"{src} shrank while it was copied")
                os.pwrite(fout, chunk, offset)
                offset += len(chunk)

    def _hash_big(self, fin, fout, size, hasher, src, write):
        hashing, offset = None, 0
        try:
            while offset < size:
                chunk = os.pread(fin, min(size - offset, _CHUNK), offset)
                if not chunk:
                    raise BuildError(f"{src} shrank while it was copied")
                if hashing is not None:
                    hashing.result()
                if hasher:  # hashlib lets go of the GIL on large buffers
                    hashing = self._threads.submit(hasher.update, chunk)
                if self.tar:
                    self.tar.data(chunk)
                if write:
                    _write_all(fout, chunk)
                offset += len(chunk)
        finally:
            if hashing is not None:
                hashing.result()

    @staticmethod
    def _copy_range(fin, fout, size):
        """copy_file_range the whole file; False if the filesystem cannot."""
        offset = 0
        while offset < size:
            try:
                n = os.copy_file_range(fin, fout, size - offset, offset, offset)
            except OSError as e:
                if e.errno in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) \
                        and offset == 0:
                    return False
                raise
            if n == 0:
                raise BuildError("a source file shrank while it was copied")
            offset += n
        return True

    def write_file(self, dest, data, mode=0o644, owner=None, mtime_ns=None):
        """A file made from bytes (COPY <<EOF, ADD URL)."""
        dest = dest.strip("/")
        self.ensure_dir(dest.rpartition("/")[0], owner)
        path = self.host(dest)
        made = dest in self.made
        self.made.add(dest)
        if made and os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        mtime = (mtime_ns if mtime_ns is not None else self.now) // 10**9
        with open(path, "xb") as f:
            f.write(data)
        uid, gid = owner or (0, 0)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
        if self.tar:
            self.tar.header(dest, mode, uid, gid, len(data), mtime, tarfile.REGTYPE)
            self.tar.data(data)
            self.tar.pad(len(data))

    def done(self):
        """Directories' times, set last (writing into a directory changes its mtime), in
        whole seconds as the tar holds them."""
        for path, mtime in self.dir_times.items():
            t = mtime // 10**9 * 10**9
            try:
                os.utime(path, ns=(t, t), follow_symlinks=False)
            except FileNotFoundError:
                pass


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def view_tree(view, rel):
    """(relative path, host path, lstat) of rel and everything under it in a stage's
    filesystem, parents first."""
    found = view.find(rel)
    if found is None:
        return
    yield "", found[0], found[1]
    if stat.S_ISDIR(found[1].st_mode):
        yield from _view_children(view, rel.strip("/"), "")


def _view_children(view, base, sub):
    for name in view.listdir(f"{base}/{sub}".strip("/")):
        child = f"{sub}/{name}" if sub else name
        found = view.find(f"{base}/{child}".strip("/"))
        if found is None:
            continue
        yield child, found[0], found[1]
        if stat.S_ISDIR(found[1].st_mode):
            yield from _view_children(view, base, child)
