"""The fork server: for the C client, every command the engine does not run in a thread
of its own (`run` and `exec` without -t) is run by a worker forked from a process that
has already imported the whole Python CLI (typer alone costs tens of milliseconds to
import). The worker becomes what `fastbox-py` would have
been: the client's stdio, working directory, environment, umask and signals, and its
exit code goes back to the client.

The server is forked from the engine before the engine starts a thread or makes anything
a container could take (a spare network namespace), so every worker starts from a
single-threaded process that owns nothing of the engine's. It exits when the engine
closes its end; workers still running finish their commands.
"""
import array
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback

from fastbox.cli import entry
# What the client forwards (csrc/client/fb_client.c), SIGINT first; the worker starts
# with Python's own dispositions for them, as a fresh `fastbox-py` would.
from fastbox.cli.run_command import FORWARDED
from fastbox.engine import protocol

# the client's connection, its stdio, its cwd, the request's payload, and the write end of
# the engine's pipe that says the worker is done (closed as the worker exits, however)
NFDS = 7
HANG_UP_GRACE = 10.0
# What typer reads once, at import (typer/core.py, typer/main.py, typer/rich_utils.py).
READ_AT_IMPORT = frozenset(("TYPER_USE_RICH", "TYPER_STANDARD_TRACEBACK",
                            "_TYPER_STANDARD_TRACEBACK", "TERMINAL_WIDTH",
                            "_TYPER_FORCE_DISABLE_TERMINAL", "GITHUB_ACTIONS", "FORCE_COLOR",
                            "PY_COLORS"))


class ForkServer:
    """The engine's end: hands clients to the server, one message each."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 0
            try:
                _serve(theirs)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self.sock = pid, ours

    def wait_ready(self):
        """Until the server has warmed up (~0.3 s of a CPU here), so that the engine is
        ready only when a first command is as fast as the next."""
        if self.sock.recv(1) != b"R":
            print("fastbox engine: the fork server died while warming up: commands other "
                  "than run will use the Python CLI", file=sys.stderr)

    def hand_off(self, conn, request, cwd, alive):
        """Gives the client to a new worker (OSError if the server is gone). The caller
        keeps and closes its own copies of conn, the request's fds, cwd and alive (the
        write end of a pipe the worker holds until it exits)."""
        payload = os.memfd_create("fastbox-request", os.MFD_CLOEXEC)
        try:
            # The environment can exceed what one socket message may carry: a memfd.
            with os.fdopen(os.dup(payload), "wb") as f:
                pickle.dump((request.args, request.environ, *_process_state(request.pid)), f)
            fds = array.array("i", [conn.fileno(), *request.fds, cwd, payload, alive])
            self.sock.sendmsg([b"W"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        finally:
            os.close(payload)

    def stop(self):
        self.sock.close()
        os.waitpid(self.pid, 0)


def _process_state(pid):
    """The client's umask, and the signals it ignores (a `nohup`, a shell's `trap ""`):
    what a Python CLI it started would have inherited."""
    umask, ignored = 0o022, 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                umask = int(line.split()[1], 8)
            elif line.startswith(b"SigIgn:"):
                ignored = int(line.split()[1], 16)
    return umask, [sig for sig in range(1, signal.NSIG) if ignored >> (sig - 1) & 1]


def same_start(environ):
    """Whether a client's environment agrees with ours on what Python and typer read
    only when they start or are imported: a worker, forked from our warm process,
    could not follow the client's values (TERMINAL_WIDTH, TYPER_USE_RICH, PYTHON*...)."""
    return _start_variables(environ) == _start_variables(os.environ)


def _start_variables(environ):
    return {k: v for k, v in environ.items() if k in READ_AT_IMPORT or k.startswith("PYTHON")}


# ---------------------------------------------------------------- the server process

def _serve(sock):
    os.closerange(3, sock.fileno())  # the engine's lock, its ready fd: not ours to hold
    os.closerange(sock.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our workers
    for sig in (signal.SIGINT, signal.SIGHUP):  # a terminal's ^C is for the engine
        signal.signal(sig, signal.SIG_IGN)
    _warm_up()
    sock.send(b"R")
    while True:
        try:
            _, ancdata, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(NFDS * 4),
                                            socket.MSG_CMSG_CLOEXEC)
        except InterruptedError:
            continue
        fds = _fds(ancdata)
        if not fds:  # the engine is gone, or stopped
            return
        if len(fds) == NFDS:
            _fork_worker(sock, fds)
        for fd in fds:
            os.close(fd)


