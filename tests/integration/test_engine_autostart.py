"""The engine starts by itself: the first `fastbox` command with no engine running starts
one in the background and runs in the Python CLI as if nothing happened; later commands
are served by it; it exits once idle (FASTBOX_ENGINE_IDLE) with nothing to serve.
FASTBOX_NO_ENGINE=1 and `fastbox engine stop` opt out."""
import os
import time

import pytest
from waiting import eventually

from test_engine import FASTBOX, run_cli, watched  # noqa: F401

pytestmark = pytest.mark.engine  # conftest: no FASTBOX_NO_ENGINE here


def engine_pid(run):
    """The live engine's pid for run, or None."""
    try:
        with open(os.path.join(run, "engine.pid")) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return None if f.read().rpartition(")")[2].split()[0] == "Z" else pid
    except OSError:
        return None


def gone(pid):
    """True once pid has exited (reaping it: we are the tests' child subreaper)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def auto(fb_env, busybox, monkeypatch):
    """The test's FASTBOX_RUN without engine.off: the first command starts an engine."""
    os.unlink(os.path.join(fb_env.run, "engine.off"))
    monkeypatch.setenv("FASTBOX_ENGINE_IDLE", "2")
    return fb_env


def test_first_command_starts_engine_later_ones_served_then_it_exits_idle(auto, watched):
    r = run_cli("ps", binary=watched.binary)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.startswith("CONTAINER ID")
    assert "ps" in watched.fallbacks()  # the first one ran in the Python CLI
    pid = eventually(lambda: engine_pid(auto.run), what="an engine to start by itself")
    assert "engine serve --auto" in watched.fallbacks()
    before = list(watched.fallbacks())
    r = run_cli("run", "--rm", "busybox", "echo", "served", binary=watched.binary)
    assert (r.returncode, r.stdout, r.stderr) == (0, "served\n", "")
    r = run_cli("ps", "-a", binary=watched.binary)
    assert r.returncode == 0 and r.stdout.startswith("CONTAINER ID")
    assert watched.fallbacks() == before, "later commands were not served by the engine"
    # Idle for 2 s: it goes, with its socket and pidfile.
    eventually(lambda: gone(pid), timeout=30, what="the idle engine to exit")
    assert not os.path.exists(os.path.join(auto.run, "engine.sock"))
    assert not os.path.exists(os.path.join(auto.run, "engine.pid"))
    log = open(os.path.join(auto.run, "engine.log")).read()
    assert "Traceback" not in log, log


def test_engine_stays_while_it_serves_a_container(auto):
    run_cli("ps")
    pid = eventually(lambda: engine_pid(auto.run), what="an engine to start by itself")
    started = time.monotonic()
    r = run_cli("run", "--rm", "busybox", "sleep", "4")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started >= 4
    assert engine_pid(auto.run) == pid, "the engine left while serving a container"
    eventually(lambda: gone(pid), timeout=30, what="the idle engine to exit")


def test_an_engine_that_cannot_start_never_fails_the_command(auto, monkeypatch):
    """A bad idle setting stops the engine at once: the command neither fails nor waits,
    and its output pipe closes with it (the engine holds none of the caller's fds)."""
    monkeypatch.setenv("FASTBOX_ENGINE_IDLE", "soon")
    started = time.monotonic()
    r = run_cli("images", timeout=30)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout.startswith("REPOSITORY")
    assert time.monotonic() - started < 10
    log = os.path.join(auto.run, "engine.log")
    eventually(lambda: os.path.exists(log) and "invalid engine idle time" in open(log).read(),
               what="the engine's refusal in engine.log")
    assert engine_pid(auto.run) is None


def test_no_engine_variable_opts_out(auto, monkeypatch):
    monkeypatch.setenv("FASTBOX_NO_ENGINE", "1")
    for _ in range(2):
        assert run_cli("ps").returncode == 0
    time.sleep(1.5)
    assert engine_pid(auto.run) is None
    assert not os.path.exists(os.path.join(auto.run, "engine.log"))


def test_engine_stop_opts_out_until_engine_start(auto):
    run_cli("ps")
    pid = eventually(lambda: engine_pid(auto.run), what="an engine to start by itself")
    r = run_cli("engine", "stop")
    assert (r.returncode, r.stdout) == (0, f"fastbox engine stopped (pid {pid})\n"), r.stderr
    eventually(lambda: gone(pid), what="the stopped engine to be reaped")
    assert run_cli("ps").returncode == 0
    time.sleep(1.5)
    assert engine_pid(auto.run) is None, "an engine started after `engine stop`"
    r = run_cli("engine", "start")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(auto.run, "engine.off"))
    pid = engine_pid(auto.run)
    r = run_cli("engine", "stop")
    assert r.returncode == 0
    eventually(lambda: gone(pid), what="the engine to be reaped")


def test_engine_stays_while_a_worker_serves_a_command(auto):
    """`logs -f` runs in a worker forked for it: the engine counts it until it exits."""
    run_cli("ps")
    pid = eventually(lambda: engine_pid(auto.run), what="an engine to start by itself")
    cid = run_cli("run", "-d", "busybox", "sh", "-c", "echo a; sleep 4; echo b").stdout.strip()
    assert cid
    started = time.monotonic()
    r = run_cli("logs", "-f", cid)
    assert (r.returncode, r.stdout) == (0, "a\nb\n"), r.stderr
    assert time.monotonic() - started >= 3
    assert engine_pid(auto.run) == pid, "the engine left while a worker served logs -f"
    assert run_cli("rm", cid).returncode == 0
    eventually(lambda: gone(pid), timeout=30, what="the idle engine to exit")
