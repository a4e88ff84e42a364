"""The engine: a long-lived process that runs commands for the C client, so that a
command from the shell costs a small C program and warm Python instead of a Python start
(~15 ms on a small VM, and tens more to import typer). `fastbox run` and `fastbox exec`
(without -t) run in a thread of ours: like dockerd, we run the container (or the exec'd
process) as our child. Any other command runs in a worker forked from a warm fork server
(forkserver.py), which costs a few milliseconds more. We serve only callers
that could have run the command themselves, in the same way: root, with its
capabilities, in its namespaces and root directory, with the same FASTBOX_* settings.
Anyone else is told to fall back to the Python CLI. Whose uid or gid is not ours
(SO_PEERCRED) is told so the moment it connects, before we read a byte of it: its
request, and the fds it carries, are dropped unread.

One thread polls the socket (new clients, their signals, their hang-ups); each run or
exec runs in its own thread. If a client dies, its container (or process) is killed.
"""
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
import traceback

from fastbox import config
from fastbox.cli import exec_command, run_command
from fastbox.engine import forkserver, protocol
from fastbox.errors import FastboxError, EngineError
from fastbox.runtime import spare, stdio
from fastbox.state import engine_process, owners

# The namespaces a container's are made in or see through (new uts and ipc ones start
# from nothing the caller set).
NAMESPACES = ("mnt", "net", "pid", "user", "cgroup")
RLIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))
STOP_GRACE = 10.0  # seconds a container gets between SIGTERM and SIGKILL when we stop


class Client:
    """One connection: its request, then its container's pid, signals and hang-up. The
    poll thread owns the connection; it is closed once both the client has hung up and
    the request has been answered, so a late reply never goes to a reused fd."""

    def __init__(self, conn):
        self.conn = conn
        self.request = None
        self.lock = threading.Lock()
        self.pidfd = None
        self.pending = []
        self.answered = self.hung_up = False
        self.replied = False  # answered early (a detached start): answer() sends nothing
        self.refused = False  # not ours to serve: whatever it sends is dropped unread

    def started(self, pid):
        """api.run's on_start: the container's program runs; deliver what waited."""
        with self.lock:
            self.pidfd = os.pidfd_open(pid)
            for sig in self.pending:
                self._send(sig)
            self.pending = []

    def signal(self, sig):
        with self.lock:
            if self.answered:
                return
            if self.pidfd is None:
                self.pending.append(sig)
            else:
                self._send(sig)

    def _send(self, sig):
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:  # exited, not yet reaped
            pass

    def answer(self, reply):
        with self.lock:
            self.answered = True
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
            self._reply(reply)
            self._close_if_done()

    def answer_early(self, reply):
        """A detached start has printed its id: the client may exit now, while we finish
        the record. Its fds are closed here (a shell's $(...) reads to their end)."""
        with self.lock:
            self._reply(reply)
            self.replied = True

    def _reply(self, reply):
        """Under the lock: the request's fds closed, the reply sent unless the client has
        hung up or had its answer already."""
        if self.request is not None:
            self.request.close()
        if not self.hung_up and not self.replied:
            try:
                self.conn.send(reply)
            except OSError:
                pass

    def hang_up(self):
        """The client closed its end (exited, or was killed): kill a running container."""
        self.signal(signal.SIGKILL)
        with self.lock:
            self.hung_up = True
            self._close_if_done()

    def _close_if_done(self):
        if self.answered and self.hung_up:
            self.conn.close()


class Context:
    """What must match between a client and the engine for a run to be the same as the
    client running it itself: a container starts from its starter's namespaces, root,
    capabilities, seccomp filters, resource limits (a shell's `ulimit -n`), nice value,
    scheduling policy, CPU affinity and oom_score_adj."""

    STATUS = (b"CapEff", b"CapBnd", b"NoNewPrivs", b"Seccomp")

    def __init__(self, pid):
        proc = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            namespaces = tuple(os.stat(f"ns/{ns}", dir_fd=proc).st_ino for ns in NAMESPACES)
            root = os.stat("root", dir_fd=proc)
            status, oom = _read("status", proc), _read("oom_score_adj", proc)
        finally:
            os.close(proc)
        self.facts = (namespaces, (root.st_dev, root.st_ino), oom,
                      [line for line in status.split(b"\n") if line.startswith(self.STATUS)],
                      tuple(resource.prlimit(pid, r) for r in RLIMITS),
                      os.getpriority(os.PRIO_PROCESS, pid), os.sched_getscheduler(pid),
                      os.sched_getaffinity(pid))

    def __eq__(self, other):
        return self.facts == other.facts


