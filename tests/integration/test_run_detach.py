"""A foreground `run -it` detaches as Docker's does: the container runs under its monitor
with us attached, so ^P^Q (or --detach-keys) ends only our attachment. The container
keeps running (`ps` shows it Up), `attach` gets it back, its exit code reaches `wait`
and `ps -a`, and a --rm one is removed when it later exits. Everything else of a
terminal run still holds: ^C, the window size, signals sent to us, the exit code.
Each case drives fastbox on a real pty, as a user's terminal does."""
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from test_engine import engine, engine_ctl, served  # noqa: F401  (fixtures)
from test_lifecycle import FASTBOX, cleanup, cli, reap  # noqa: F401


class Terminal:
    """fastbox run on a new pty that is its controlling terminal (pty.fork): we type
    on the master and read what the user would see."""

    def __init__(self, argv, rows=24, cols=80):
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.execv(argv[0], argv)
        self.resize(rows, cols)
        self.seen = b""

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data):
        os.write(self.master, data)

    def expect(self, text, timeout=30):
        """Read until text shows; returns everything up to it."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on the terminal: {self.seen[-2000:]!r}"
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the client is gone
                    data = b""
                assert data, f"terminal closed before {text!r}: {self.seen[-2000:]!r}"
                self.seen += data
        before, _, self.seen = self.seen.partition(text)
        return before + text

    def exit_code(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    pass
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"fastbox still running: {self.seen[-2000:]!r}")

    def close(self):
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.master)


@pytest.fixture
def terminals():
    made = []
    yield lambda *args, **kw: made.append(Terminal(*args, **kw)) or made[-1]
    for t in made:
        t.close()


def state(ref):
    r = cli("inspect", ref)
    return json.loads(r.stdout)[0]["State"] if r.returncode == 0 else None


def prompt(t):
    """Wait for the shell, with a mark it computes (its echo of our typing never
    matches)."""
    t.type(b"echo READY-$((20+22))\r")
    t.expect(b"READY-42")


def test_ctrl_p_ctrl_q_detaches_and_attach_gets_it_back(busybox, terminals, cleanup):
    cleanup.append("detach-me")
    t = terminals([FASTBOX, "run", "-it", "--name", "detach-me", "busybox", "sh"])
    prompt(t)
    t.type(b"\x10\x11")
    assert t.exit_code() == 0
    assert state("detach-me")["Status"] == "running"
    ps = cli("ps").stdout
    assert any(line.split()[-1] == "detach-me" and " Up " in line for line in ps.splitlines()), ps

    a = terminals([FASTBOX, "attach", "detach-me"])
    a.type(b"echo BACK-$((1+1))\r")
    a.expect(b"BACK-2")
    a.type(b"exit 3\r")
    assert a.exit_code() == 3
    r = cli("wait", "detach-me")
    assert (r.returncode, r.stdout) == (0, "3\n")
    assert state("detach-me")["ExitCode"] == 3
    line = [ln for ln in cli("ps", "-a").stdout.splitlines() if ln.endswith("detach-me")]
    assert line and "Exited (3)" in line[0], line


def test_detach_keys_option(busybox, terminals, cleanup):
    """--detach-keys ctrl-x,x; the default ^P^Q then goes through to the container."""
    cleanup.append("keys")
    t = terminals([FASTBOX, "run", "-it", "--detach-keys", "ctrl-x,x", "--name", "keys",
                   "busybox", "sh", "-c", 'stty -ixon; echo GO; read -r line; '
                   'printf "%s" "$line" | od -An -tx1; '
                   'read -r more; exit 9'])
    t.expect(b"GO")  # ^Q is the container terminal's XON until stty -ixon has run
    t.type(b"a\x10\x11b\r")  # ^P^Q is not the detach sequence here: it reaches the program
    assert b"61 10 11 62" in t.expect(b"62")
    t.type(b"\x18x")
    assert t.exit_code() == 0
    assert state("keys")["Status"] == "running"
    cli("kill", "keys")


def test_ctrl_p_then_another_key_goes_to_the_container(busybox, terminals):
    t = terminals([FASTBOX, "run", "-it", "--rm", "busybox", "sh", "-c",
                   'read -r line; printf "%s" "$line" | od -An -tx1; exit 4'])
    t.type(b"a\x10b\r")
    assert b"61 10 62" in t.expect(b"62")
    assert t.exit_code() == 4


def test_detached_rm_container_is_removed_when_it_exits(busybox, terminals, cleanup):
    cleanup.append("rm-later")
    t = terminals([FASTBOX, "run", "-it", "--rm", "--name", "rm-later", "busybox", "sh"])
    prompt(t)
    t.type(b"\x10\x11")
    assert t.exit_code() == 0
    assert state("rm-later")["Status"] == "running"
    a = terminals([FASTBOX, "attach", "rm-later"])
    a.type(b"exit 6\r")
    assert a.exit_code() == 6  # from the monitor: a --rm container leaves no record
    deadline = time.monotonic() + 10
    while state("rm-later") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state("rm-later") is None


def test_exit_code_and_removal_without_detaching(busybox, terminals):
    """`run -it --rm` returns once the container is gone, with its code."""
    t = terminals([FASTBOX, "run", "-it", "--rm", "--name", "gone", "busybox", "sh"])
    prompt(t)
    t.type(b"exit 7\r")
    assert t.exit_code() == 7
    assert state("gone") is None


def test_ctrl_c_reaches_the_container(busybox, terminals):
    t = terminals([FASTBOX, "run", "-it", "--rm", "busybox", "sh"])
    prompt(t)
    t.type(b"sleep 300\r")
    time.sleep(0.3)
    t.type(b"\x03")
    t.type(b"echo AFTER-$((2+3))\r")
    t.expect(b"AFTER-5", timeout=10)  # not 300 s: ^C ended the sleep
    t.type(b"exit\r")
    assert t.exit_code() == 0


def test_window_size_follows_ours(busybox, terminals):
    t = terminals([FASTBOX, "run", "-it", "--rm", "busybox", "sh"], rows=21, cols=77)
    prompt(t)
    t.type(b"stty size\r")
    t.expect(b"21 77")
    t.resize(33, 111)  # the kernel sends SIGWINCH to fastbox, the pty's foreground
    time.sleep(0.3)
    t.type(b"stty size\r")
    t.expect(b"33 111")
    t.type(b"exit 0\r")
    assert t.exit_code() == 0


def test_signals_sent_to_the_client_reach_the_container(busybox, terminals):
    t = terminals([FASTBOX, "run", "-it", "--rm", "busybox", "sh", "-c",
                   'trap "exit 5" TERM; echo ready; sleep 300 & wait'])
    t.expect(b"ready")
    os.kill(t.pid, signal.SIGTERM)
    assert t.exit_code() == 5


def test_output_waits_for_a_slow_terminal(busybox, terminals):
    """The monitor holds the container's output while we cannot take it (as a program
    on a slow terminal waits), never dropping us: all of a large output arrives."""
    t = terminals([FASTBOX, "run", "-it", "--rm", "busybox", "sh", "-c",
                   "seq 1 200000; echo END-$((1+2))"])
    t.expect(b"\r\n1000\r\n")
    os.kill(t.pid, signal.SIGSTOP)  # a stalled terminal
    time.sleep(2.5)  # more than the second after which any other client is dropped
    os.kill(t.pid, signal.SIGCONT)
    out = t.expect(b"END-3", timeout=60)
    assert [int(n) for n in out.split(b"\r\n") if n.isdigit()] == list(range(1001, 200001))
    assert t.exit_code() == 0


def test_rm_takes_its_anonymous_volumes_along(busybox, terminals):
    t = terminals([FASTBOX, "run", "-it", "--rm", "-v", "/scratch", "busybox", "sh", "-c",
                   "touch /scratch/x; exit 2"])
    assert t.exit_code() == 2
    assert cli("volume", "ls", "-q").stdout == ""


def test_attach_follows_our_window_size(busybox, terminals, cleanup):
    """`attach` sets the container's terminal to our size, and keeps it following."""
    cleanup.append("sized")
    r = cli("run", "-dit", "--name", "sized", "busybox", "sh")
    assert r.returncode == 0, r.stderr
    a = terminals([FASTBOX, "attach", "sized"], rows=21, cols=77)
    a.type(b"stty size\r")
    a.expect(b"21 77")
    a.resize(33, 111)
    time.sleep(0.3)
    a.type(b"stty size\r")
    a.expect(b"33 111")
    a.type(b"exit 4\r")
    assert a.exit_code() == 4


