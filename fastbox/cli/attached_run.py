"""`fastbox run -it` on a terminal, as Docker does it: the container runs under its
monitor, as with `run -d`, and we are its first attached client (connected before it
starts, so no output is missed). Typing the detach keys (ctrl-p,ctrl-q or
--detach-keys) just ends our attachment: the container keeps running, `fastbox attach`
gets it back, and with --rm its monitor removes it when it later exits. Otherwise we
end with its exit code, as the in-process terminal relay (tty_session) did."""
import socket

from fastbox.cli import attach_stream, tty_session


def run(image, command, opts, on_start, detach_keys=None, cidfile=None, caller=None):
    """Returns the exit code (0 once detached)."""
    from fastbox import containers
    keys = attach_stream.parse_detach_keys(detach_keys or attach_stream.DEFAULT_DETACH_KEYS)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    size = tty_session._size()
    saved = attach_stream.raw_terminal()  # before the start: keys typed meanwhile are kept
    try:
        try:
            c = containers.run(image, command, tty=size, interactive=True,
                               client_fd=theirs.fileno(), **opts)
        finally:
            theirs.close()
        if c.pid:  # 0: a --rm container already gone
            on_start(c.pid)
        if cidfile:
            from fastbox.cli.run_command import _write_cidfile
            _write_cidfile(cidfile, c.id, caller)
        session = attach_stream.Session(ours, keys)
        detached = session.relay(0)
    finally:
        attach_stream.restore_terminal(saved)
        ours.close()
    if detached:
        return 0
    code = attach_stream.exit_code(c, session)
    volumes = (c.attrs.get("spec") or {}).get("volumes")
    if opts.get("remove") and volumes:  # as `docker run --rm`: its anonymous volumes go too
        from fastbox.volumes import store
        store.remove_anonymous(volumes)
    return code

