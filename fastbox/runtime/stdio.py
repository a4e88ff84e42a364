"""A container's fds 0-2 as the caller asked for them: given fds, /dev/null for stdin,
inherited or captured output. Shared by run, exec and the detached and burst paths.

A terminal is never handed to a container that has no terminal of its own (no -t):
with the caller's terminal as its stdout it could read the user's keystrokes from it,
or change its settings. As Docker does, it gets a pipe instead, and we copy between the
pipe and the terminal while it runs."""
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
    output, pipes in front of terminals. Pipe ends of ours stay here; the child's ends
    are closed once the child has them."""

    def __init__(self, stdin, stdout, stderr, capture, tty=False):
        self.capture = capture
        self.relay_terminals = not tty  # with -t the container's own terminal replaces 0-2
        self.opened = []
        self.readers = {}   # n -> read end of a capture pipe
        self.relays = {}    # read end of an output pipe -> the terminal it goes to
        self.feed = None    # (the terminal, write end of the stdin pipe)
        self.fds = [self._fd(stdin, 0), self._fd(stdout, 1), self._fd(stderr, 2)]

    def _fd(self, obj, n):
        if obj is not None:
            fd = obj if isinstance(obj, int) else obj.fileno()
        elif n == 0:
            return devnull()
        elif self.capture:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.readers[n] = r
            self.opened.append(w)
            return w
        else:
            fd = -1
        if self.relay_terminals and os.isatty(n if fd < 0 else fd):
            return self._relay(n if fd < 0 else fd, n)
        return fd

    def _relay(self, terminal, n):
        r, w = os.pipe2(os.O_CLOEXEC)
        if n == 0:
            os.set_blocking(w, False)  # a container not reading must not stall its output
            self.feed = (terminal, w)
            self.opened.append(r)
            return r
        self.relays[r] = terminal
        self.opened.append(w)
        return w

    def child_fds(self):
        return self.fds

    def __enter__(self):
        return self

    def collect(self, pidfd=-1):
        """Close our copies of the child's ends, then read captured output and copy
        relayed output to EOF (or, once pidfd says the process exited, what is left).
        Returns (stdout, stderr) as captured, else None."""
        for fd in self.opened:
            os.close(fd)
        self.opened = []
        if not self.readers and not self.relays:
            self._close_feed()
            return None, None
        chunks = {n: [] for n in self.readers}
        by_fd = {fd: n for n, fd in self.readers.items()}
        by_fd.update(self.relays)
        _Pump(self, chunks, by_fd, pidfd).run()
        self._close_feed()
        return (b"".join(chunks[1]) if 1 in chunks else None,
                b"".join(chunks[2]) if 2 in chunks else None)

    def _close_feed(self):
        if self.feed:
            os.close(self.feed[1])
            self.feed = None

    def __exit__(self, *exc):
        self._close_feed()
        for fd in self.opened + list(self.readers.values()) + list(self.relays):
            os.close(fd)
        self.opened, self.readers, self.relays = [], {}, {}


class _Pump:
    """One poll loop over the capture pipes, the relayed output pipes and the stdin feed."""

    def __init__(self, io, chunks, by_fd, pidfd):
        import select
        self.select, self.io, self.chunks, self.by_fd = select, io, chunks, by_fd
        self.pidfd = pidfd if io.relays or io.feed else -1
        self.pending = b""  # read from the terminal, not yet taken by the container
        self.poller = select.poll()
        for fd in by_fd:
            self.poller.register(fd, select.POLLIN)
        if io.feed:
            self.poller.register(io.feed[0], select.POLLIN)
        if self.pidfd >= 0:
            self.poller.register(self.pidfd, select.POLLIN)

    def run(self):
        while self.by_fd:
            for fd, _ in self.poller.poll():
                if fd == self.pidfd:
                    self.drain()
                    return
                if self.io.feed and fd == self.io.feed[0]:
                    self.take_input()
                elif self.io.feed and fd == self.io.feed[1]:
                    self.give_input()
                elif fd in self.by_fd:
                    self.output(fd, os.read(fd, 65536))

    def output(self, fd, data):
        if not data:
            self.poller.unregister(fd)
            del self.by_fd[fd]
        elif fd in self.io.relays:
            _write_all(self.io.relays[fd], data)
        else:
            self.chunks[self.by_fd[fd]].append(data)

    def drain(self):
        """The process exited: what its pipes still hold, without waiting for processes
        it left behind holding them."""
        for fd in list(self.by_fd):
            os.set_blocking(fd, False)
            try:
                while fd in self.by_fd:
                    self.output(fd, os.read(fd, 65536))
            except BlockingIOError:
                pass

    def take_input(self):
        terminal, pipe = self.io.feed
        try:
            data = os.read(terminal, 65536)
        except OSError:
            data = b""
        if not data:  # EOF (^D at line start): the container's stdin ends too
            self.poller.unregister(terminal)
            try:
                self.poller.unregister(pipe)
            except KeyError:
                pass
            self.io._close_feed()
            return
        self.pending += data
        self.give_input()

    def give_input(self):
        terminal, pipe = self.io.feed
        try:
            self.pending = self.pending[os.write(pipe, self.pending):]
        except BlockingIOError:
            pass
        except OSError:  # the container closed its stdin
            self.pending = b""
        if self.pending:  # wait until the container reads; stop reading the terminal
            self.poller.modify(terminal, 0)
            self.poller.register(pipe, self.select.POLLOUT)
        else:
            self.poller.modify(terminal, self.select.POLLIN)
            try:
                self.poller.unregister(pipe)
            except KeyError:
                pass


def _write_all(fd, data):
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the terminal went away: the output has nowhere to go
        pass