def _fds(ancdata):
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return list(fds)


def _warm_up():
    """Import now what commands import when they run."""
    from fastbox.cli import app, run_command, exec_command, tty_session  # noqa: F401
    from fastbox.cli import image_commands, container_commands  # noqa: F401
    from fastbox import api, containers  # noqa: F401
    from fastbox.images import store, lookup, report  # noqa: F401
    from fastbox.runtime import container, monitor, logs, stats  # noqa: F401
    import json, datetime  # noqa: F401,E401
    app.prepare()
    try:
        import typer.rich_utils  # noqa: F401  (help and error boxes)
    except ImportError:  # typer's own module, which may move between its versions
        pass
    import gc
    gc.freeze()


def _fork_worker(sock, fds):
    conn, stdio, cwd, payload = fds[0], fds[1:4], fds[4], fds[5]
    try:
        pid = os.fork()
    except OSError as e:
        _refuse(conn, stdio[2], f"fastbox: engine: cannot start the command: {e}\n")
        return
    if pid == 0:
        reply = protocol.exit_reply(1)  # a Python CLI that crashed, after its traceback
        try:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            reply = protocol.exit_reply(_work(conn, stdio, cwd, payload))
        except KeyboardInterrupt:  # uncaught, it kills Python with SIGINT
            traceback.print_exc()
            reply = protocol.signal_reply(signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        finally:
            # The client exits on our answer; its hang-up must not interrupt us now.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            entry.flush_stdio()
            try:
                os.write(conn, reply)
            except OSError:  # the client is gone
                pass
            os._exit(0)


def _refuse(conn, err, message):
    try:
        os.write(err, message.encode())
        os.write(conn, protocol.exit_reply(125))
    except OSError:
        pass


# ---------------------------------------------------------------- a worker

def _work(conn, stdio, cwd, payload):
    """Become the client's `fastbox-py` and run its command; returns its exit code."""
    os.setpgid(0, 0)  # a ^C meant for an engine run in a terminal is not for us
    os.lseek(payload, 0, os.SEEK_SET)  # the engine wrote through this same file
    with os.fdopen(payload, "rb") as f:
        args, environ, umask, ignored = pickle.load(f)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)  # inheritable, as a process's stdio is
        os.close(fd)
    os.fchdir(cwd)
    os.close(cwd)
    os.umask(umask)
    os.environ.clear()
    os.environ.update(environ)
    sys.argv = ["fastbox", *args]
    _reset_signals(ignored)
    _open_stdio()
    threading.Thread(target=_relay_signals, args=(conn,), daemon=True).start()
    return entry.command(args)


def _reset_signals(ignored):
    """Python's own start: SIGINT raises KeyboardInterrupt, others take their default,
    but what the client ignores stays ignored (Python keeps an inherited SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in FORWARDED[1:]:
        signal.signal(sig, signal.SIG_DFL)
    for sig in ignored:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP, or one Python will not set
            pass


def _open_stdio():
    """New stdio objects on the client's fds: line-buffered on a terminal, as a fresh
    interpreter would make them."""
    enc, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = open(0, "r", encoding=enc, errors=errors, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding=enc,
                      errors=errors, closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding=enc, errors="backslashreplace",
                      closefd=False)


def _kill_children():
    me = os.getpid()
    for task in os.listdir(f"/proc/{me}/task"):
        try:
            with open(f"/proc/{me}/task/{task}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            continue
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _relay_signals(conn):
    """The client's signals, as if sent to us. Its hang-up (it died) takes down what it
    started through us, as a served run's container goes with its client: our children
    (a foreground container, an exec'd process) are killed, the command gets a ^C to
    unwind (a container's teardown), and we are killed if it has not within
    HANG_UP_GRACE seconds."""
    main = threading.main_thread().ident
    while True:
        try:
            message = os.read(conn, 16)
        except InterruptedError:
            continue
        except OSError:
            message = b""
        if not message:
            _kill_children()
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(HANG_UP_GRACE)
            os.kill(os.getpid(), signal.SIGKILL)
        sig = protocol.signal_of(message)
        if sig not in FORWARDED:
            continue
        if signal.getsignal(sig) == signal.SIG_DFL and sig != signal.SIGWINCH:
            os.write(conn, protocol.signal_reply(sig))  # we die of it: so must the client
        # To the main thread, which may be blocked in a system call that must be
        # interrupted for Python to run the handler.
        signal.pthread_kill(main, sig)
