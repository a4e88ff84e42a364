"""`fastbox attach`: our terminal to a running detached container, through its
monitor's attach socket (csrc/monitor/fb_monitor.c --attach): its output as it comes
(Docker's framed stream: stdout to our stdout, stderr to our stderr), our input to its
terminal (`-t`) or its stdin pipe (`-i`), the detach keys (ctrl-p,ctrl-q by default)
leave it running, and we exit with its code once it ends."""
import signal
import sys
from typing import Optional

import typer

from fastbox.cli.attach_stream import (DEFAULT_DETACH_KEYS, Session, connect,  # noqa: F401
                                       exit_code, parse_detach_keys, raw_terminal,
                                       restore_terminal, scan_for_keys)
from fastbox.errors import ContainerStateError

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
    saved = raw_terminal() if tty and not no_stdin else None
    session = Session(sock, keys)
    try:
        detached = session.relay(None if no_stdin else 0)
    finally:
        restore_terminal(saved)
        sock.close()
    if detached:
        sys.stderr.write("read escape sequence\n")
        raise typer.Exit(0)
    raise typer.Exit(exit_code(c, session))


def _forward(c, sig):
    try:
        c.kill(sig)
    except ContainerStateError:
        pass
