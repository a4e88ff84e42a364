"""The client side of a monitor's attach socket (csrc/monitor/fb_monitor.c --attach),
shared by `fastbox attach` and the foreground `run -it`: frames in (Docker's attach
stream: stdout, stderr; with a terminal, a first frame carrying its master, for the
window size; last, the exit code), our keys out, and the detach keys watched for.
No typer here: `run` imports it."""
import os
import select
import socket

from fastbox.errors import ContainerStateError, SpecError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
STDERR, EXIT = 2, 4  # stream bytes of a frame (any other is stdout)
MAX_OUTGOING = 1 << 20  # input held for a container that is not reading it


def connect(container_dir):
    """The monitor's attach socket, reached through an fd on the container's directory
    (a unix socket path is limited to 108 bytes; the directory's may be longer)."""
    dfd = os.open(container_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(f"/proc/self/fd/{dfd}/attach.sock")
    except OSError:
        sock.close()
        raise ContainerStateError("cannot attach: the container's monitor has no attach "
                                  "socket (started by an older fastbox, or exiting)") from None
    finally:
        os.close(dfd)
    return sock


class Session:
    """One attachment: relay() copies frames to our stdout/stderr and our input to the
    container until the monitor closes the socket or the detach keys are typed. The
    container's terminal follows our window size while it runs. exit_code: from the
    monitor's last frame (None if it sent none)."""

    def __init__(self, sock, keys):
        self.sock, self.keys = sock, keys
        self.master = None
        self.exit_code = None
        self._old_winch = None

    def relay(self, stdin_fd):
        """True if detached by the keys (or our terminal is gone: nobody is left to
        show the rest to), False once the container's output ended. Our input is sent
        as the socket takes it, never waited for: a container that does not read its
        input must not stop its output, nor the detach keys, from reaching us."""
        frames, pending, outgoing = b"", b"", b""
        reading = stdin_fd is not None
        try:
            while True:
                watch = [self.sock] + ([stdin_fd] if reading and len(outgoing) < MAX_OUTGOING
                                       else [])
                ready, writable, _ = select.select(watch, [self.sock] if outgoing else [], [])
                if writable:
                    try:
                        outgoing = outgoing[self.sock.send(outgoing, socket.MSG_DONTWAIT):]
                    except BlockingIOError:
                        pass
                    except OSError:  # the monitor is gone: its EOF ends us below
                        outgoing = b""
                if self.sock in ready:
                    data = self._receive()
                    if not data:
                        return False
                    try:
                        frames = self._write_frames(frames + data)
                    except OSError:  # EIO, EPIPE: our terminal or reader is gone
                        return True
                if reading and stdin_fd in ready:
                    try:
                        data = os.read(stdin_fd, 4096)
                    except OSError:  # EIO: our terminal hung up
                        data = b""
                    if not data:
                        reading = False
                        continue
                    send, pending, detach = scan_for_keys(pending + data, self.keys)
                    outgoing += send
                    if detach:  # what came before the keys goes, as far as it can now
                        self._send_now(outgoing)
                        return True
        finally:
            self._stop_resizing()

    def _send_now(self, data):
        try:
            while data:
                data = data[self.sock.send(data, socket.MSG_DONTWAIT):]
        except OSError:  # full (a container not reading) or gone
            pass

    def _receive(self):
        data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
        for level, kind, fds in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for i in range(0, len(fds) - len(fds) % 4, 4):
                    self._take_master(int.from_bytes(fds[i:i + 4], "little"))
        return data

    def _take_master(self, fd):
        """The container's terminal: it gets our window size now and at each SIGWINCH."""
        if self.master is not None or not os.isatty(1):
            os.close(fd)
            return
        import signal
        self.master = fd
        self._old_winch = signal.signal(signal.SIGWINCH, lambda *_: self._copy_size())
        self._copy_size()

    def _copy_size(self):
        import fcntl
        import termios
        try:
            size = fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:  # our terminal or theirs is gone
            pass

    def _stop_resizing(self):
        if self.master is None:
            return
        import signal
        signal.signal(signal.SIGWINCH, self._old_winch or signal.SIG_DFL)
        os.close(self.master)
        self.master = None

    def _write_frames(self, buf):
        """Write each whole frame (stream byte, 3 zero bytes, big-endian length, data);
        return the rest."""
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            data = buf[8:8 + size]
            if buf[0] == EXIT:
                self.exit_code = int(data)
                data = b""
            fd = 2 if buf[0] == STDERR else 1
            while data:
                data = data[os.write(fd, data):]
            buf = buf[8 + size:]
        return buf


def scan_for_keys(data, keys):
    """(bytes to send, bytes held back as a possible start of the keys, detached?)."""
    at = data.find(keys)
    if at >= 0:
        return data[:at], b"", True
    for n in range(min(len(keys) - 1, len(data)), 0, -1):
        if data.endswith(keys[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def parse_detach_keys(text):
    """Docker's --detach-keys: 'ctrl-p,ctrl-q', 'ctrl-a,x' -> the bytes they send."""
    out = bytearray()
    for item in text.split(","):
        item = item.strip()
        if item.lower().startswith("ctrl-") and len(item) == 6:
            ch = item[5].upper()
            if not ("@" <= ch <= "_"):
                raise SpecError(f"invalid --detach-keys {text!r}: {item!r} is not a control key")
            out.append(ord(ch) - 64)
        elif len(item) == 1:
            out.append(ord(item))
        else:
            raise SpecError(f"invalid --detach-keys {text!r}: expected keys such as "
                            "ctrl-p,ctrl-q or ctrl-a,x")
    if not out:
        raise SpecError(f"invalid --detach-keys {text!r}")
    return bytes(out)


def raw_terminal():
    """Our terminal in raw mode (keys go to the container as typed); returns what to
    restore, or None off a terminal."""
    if not os.isatty(0):
        return None
    import termios
    import tty
    saved = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)  # not TCSAFLUSH: keys typed ahead must not be lost
    return saved


def restore_terminal(saved):
    if saved is not None:
        import termios
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def exit_code(c, session):
    """The code the attachment ends with, once the monitor has recorded the exit (or
    removed a --rm container); with a restart policy, at once: the monitor stays to
    restart it."""
    code = session.exit_code
    if code is not None and (c.attrs.get("spec") or {}).get("restart", "no") != "no":
        return code
    recorded = c.wait()
    return recorded or 0 if code is None else code
