"""Keys typed ahead reach the container's shell, as they reach a shell started in the
terminal itself (or under `script`): `fastbox run -it busybox sh` must not discard what
the user typed while it started. The keys are queued on a real pty before fastbox even
runs, so the test does not depend on timing: putting the terminal into raw mode with
TCSAFLUSH (Python's tty.setraw default) throws them away and the shell stays open."""
import os
import pty
import select
import sys
import time

import pytest

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def typed_ahead(argv, keys, timeout=20):
    """Exit code of argv run on a new pty whose input already holds keys; None if it
    was still running after timeout (then killed)."""
    go_r, go_w = os.pipe()
    pid, master = pty.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)  # until the keys are queued on our terminal
        os.execv(argv[0], argv)
    os.close(go_r)
    try:
        os.write(master, keys)
        time.sleep(0.2)  # the line discipline has them (echoed back on the master)
        os.write(go_w, b"1")
        os.close(go_w)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:  # EIO: the child side is closed
                    pass
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return None
    finally:
        os.close(master)


def test_keys_typed_ahead_reach_the_shell(busybox):
    code = typed_ahead([FASTBOX, "run", "-it", "--rm", "busybox", "sh"], b"clear\rexit 7\r")
    assert code == 7, "the typed-ahead `exit 7` was lost: the shell stayed open"


def test_same_as_a_shell_in_the_terminal_itself():
    """The reference: busybox's shell run straight in the pty keeps the keys too."""
    busybox = "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("no host busybox")
    assert typed_ahead([busybox, "sh"], b"clear\rexit 7\r") == 7


def test_exec_it_keeps_typed_ahead_keys(busybox):
    import subprocess
    cid = subprocess.run([FASTBOX, "run", "-d", "busybox", "sleep", "1000"], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        code = typed_ahead([FASTBOX, "exec", "-it", cid, "sh"], b"exit 5\r")
        assert code == 5
    finally:
        subprocess.run([FASTBOX, "rm", "-f", cid], capture_output=True)
