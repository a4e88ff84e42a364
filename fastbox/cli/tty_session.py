"""A foreground container or exec on a terminal (`run -t`, `exec -t`): the core makes
the terminal in the container's own devpts and hands us its master; we relay between
our terminal (raw mode when -i) and the master, and pass window size changes on."""
import os
import select
import signal
import sys


def run(image, command, interactive, opts, on_start=None):
    from fastbox import api
    with _Relay(interactive) as relay:
        result = api.run(image, command, stdout=1, stderr=2, tty=_size(), on_start=on_start,
                         on_terminal=relay.start, **opts)
    return result.exit_code


def exec_(c, command, opts):
    with _Relay(opts["interactive"]) as relay:
        result = c.exec_run(command, env=opts["env"], workdir=opts["workdir"],
                            user=opts["user"], privileged=opts.get("privileged", False),
                            tty=_size(), capture_output=False,
                            on_terminal=relay.start)
    return result.exit_code


def _write_all(fd, data):
    """os.write may take only part of data (a full terminal queue): the rest must follow,
    not be dropped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _size():
    """Our terminal's (rows, columns), for the container's terminal to start with (a
    program may ask at once); True (the kernel's 0x0) if we have none."""
    if not os.isatty(0):
        return True
    import fcntl
    import struct
    import termios
    rows, cols = struct.unpack("HHHH", fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))[:2]
    return (rows, cols) if rows and cols else True


class _Relay:
    """Copies our stdin to the master (with -i) and the master to our stdout, in a
    thread, until the program's side of the terminal is closed."""

    def __init__(self, interactive):
        self.interactive = interactive
        self.master = None
        self.saved_tty = None
        self.thread = None

    def __enter__(self):
        if self.interactive and os.isatty(0):
            import termios
            import tty
            self.saved_tty = termios.tcgetattr(0)
            # TCSANOW, not setraw's default TCSAFLUSH: that discards what the user typed
            # ahead (while the container started), as neither a shell nor Docker does.
            tty.setraw(0, termios.TCSANOW)
        return self

    def start(self, master):
        import threading
        self.master = os.dup(master)  # ours: the caller closes its copy when run() ends
        if os.isatty(0):  # first: a resize after the copy below must not go unseen
            signal.signal(signal.SIGWINCH, lambda *_: self._copy_winsize())
        self._copy_winsize()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        # Signals are the main thread's to take: Python runs their handlers (which
        # forward them to the container) only there, and one the kernel hands to this
        # thread leaves the main thread asleep in its wait, the signal unforwarded (CI
        # once saw `run -t` ignore a SIGTERM). Blocked before the thread exists, so it
        # is born with them blocked: not one instant where it could take one.
        every = set(signal.Signals) - {signal.SIGKILL, signal.SIGSTOP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, every)
        try:
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _copy_winsize(self):
        if self.master is None or not os.isatty(0):
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
                except OSError:  # EIO: every slave closed, the program is gone
                    data = b""
                if not data:
                    return
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(self.master, data)
                else:
                    watch.remove(0)

    def __exit__(self, *exc):
        if self.thread:
            self.thread.join(timeout=2)
        if self.master is not None:
            os.close(self.master)
        if self.saved_tty is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
        sys.stdout.flush()