def _read(name, dir_fd):
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)


def _thread_work(args):
    """What a thread of ours serves: `run` and `exec` without a terminal (one needs its
    terminal relayed by a process of its own), as parsed (or the FastboxError parsing
    raised, which the thread reports as the CLI would). None: a worker runs it."""
    if args[0] not in ("run", "exec"):
        from fastbox.engine import listing
        return listing.parse(args)
    try:
        parsed = _parse(args)
    except FastboxError as e:
        return e
    return None if (parsed.tty if args[0] == "run" else parsed[0]["tty"]) else parsed


def _parse(args):
    """A run's Request, or an exec's (options, container, command)."""
    if args[0] == "run":
        return run_command.Request(args[1:])
    return exec_command.parse(args[1:])


def _cwd_of(pid):
    return os.open(f"/proc/{pid}/cwd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fastbox_settings(environ):
    return {k: v for k, v in environ.items() if k.startswith("FASTBOX_")}


class Server:
    def __init__(self, forks, idle=0.0):
        self.context = Context(os.getpid())
        self.settings = fastbox_settings(os.environ)
        self.forks = forks
        self.clients = {}  # fd -> Client, touched only by the poll thread
        # The read ends of pipes whose write ends the workers hold: end of file says a
        # worker has exited (answered, or died). Watched for the idle exit only.
        self.handed = set()
        self.idle = idle  # seconds with nothing to serve before we exit; 0: never
        self.last_busy = time.monotonic()

    # ------------------------------------------------------------ one request

    def serve(self, client, parsed):
        """The request's thread: sweep what dead owners left (as every command does
        first), run it, answer with the exit code."""
        try:
            owners.begin()
            code = self.run(client.request, parsed, client)
        except Exception:
            traceback.print_exc()
            if client.request.fds:  # (closed once answered early)
                run_command.write(client.request.fds[2],
                                  f"fastbox: engine error: {sys.exc_info()[1]}\n")
            code = 125
        client.answer(protocol.FALLBACK if code is None else protocol.exit_reply(code))

    def run(self, req, parsed, client):
        """The client's `fastbox run` or `exec` (parsed by _thread_work), as the Python
        CLI would do it; None if the client has gone."""
        if isinstance(parsed, FastboxError):
            return run_command.failed(parsed, req.fds[2])
        from fastbox.engine import listing
        if isinstance(parsed, listing.Listing):
            return listing.serve(parsed, req.fds)
        try:  # its own directory, even deleted (then nothing in it can be read)
            cwd = _cwd_of(req.pid)
        except OSError:  # the client is gone
            return None
        caller = run_command.Caller(req.fds, req.environ, cwd, client.started)

        def detached(code):  # `run -d` has printed its id: the client may go
            caller.fds = (-1, -1, -1)
            client.answer_early(protocol.exit_reply(code))
        caller.on_detached = detached
        try:
            if req.args[0] == "run":
                return run_command.execute(parsed, caller)
            return exec_command.execute(*parsed, caller)
        finally:
            os.close(cwd)

    def same_caller(self, req):
        if req.uid != os.geteuid() or fastbox_settings(req.environ) != self.settings:
            return False
        try:
            return Context(req.pid) == self.context
        except OSError:  # the client is gone
            return False

    # ------------------------------------------------------------ the poll thread

    def loop(self, listener, wakeup):
        """Accepts clients and reads what they send until a signal arrives on wakeup, or
        until we have been idle for self.idle seconds."""
        poller = select.epoll()
        poller.register(listener.fileno(), select.EPOLLIN)
        poller.register(wakeup, select.EPOLLIN)
        with poller:
            while True:
                events = poller.poll(self._poll_timeout())
                if not events and self._idle_for() >= self.idle > 0:
                    return
                for fd, _ in events:
                    if fd == wakeup:
                        return
                    if fd == listener.fileno():
                        self.accept(listener, poller)
                    elif fd in self.handed:
                        poller.unregister(fd)
                        self.handed.discard(fd)
                        os.close(fd)
                    else:
                        self.readable(fd, poller)

    def busy(self):
        """Whether anything is being served: a client of ours, a request thread (a
        container in the foreground), or a worker's command."""
        return bool(self.clients or self.handed or _request_threads())

    def _idle_for(self):
        now = time.monotonic()
        if self.busy():
            self.last_busy = now
        return now - self.last_busy

    def _poll_timeout(self):
        """Seconds until we might be idle long enough (None: wait for an event). While
        busy, look again every second: a request thread ends without an event of ours."""
        if self.idle <= 0:
            return None
        return max(0.05, min(1.0, self.idle - self._idle_for()))

    def accept(self, listener, poller):
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of fds, say: that client waits or goes, not us
                print(f"fastbox engine: accept: {e}", file=sys.stderr)
                return
            self.clients[conn.fileno()] = _admit(conn)
            poller.register(conn.fileno(), select.EPOLLIN)

    def readable(self, fd, poller):
        """Handles one message: the request, a signal to forward, or the hang-up."""
        client = self.clients[fd]
        if client.refused:
            if not protocol.discard(client.conn):
                self.drop(fd, poller)
                client.hang_up()
            return
        if client.request is None:
            try:
                client.request = protocol.receive(client.conn)
            except (protocol.ProtocolError, OSError):
                self.drop(fd, poller)
                client.conn.close()
                return
            self.route(client, fd, poller)
            return
        try:
            message = client.conn.recv(16)
        except OSError:
            message = b""
        if not message:
            self.drop(fd, poller)
            client.hang_up()
            return
        sig = protocol.signal_of(message)
        if sig is not None and 0 < sig < signal.NSIG:
            client.signal(sig)

    def route(self, client, fd, poller):
        """`run` and `exec` without -t run in a thread of ours; any other command in a
        worker forked for it; a caller unlike us runs the Python CLI itself."""
        req = client.request
        if not self.same_caller(req):
            client.answer(protocol.FALLBACK)
            return
        work = _thread_work(req.args)
        if work is not None:
            threading.Thread(target=self.serve, args=(client, work), daemon=True).start()
        elif forkserver.same_start(req.environ):
            self.hand_off(client, fd, poller)
        else:
            client.answer(protocol.FALLBACK)

    def hand_off(self, client, fd, poller):
        """The worker gets the connection: we forget it, and close our copies."""
        try:
            cwd = _cwd_of(client.request.pid)
        except OSError:  # the client is gone
            client.answer(protocol.FALLBACK)
            return
        alive_r, alive_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.forks.hand_off(client.conn, client.request, cwd, alive_w)
        except OSError as e:
            os.close(alive_r)
            print(f"fastbox engine: fork server: {e}", file=sys.stderr)
            client.answer(protocol.FALLBACK)
            return
        finally:
            os.close(cwd)
            os.close(alive_w)
        self.drop(fd, poller)
        client.request.close()
        client.conn.close()
        self.handed.add(alive_r)
        poller.register(alive_r, select.EPOLLIN)

    def drop(self, fd, poller):
        """Forget a connection, before it is closed (closing would reuse the fd)."""
        poller.unregister(fd)
        del self.clients[fd]

    def decline_waiting(self, listener):
        """Clients not yet served, queued or without a request read, are told to run the
        Python CLI (nothing was done for them) rather than reset."""
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            self.clients[conn.fileno()] = _admit(conn)
        for client in self.clients.values():
            if client.request is None and not client.refused:
                protocol.discard(client.conn)
                client.answer(protocol.FALLBACK)

    def stop_containers(self):
        """Like `docker stop` for each running container: SIGTERM, then SIGKILL."""
        for client in self.clients.values():
            client.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in _request_threads():
            worker.join(max(0.0, deadline - time.monotonic()))
        for client in self.clients.values():
            client.signal(signal.SIGKILL)
        for worker in _request_threads():
            worker.join()
        for client in self.clients.values():
            client.hang_up()


def serve_forever(ready_fd=-1, auto=False):
    """Runs the engine in this process until SIGTERM or SIGINT. ready_fd, if given, gets
    one byte once the socket accepts clients, and is closed. auto: started by the C
    client for itself (csrc/client/fb_client.c): exit quietly if another engine already
    runs (two first commands at once), and once idle for config.engine_idle()."""
    run = config.run_dir()
    config.private_dir(run)
    try:
        lock = _lock(os.path.join(run, "engine.lock"))
    except EngineError:
        if auto:
            return 0
        raise
    idle = config.engine_idle() if auto else 0.0
    owners.begin()  # what a killed engine (or anyone) left, before we serve
    forks = forkserver.ForkServer()  # first: before any thread or spare namespace
    _warm_up()
    forks.wait_ready()
    server = Server(forks, idle)
    path = engine_process.socket_path()
    wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)  # wakes the poll through wakeup_w
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose; containers reset it
    listener = _listen(path)
    pidfile = _write_pidfile(os.path.join(run, "engine.pid"))
    try:
        if ready_fd >= 0:
            try:
                os.write(ready_fd, b"1")
            except OSError:  # whoever started us is gone; we serve all the same
                pass
            os.close(ready_fd)
        server.loop(listener, wakeup_r)
    finally:
        os.unlink(path)  # no new client from here on; the lock is still ours
        server.decline_waiting(listener)
        listener.close()
        server.stop_containers()
        for fd in server.handed:
            os.close(fd)
        forks.stop()
        os.unlink(pidfile)
        os.close(lock)
    return 0


