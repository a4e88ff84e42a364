"""`attach`: to a `run -d -i` container (its stdin a pipe the monitor keeps) and to a
`run -dit` one under a real pty; the detach keys (^P^Q, or --detach-keys) leave it
running; without them attach ends with the container's exit code."""
import os
import pty
import select
import subprocess
import time

import pytest
from waiting import eventually

from fastbox.cli.attach_command import parse_detach_keys, scan_for_keys
from fastbox.errors import SpecError
from test_lifecycle import FASTBOX, cleanup, cli, ok, one_line_error, reap  # noqa: F401

ECHO = 'while read line; do echo "out $line"; echo "err $line" >&2; [ "$line" = quit ] && exit 5; done'


def attach(ref, data, *flags):
    return subprocess.run([FASTBOX, "attach", *flags, ref], input=data, capture_output=True,
                          timeout=60)


def status(ref):
    import json
    return json.loads(ok(cli("inspect", ref)).stdout)[0]["State"]["Status"]


def test_attach_relays_input_and_both_streams_and_returns_the_exit_code(busybox, cleanup):
    ref = ok(cli("run", "-d", "-i", "busybox", "sh", "-c", ECHO)).stdout.strip()
    cleanup.append(ref)
    r = attach(ref, b"hello\nquit\n")
    assert r.returncode == 5
    assert r.stdout == b"out hello\nout quit\n"
    assert r.stderr == b"err hello\nerr quit\n"
    assert status(ref) == "exited"


def test_detach_keys_leave_it_running(busybox, cleanup):
    ref = ok(cli("run", "-d", "-i", "busybox", "sh", "-c", ECHO)).stdout.strip()
    cleanup.append(ref)
    r = attach(ref, b"one\n\x10\x11quit\n")
    assert r.returncode == 0 and r.stderr.endswith(b"read escape sequence\n")
    assert status(ref) == "running"  # "quit" after the keys never reached it
    r = attach(ref, b"two\n\x01xquit\n", "--detach-keys", "ctrl-a,x")
    assert r.returncode == 0 and status(ref) == "running"
    eventually(lambda: "out two" in ok(cli("logs", ref)).stdout, what="two in the log")
    assert "out quit" not in ok(cli("logs", ref)).stdout
    r = attach(ref, b"quit\n")
    assert r.returncode == 5


def test_attach_a_terminal_container_under_a_pty(busybox, cleanup):
    ref = ok(cli("run", "-dit", "busybox", "sh")).stdout.strip()
    cleanup.append(ref)
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(FASTBOX, [FASTBOX, "attach", ref])
    try:
        out = b""
        os.write(master, b"echo hel''lo-$((6*7))\r")
        deadline = time.monotonic() + 30
        while b"hello-42" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                out += os.read(master, 4096)
        assert b"hello-42" in out, out
        os.write(master, b"exit 7\r")
        _, st = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(st) == 7
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(master)


def test_attach_errors_are_one_line(busybox, cleanup):
    ref = ok(cli("create", "busybox", "true")).stdout.strip()
    cleanup.append(ref)
    r = attach(ref, b"")
    assert r.returncode != 0 and "start it first" in one_line_error(
        subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode()))
    r = cli("attach", "--detach-keys", "ctrl-1", ref)
    assert r.returncode != 0 and "--detach-keys" in one_line_error(r)


def test_detach_key_parsing_and_scanning():
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(SpecError):
        parse_detach_keys("ctrl-pp")
    keys = b"\x10\x11"
    assert scan_for_keys(b"abc", keys) == (b"abc", b"", False)
    assert scan_for_keys(b"abc\x10", keys) == (b"abc", b"\x10", False)  # held back
    assert scan_for_keys(b"\x10\x11rest", keys) == (b"", b"", True)
    assert scan_for_keys(b"ab\x10\x11", keys) == (b"ab", b"", True)