@pytest.mark.engine
def test_detach_and_attach_through_the_engine(busybox, engine, served, terminals, cleanup):
    """Served by the engine's worker (the client's own terminal passed to it): the same."""
    cleanup.append("served")
    t = terminals([served, "run", "-it", "--name", "served", "busybox", "sh"])
    prompt(t)
    t.type(b"\x10\x11")
    assert t.exit_code() == 0
    assert state("served")["Status"] == "running"
    a = terminals([served, "attach", "served"])
    a.type(b"exit 3\r")
    assert a.exit_code() == 3
    assert state("served")["ExitCode"] == 3


def test_a_killed_client_leaves_the_container_running(busybox, terminals, cleanup):
    """As with Docker, the container belongs to its monitor, not to the CLI: SIGKILL of
    `run -it` (which cannot forward it) leaves it running, for `attach`."""
    cleanup.append("orphan")
    t = terminals([FASTBOX, "run", "-it", "--name", "orphan", "busybox", "sh"])
    prompt(t)
    os.kill(t.pid, signal.SIGKILL)
    assert t.exit_code() == -signal.SIGKILL
    assert state("orphan")["Status"] == "running"
    a = terminals([FASTBOX, "attach", "orphan"])
    a.type(b"exit 8\r")
    assert a.exit_code() == 8
