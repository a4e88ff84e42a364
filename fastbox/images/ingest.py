"""Work in progress for the image store: downloads and unpacks, under <store>/ingest/.

A pull downloads and unpacks for seconds or minutes, so it cannot hold the store's writer lock
the whole time (every `tag`, `rmi` or other pull would wait), and its temporaries cannot be
".tmp-" names in blobs/ or layers/ (any writer's sweep would delete them mid-download). They
live here instead, each owned through an flock, and only the final renames happen under the
writer lock (ImageStore.commit_image):

    ingest/sha256-<hex>    a blob being fetched. Locked by its fetcher from the first byte until
                           it is committed, so its content never changes under a verified
                           digest; left behind by a killed pull, the next pull resumes it (Range).
    ingest/<id>.lock       a session: one pull or load in one process, flock'ed while it lives.
    ingest/<id>.<n>        the session's private files and unpacked layer dirs.

A session whose lock can be taken belongs to a process that died: sweep() removes it with its
files. Partial blobs stay for resumption; `image prune` removes those nobody holds.
"""
import errno
import fcntl
import itertools
import os
import shutil

from fastbox.errors import DigestMismatch
from fastbox.images.files import disk_usage, listdir, unlink
from fastbox.state import process

_BLOB_PREFIX = "sha256-"


class Session:
    """One process's claim on scratch space in ingest/; everything it made goes on exit."""

    def __init__(self, ingest_dir):
        self.dir = ingest_dir
        self.id = os.urandom(6).hex()
        self.fd = -1
        self._names = itertools.count(1)  # next() is atomic: worker threads share a session

    def __enter__(self):
        os.makedirs(self.dir, 0o700, exist_ok=True)
        lock = os.path.join(self.dir, self.id + ".lock")
        try:
            # O_TMPFILE + link: the lock file is never visible unlocked, so no sweep can take it.
            self.fd = os.open(self.dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:  # a dir fd makes os.link use linkat(AT_SYMLINK_FOLLOW), needed for /proc/self/fd
                os.link(f"/proc/self/fd/{self.fd}", os.path.basename(lock), dst_dir_fd=dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            if self.fd >= 0:
                os.close(self.fd)
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
            self.fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def path(self):
        """A fresh name for a private file or directory of this session."""
        return os.path.join(self.dir, f"{self.id}.{next(self._names)}")

    def new_dir(self):
        path = self.path()
        os.mkdir(path, 0o755)
        return path

    def __exit__(self, *exc):
        for name in listdir(self.dir):
            if name.startswith(self.id + ".") and not name.endswith(".lock"):
                _remove(os.path.join(self.dir, name))
        unlink(os.path.join(self.dir, self.id + ".lock"))
        os.close(self.fd)
        self.fd = -1


class BlobFile:
    """A blob downloaded into ingest/, hashed as it is written and checked before use.

    open() takes the shared, resumable ingest/sha256-<hex> if no other process holds it, else
    a private file of `session` (two pulls of one blob then both download it: waiting instead
    could deadlock two pulls that each hold a blob the other needs)."""

    def __init__(self, ingest_dir, session, digest, size):
        import hashlib
        self.digest, self.size = digest, size
        self.shared_path = os.path.join(ingest_dir, _BLOB_PREFIX + digest[7:])
        self.session = session
        self.path, self.fd, self.written = None, -1, 0
        self._hash = hashlib.sha256()

    def open(self):
        """Lock a file for the blob and hash what a killed pull left in it; return that
        offset, the first byte still to fetch."""
        self.fd, self.path = _lock_shared(self.shared_path), self.shared_path
        if self.fd < 0:
            self.path = self.session.path()
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        while chunk := os.read(self.fd, 1 << 20):
            self._hash.update(chunk)
            self.written += len(chunk)
        if self.written > self.size:
            self.restart()
        return self.written

    def restart(self):
        """Start again from byte 0 (a server that ignored Range, or a corrupt partial)."""
        import hashlib
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self._hash, self.written = hashlib.sha256(), 0

    def write(self, data):
        if self.written + len(data) > self.size:
            raise DigestMismatch(f"blob {self.digest}: the registry sent more than the "
                                 f"{self.size} bytes its descriptor gives")
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.written += len(data)

    def verify(self):
        """DigestMismatch (and the content dropped) unless size and sha256 are the expected
        ones; then the data is synced, ready to be renamed into blobs/."""
        got = "sha256:" + self._hash.hexdigest()
        if self.written != self.size or got != self.digest:
            self.restart()
            raise DigestMismatch(f"blob {self.digest}: expected {self.size} bytes with that "
                                 f"digest, got {self.written} bytes with digest {got}")
        os.fsync(self.fd)

    def discard(self):
        """Drop the content (it belongs to a bad image): unlink our file and release it."""
        if self.fd >= 0:
            try:
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.close()

    def close(self):
        """Release the lock; a verified shared file that was not committed stays resumable."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _lock_shared(path):
    """An fd of `path`, exclusively locked and still linked there; -1 if another process
    holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return -1
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # pruned or committed between open and flock: try the new name


def sweep(ingest_dir, partial_blobs=False):
    """Remove what dead processes left: sessions whose lock is free, with their files, and
    (for `image prune`) partial blobs nobody holds. Returns the bytes freed."""
    names = listdir(ingest_dir)
    live = {n[:-5] for n in names if n.endswith(".lock") and process.lock_held(os.path.join(ingest_dir, n))}
    freed = 0
    for name in names:
        path = os.path.join(ingest_dir, name)
        if name.startswith(_BLOB_PREFIX):
            if partial_blobs:
                freed += _unlink_if_free(path)
        elif name.endswith(".lock"):
            if name[:-5] not in live:
                unlink(path)
        elif name.partition(".")[0] not in live:
            freed += disk_usage(path)
            _remove(path)
    return freed


def _unlink_if_free(path):
    """Unlink a partial blob nobody is fetching (holding its lock meanwhile); bytes freed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(fd)
        if os.stat(path).st_ino != st.st_ino:
            return 0  # committed or replaced since we opened it: not ours to judge
        os.unlink(path)
        return st.st_blocks * 512
    except (BlockingIOError, FileNotFoundError):
        return 0
    finally:
        os.close(fd)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        unlink(path)


