"""Attacks on the start paths added on 2026-12-07, performed from inside real containers.

1. `run -it` under its monitor (fastbox/cli/attached_run.py, attach_stream.py,
   csrc/monitor/fb_monitor.c): the container holds only its own terminal as 0-2, is in
   a session of its own on a pty of its own devpts (TIOCSTI cannot reach the caller's
   shell), cannot forge the exit frame from its output, and cannot make the client
   hang: not with a flood against a slow terminal, not by leaving its input unread.
2. Volumes filled from the image (fastbox/volumes/populate.py): a host disk's device
   node copied into a volume stays unusable; a hard link of the image is not shared with
   the image's layer; what the copy made is out of a host user's reach.
3. `network connect` rewriting members' /etc/hosts (fastbox/network/files.py): a
   container cannot turn its /etc/hosts into a link to a host file for the engine to
   write through.
"""
import os
import re
import select
import subprocess
import time
import uuid

import pytest
from test_breakout import Shell, attack  # noqa: F401  (the attack image fixture)
from test_lifecycle import reap  # noqa: F401  (an autouse fixture)
from test_network import FASTBOX, HostNS

FASTBOX_PY = FASTBOX + "-py"


@pytest.fixture
def shell(tmp_path):
    s = Shell(str(tmp_path))
    s.expect(r"\$ ")
    yield s
    s.close()


def _rm(name):
    subprocess.run([FASTBOX_PY, "rm", "-f", name], capture_output=True, timeout=60)


# ------------------------------------------------------------------ 1. run -it

def test_run_it_container_holds_only_its_own_terminal(attack, shell):
    """Its first process sees fds 0-2 only, all on a pty of the container's own devpts
    (major 136), and is in a session of its own (sid 1 in its pid namespace): no fd of
    the monitor, of the CLI or of the socketpair between them."""
    code, text = shell.command(f"{FASTBOX_PY} run --rm -it {attack.image} "
                               "ls -l /proc/self/fd/")
    assert code == 0, text
    # 3: the directory ls itself is reading (closed by the time it reads the link)
    assert re.findall(r":\d\d (\d+)\b", text) == ["0", "1", "2", "3"], text
    assert len(re.findall(r" [012] -> /dev/pts/\d+\r?$", text, re.M)) == 3, text
    code, text = shell.command(f"{FASTBOX_PY} run --rm -it {attack.image} "
                               "cut -d' ' -f6,7 /proc/self/stat")
    sid, tty_nr = (int(x) for x in re.search(r"^(\d+) (\d+)\r?$", text, re.M).groups())
    assert code == 0 and sid == 1 and os.major(tty_nr) == 136, text


def test_run_it_tiocsti_cannot_type_into_the_callers_shell(attack, shell, tmp_path):
    """With dev.tty.legacy_tiocsti=1 (this host) TIOCSTI works on any terminal one can
    open: the container must be on a pty of its own, so what it pushes lands in its own
    input, never in the caller's shell."""
    pwned = tmp_path / "pwned"
    code, text = shell.command(f"{FASTBOX_PY} run --rm -it {attack.image} "
                               f"/attack tiocsti 'touch {pwned}\\n'")
    shell.command("true")  # anything pushed into the shell's terminal is read before this
    shell.close()
    assert "tiocsti /dev/tty injected" in text, text  # it did push, into its own terminal
    assert not pwned.exists(), f"the host shell ran a line the container typed: {text}"


def test_run_it_output_cannot_forge_the_exit_frame(attack, shell):
    """A container printing the bytes of the monitor's exit frame (stream 4, "7") and a
    frame header claiming 4 GiB still ends with its own code."""
    code, text = shell.command(
        f"{FASTBOX_PY} run --rm -it {attack.image} sh -c "
        "'printf \"\\004\\000\\000\\000\\000\\000\\000\\0017\"; "
        "printf \"\\001\\000\\000\\000\\377\\377\\377\\377\"; exit 3'")
    assert code == 3, text


def _on_pty(argv):
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    os.set_blocking(master, False)
    return p, master


def _read(master, seconds, out):
    """What the terminal shows within seconds, appended to out; False once it closed."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if select.select([master], [], [], 0.1)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                return False
            if not data:
                return False
            out += data
    return True


def _finish(p, master):
    try:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)
    finally:
        os.close(master)


def test_run_it_flood_against_a_stalled_terminal_loses_nothing(attack):
    """The terminal stops reading for 3 s while the container floods its output: the
    container waits for it (as for any slow terminal); the client is not dropped, shows
    every line and ends with the container's code."""
    p, master = _on_pty([FASTBOX_PY, "run", "--rm", "-it", attack.image, "sh", "-c",
                         "seq 1 200000; echo END-$((6*7)); exit 5"])
    out = bytearray()
    try:
        while len(out) < 1000 and _read(master, 0.1, out):
            pass
        time.sleep(3)
        deadline = time.monotonic() + 60
        while _read(master, 0.5, out) and time.monotonic() < deadline:
            pass
        assert p.wait(timeout=30) == 5
    finally:
        _finish(p, master)
    assert b"\r\n200000\r\nEND-42" in out, bytes(out[-300:])
    assert out.count(b"\r\n") >= 200001


def test_run_it_container_not_reading_its_input_cannot_stall_the_client(attack, fb_env):
    """A container that leaves its terminal's input unread (a real terminal answering
    the queries it prints would fill it by itself; here the user pastes 300 KB): its
    output must still reach the client, and the detach keys must still detach. The
    monitor used to block writing to the terminal's master: no output, no signals, no
    exit, and the client blocked behind it could not even detach."""
    name = f"paste-{uuid.uuid4().hex[:8]}"
    p, master = _on_pty([FASTBOX_PY, "run", "-it", "--name", name, attack.image, "sh", "-c",
                         "stty raw -echo; echo ready; sleep 4; echo alive-$((6*7)); sleep 600"])
    out = bytearray()
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in out and time.monotonic() < deadline:
            assert _read(master, 0.1, out), bytes(out)
        paste, sent = (b"x" * 999 + b"\r") * 300, 0
        deadline = time.monotonic() + 10
        while sent < len(paste) and time.monotonic() < deadline:
            try:
                sent += os.write(master, paste[sent:sent + 4096])
            except BlockingIOError:
                _read(master, 0.05, out)
        deadline = time.monotonic() + 20
        while b"alive-42" not in out and time.monotonic() < deadline:
            _read(master, 0.1, out)
        assert b"alive-42" in out, f"the container's output stopped: {bytes(out[-200:])!r}"
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        deadline = time.monotonic() + 20
        while p.poll() is None and time.monotonic() < deadline:
            _read(master, 0.1, out)
        assert p.poll() == 0, f"the client did not detach: {bytes(out[-200:])!r}"
    finally:
        _finish(p, master)
        _rm(name)
