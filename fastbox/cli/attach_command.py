"""`fastbox attach`: our terminal to a running detached container, through its
monitor's attach socket (csrc/monitor/fb_monitor.c --attach): its output as it comes
(Docker's framed stream: stdout to our stdout, stderr to our stderr), our input to its
terminal (`-t`) or its stdin pipe (`-i`), the detach keys (ctrl-p,ctrl-q by default)
leave it running, and we exit with its code once it ends."""
import os
import select
import signal
import socket
import sys
from typing import Optional

import typer

from fastbox.errors import ContainerStateError, SpecError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)


def register(app, container_group):
    for group in (app, container_group):
        group.command()(attach)


def attach(container: str,
           detach_keys: Optional[str] = typer.Option(None, "--detach-keys",
                                                     help="Keys that detach (default ctrl-p,ctrl-q)"),
           no_stdin: bool = typer.Option(False, "--no-stdin", help="Do not attach stdin"),
           sig_proxy: bool = typer.Option(True, "--sig-proxy/--no-sig-proxy",
                                          help="Forward the signals we get (not with -t)")):
    """Attach our input and output to a running container."""
    from fastbox import containers
    keys = parse_detach_keys(detach_keys or DEFAULT_DETACH_KEYS)
    c = containers.get(container)
    record = c.reload().attrs
    if record["status"] != "running":
        raise ContainerStateError("you cannot attach to a stopped container, start it first")
    sock = connect(c._store.container_dir(c.id))
    tty = bool(record.get("tty"))
    if sig_proxy and not tty:
        for sig in PROXIED:
            signal.signal(sig, lambda s, _f: _forward(c, s))
    saved = _raw_terminal() if tty and not no_stdin else None
    try:
        detached = relay(sock, None if no_stdin else 0, keys)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
    if detached:
        sys.stderr.write("read escape sequence\n")
        raise typer.Exit(0)
    raise typer.Exit(c.wait() or 0)


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


def relay(sock, stdin_fd, keys):
    """Copy frames from sock to stdout/stderr and stdin_fd to sock until the monitor
    closes it (False) or the detach keys are typed (True)."""
    watch = [sock] + ([stdin_fd] if stdin_fd is not None else [])
    frames, pending = b"", b""
    while True:
        ready, _, _ = select.select(watch, [], [])
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return False
            frames = _write_frames(frames + data)
        if stdin_fd is not None and stdin_fd in ready:
            data = os.read(stdin_fd, 4096)
            if not data:
                watch.remove(stdin_fd)
                continue
            send, pending, detach = scan_for_keys(pending + data, keys)
            if send:
                sock.sendall(send)
            if detach:
                return True


def scan_for_keys(data, keys):
    """(bytes to send, bytes held back as a possible start of the keys, detached?)."""
    at = data.find(keys)
    if at >= 0:
        return data[:at], b"", True
    for n in range(min(len(keys) - 1, len(data)), 0, -1):
        if data.endswith(keys[:n]):
            return data[:-n], data[-n:], False
    return data, b"", False


def _write_frames(buf):
    """Write each whole frame (1 or 2, 3 zero bytes, big-endian length, data); return
    the rest."""
    while len(buf) >= 8:
        size = int.from_bytes(buf[4:8], "big")
        if len(buf) < 8 + size:
            break
        fd = 2 if buf[0] == 2 else 1
        data = buf[8:8 + size]
        while data:
            data = data[os.write(fd, data):]
        buf = buf[8 + size:]
    return buf


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


def _raw_terminal():
    if not os.isatty(0):
        return None
    import termios
    import tty
    saved = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSANOW)  # not TCSAFLUSH: keys typed ahead must not be lost
    return saved


def _forward(c, sig):
    try:
        c.kill(sig)
    except ContainerStateError:
        pass
