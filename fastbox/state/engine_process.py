"""Starting, finding and stopping the engine of this FASTBOX_RUN. The engine writes
engine.pid ("PID START_TIME") once its socket accepts clients, and removes it when it
exits; a pid whose start time differs is another process, not our engine.

The C client starts an engine by itself when none runs; `stop` opts out of that by
leaving engine.off, which `start` removes (FASTBOX_NO_ENGINE=1 opts out per command)."""
import os
import signal
import subprocess
import sys
import time

from fastbox import config
from fastbox.errors import EngineError
from fastbox.state import process

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0  # the engine gives its containers 10 s after SIGTERM


SOCKET_NAME = "engine.sock"


def socket_path():
    """Where the engine listens (the C client connects to the same path)."""
    return os.path.join(config.run_dir(), SOCKET_NAME)


def log_path():
    return os.path.join(config.run_dir(), "engine.log")


def off_marker():
    return os.path.join(config.run_dir(), "engine.off")


def running():
    """The running engine's pid, or None."""
    recorded = _recorded()
    return recorded[0] if recorded else None


def _recorded():
    """(pid, start time) of the running engine, or None."""
    try:
        with open(os.path.join(config.run_dir(), "engine.pid")) as f:
            pid, started = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    return (pid, started) if process.alive(pid, started) else None


def start():
    """Starts the engine in the background (in its own session, its output appended to
    engine.log) and returns (pid, True) once it accepts clients; (pid, False) if one was
    already running."""
    run = config.run_dir()
    os.makedirs(run, mode=0o700, exist_ok=True)
    try:
        os.unlink(off_marker())
    except FileNotFoundError:
        pass
    pid = running() or _starting()
    if pid:
        return pid, False
    log = os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fastbox.engine", "--ready-fd",
                                 str(ready_w)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(ready_w,), start_new_session=True, cwd="/")
    finally:
        os.close(ready_w)
        os.close(log)
    try:
        if _wait_ready(ready_r):
            return proc.pid, True
    finally:
        os.close(ready_r)
    proc.kill()
    proc.wait()
    raise EngineError(f"the engine did not start: {_last_log_line()}")


def _starting():
    """The pid of an engine that holds the lock but is not serving yet (one the C client
    started by itself a moment ago), once it serves; None if no engine holds the lock."""
    import fcntl
    try:
        fd = os.open(os.path.join(config.run_dir(), "engine.lock"), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pid = running()
            if pid:
                return pid
            time.sleep(0.01)
        raise EngineError("an engine holds engine.lock but does not serve: "
                          f"see {log_path()}") from None
    finally:
        os.close(fd)


def _wait_ready(fd):
    """True once the engine says it is ready; False if it exited or took too long."""
    import select
    readable, _, _ = select.select([fd], [], [], START_TIMEOUT)
    return bool(readable) and os.read(fd, 1) == b"1"


def _last_log_line():
    try:
        with open(log_path(), "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "no message (see engine.log)"


def stop():
    """Stops the engine (its running containers get SIGTERM, then SIGKILL after 10 s)
    and returns its pid, or None if none was running. No engine starts by itself for
    this FASTBOX_RUN from now on, until `start`."""
    run = config.run_dir()
    os.makedirs(run, mode=0o700, exist_ok=True)
    with open(off_marker(), "w"):
        pass
    recorded = _recorded()
    if recorded is None:
        return None
    pid, started = recorded
    process.signal_process(pid, started, signal.SIGTERM)
    if not _wait_gone(pid, started, STOP_TIMEOUT):
        process.signal_process(pid, started, signal.SIGKILL)
        _wait_gone(pid, started, 5.0)
    return pid


def _wait_gone(pid, started, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # ours when this process started it
        except ChildProcessError:
            pass
        if not process.alive(pid, started):
            return True
        time.sleep(0.01)
    return False
