"""A foreground container or exec on a pseudo-terminal (`run -t`, `exec -t`): the
program gets the pty's slave as its controlling terminal; we relay between our own
terminal (in raw mode) and the master, and pass window size changes on."""
import os
import select
import signal
import sys


def run(image, command, interactive, opts):
    from fastbox import api
    master, slave = os.openpty()
    try:
        # The terminal is the program's stdin too, as with Docker; without -i nothing
        # is typed into it.
        with _Relay(master, interactive) as relay:
            result = api.run(image, command, stdin=slave, stdout=slave, stderr=slave, tty=True,
                             on_start=lambda pid: relay.started(slave), **opts)
        return result.exit_code
    finally:
        for fd in (master, slave):
            _close(fd)


def exec_(c, command, opts):
    master, slave = os.openpty()
    try:
        with _Relay(master, opts["interactive"]) as relay:
            result = c.exec_run(command, env=opts["env"], workdir=opts["workdir"],
                                user=opts["user"], tty=True, capture_output=False,
                                stdin=slave, stdout=slave,
                                stderr=slave, on_start=lambda pid: relay.started(slave))
        return result.exit_code
    finally:
        for fd in (master, slave):
            _close(fd)


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class _Relay:
    """Copies our stdin to the master and the master to our stdout in a thread, from the
    moment the program starts until the master reports EOF/EIO (every slave closed)."""

    def __init__(self, master, interactive):
        self.master, self.interactive = master, interactive
        self.saved_tty = None
        self.thread = None

    def __enter__(self):
        if self.interactive and os.isatty(0):
            import termios
            import tty
            self.saved_tty = termios.tcgetattr(0)
            tty.setraw(0)
        self._copy_winsize()
        if os.isatty(0):
            signal.signal(signal.SIGWINCH, lambda *_: self._copy_winsize())
        return self

    def started(self, slave):
        import threading
        os.close(slave)  # only the program holds the slave now: its exit gives us EIO
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _copy_winsize(self):
        if not os.isatty(0):
            return
        import fcntl
        import termios
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)

    def _pump(self):
        watch = [self.master] + ([0] if self.interactive else [])
        while True:
            ready, _, _ = select.select(watch, [], [])
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(self.master, data)
                else:
                    watch.remove(0)

    def __exit__(self, *exc):
        if self.thread:
            self.thread.join(timeout=2)
        if self.saved_tty is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
        sys.stdout.flush()
