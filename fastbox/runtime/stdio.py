"""A container's fds 0-2 as the caller asked for them: given fds, /dev/null for stdin,
inherited or captured output. Shared by run, exec and the detached and burst paths."""
import os

_null = None


def devnull():
    """One /dev/null (close-on-exec) for every container's stdin: not reopened per run."""
    global _null
    if _null is None:
        _null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _null


class Stdio:
    """The container's fds 0-2: /dev/null for stdin unless given, inherited or captured
    output. Pipe read ends stay here; the write ends are closed once the child has them."""

    def __init__(self, stdin, stdout, stderr, capture):
        self.capture = capture
        self.opened = []
        self.readers = {}
        self.fds = [self._fd(stdin, 0), self._fd(stdout, 1), self._fd(stderr, 2)]

    def _fd(self, obj, n):
        if obj is not None:
            return obj if isinstance(obj, int) else obj.fileno()
        if n == 0:
            return devnull()
        if self.capture:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.readers[n] = r
            self.opened.append(w)
            return w
        return -1

    def child_fds(self):
        return self.fds

    def __enter__(self):
        return self

    def collect(self):
        """Close our copies of the child's ends, then read captured output to EOF."""
        for fd in self.opened:
            os.close(fd)
        self.opened = []
        if not self.readers:
            return None, None
        chunks = {n: [] for n in self.readers}
        import select
        poller = select.poll()
        by_fd = {fd: n for n, fd in self.readers.items()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while by_fd:
            for fd, _ in poller.poll():
                data = os.read(fd, 65536)
                if data:
                    chunks[by_fd[fd]].append(data)
                else:
                    poller.unregister(fd)
                    del by_fd[fd]
        return (b"".join(chunks[1]) if 1 in chunks else None,
                b"".join(chunks[2]) if 2 in chunks else None)

    def __exit__(self, *exc):
        for fd in self.opened + list(self.readers.values()):
            os.close(fd)
        self.opened, self.readers = [], {}