def _admit(conn):
    """A Client for a new connection. One whose uid or gid differs from ours (we serve
    root only, or whoever runs us) is answered "run it yourself" at once, and is left
    registered only so that what it sends is dropped unread: closing a socket with unread
    data resets it, and the client would see the reset before our answer."""
    client = Client(conn)
    try:
        _, uid, gid = protocol.peer(conn)
    except OSError:
        uid = gid = -1
    if uid != os.geteuid() or gid != os.getegid():
        client.refused = True
        client.answer(protocol.FALLBACK)
    return client


def _lock(path):
    import fcntl
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EngineError(f"an engine is already running for {config.run_dir()}") from None
    return fd


def _listen(path):
    """A root-only socket (mode 0600 from the umask); a stale one left by a killed engine
    is replaced, which is safe because we hold the lock."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(512)
    listener.setblocking(False)
    return listener


def _write_pidfile(path):
    from fastbox.state import process
    pid = os.getpid()
    tmp = f"{path}.{pid}"
    with open(tmp, "w") as f:
        f.write(f"{pid} {process.start_time(pid)}\n")
    os.rename(tmp, path)
    return path


def _warm_up():
    """Import and open now what a first run would: every run then starts warm."""
    from fastbox.runtime import container, cgroup, rootfs, exec, devices  # noqa: F401,A004
    devices.preload()  # v2: the device program every default container shares
    from fastbox.images import lookup  # noqa: F401
    from fastbox import api, containers  # noqa: F401  (containers: -d)
    from fastbox.cli import app, container_commands, go_template, ps_view  # noqa: F401  (ps)
    app.prepare()
    import datetime  # noqa: F401  (kept containers' timestamps)
    stdio.devnull()
    from fastbox.runtime import network  # noqa: F401  (bridge, the default of run)
    from fastbox.network import endpoints, files, ipam, nft, ports  # noqa: F401
    spare.started()
    spare.make_early("bridge")
    import gc
    gc.freeze()  # what is loaded now stays: the collector need not scan it again


def _request_threads():
    """Every Python thread but this one runs a request (the core's is not Python's)."""
    return [t for t in threading.enumerate() if t is not threading.main_thread()]
