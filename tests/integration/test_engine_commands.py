"""Every command but `fastbox engine ...` through the engine: a plain `run` in an engine
thread (test_engine.py), anything else in a worker forked from the engine's warm fork
server. A worker must be the `fastbox-py` the client would otherwise have exec'd: the
client's stdio, cwd, environment and umask; the same stdout, stderr and exit code; its
signals acting as they would on the Python CLI (a deadly one kills the client with it);
gone when its client is SIGKILLed; and nothing left behind in the engine or the fork
server.

Which path ran is proven, not assumed: `served` (test_engine.py) is a copy of the C
client with no fastbox-py beside it, so a fallback fails with "cannot run ..."; the
Python CLI side of each comparison is `fastbox-py` itself.
"""
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import tarfile
import termios

import pytest
from fastbox.state import owners
from pipe_lines import Lines
from waiting import eventually

from test_engine import (FASTBOX_PY, MISSING_PY, alive, ancestors, container_cgroups,  # noqa
                         container_pids, engine, engine_ctl, engine_with_secret, fd_count,
                         owner_slots, parity_engine, run_cli, running, served, status_field, watched)
from test_lifecycle import ok  # noqa: F401

pytestmark = pytest.mark.engine  # conftest: no FASTBOX_NO_ENGINE here

PYTHON_EXE = os.path.realpath(sys.executable)


# ------------------------------------------------------------------ processes

def _ppid(pid):
    chain = ancestors(pid)
    return chain[0] if chain else None


def children(pid):
    """Live (not zombie) children of pid."""
    return [int(p) for p in os.listdir("/proc")
            if p.isdigit() and _ppid(int(p)) == pid and alive(int(p))]


def _exe(pid):
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None


def fork_server(engine_pid):
    """The engine's fork server: its one child running Python (an idle engine has no
    other child; a container's processes run other programs)."""
    found = eventually(lambda: [c for c in children(engine_pid) if _exe(c) == PYTHON_EXE],
                       what="the engine's fork server")
    assert len(found) == 1, found
    return found[0]


def _fd_link(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def worker_of(client_pid, engine_pid):
    """The worker running the command of this client: a child of the fork server with
    the client's own stdout and stderr (its pipes or terminal) as fds 1 and 2."""
    server = fork_server(engine_pid)
    mine = [_fd_link(client_pid, 1), _fd_link(client_pid, 2)]
    found = eventually(lambda: [w for w in children(server)
                                if [_fd_link(w, 1), _fd_link(w, 2)] == mine],
                       what=f"the worker of client {client_pid}")
    assert len(found) == 1, found
    return found[0]


def reap_if_ours(pid):
    """A worker or fork server whose parent died is reparented to us (the subreaper)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def signal_mask(pid, key):
    return int(status_field(pid, key), 16)


# ------------------------------------------------------------------ containers

def py(*args, env=None, **kwargs):
    """The Python CLI itself."""
    return run_cli(*args, binary=FASTBOX_PY, env=env, **kwargs)


def logged(name, text, env=None):
    """Waits until the container's log (stdout and stderr) has text."""
    def has():
        r = py("logs", name, env=env)
        return text in r.stdout + r.stderr
    eventually(has, what=f"{text!r} in the log of {name}")


class Boxes:
    """Detached busybox containers, started by the Python CLI, all removed at the end."""

    def __init__(self):
        self.made = []  # (name, env)

    def start(self, name, script, env=None, ready=None):
        self.made.append((name, env))
        ok(py("run", "-d", "--name", name, "busybox", "sh", "-c", script, env=env))
        if ready:
            logged(name, ready, env)
        return name

    def exited(self, name, script, env=None):
        self.start(name, script, env)
        ok(py("wait", name, env=env))
        return name

    def remove(self, name, env=None):
        py("rm", "-f", name, env=env)

    def remove_all(self):
        for name, env in reversed(self.made):
            self.remove(name, env)
        self.made = []
        eventually(lambda: not container_cgroups(), what="the containers' cgroups to go")


@pytest.fixture
def boxes(busybox):
    b = Boxes()
    yield b
    b.remove_all()


SLEEPER = "echo ready; exec sleep 300"


@contextlib.contextmanager
def following(argv, env=None):
    """A client running argv (a `logs -f` or other long command whose first stdout line is
    "ready"), once that line is out: (process, its stdout Lines)."""
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 stdin=subprocess.DEVNULL, env=env) as p:
        out = Lines(p.stdout)
        assert out.readline() == "ready\n"
        yield p, out


def finish(p, out):
    """(returncode, rest of stdout, stderr) of a client that is ending."""
    rest, err = p.communicate(timeout=60)
    return p.returncode, out.buf.decode() + rest.decode(), err.decode()


# ------------------------------------------------------------------ terminals

class Terminal:
    """A pseudo-terminal for a client: it gets the slave as fds 0-2; we keep the master
    (whose ioctls reach the slave's settings)."""

    def __init__(self, rows=24, cols=80):
        self.master, slave = pty.openpty()
        self.slave_name = os.ttyname(slave)
        os.close(slave)
        self.buf = b""
        self.resize(rows, cols)

    def resize(self, rows, cols):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def attrs(self):
        return termios.tcgetattr(self.master)

    @contextlib.contextmanager
    def spawn(self, argv, env=None):
        slave = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY)
        try:
            ctx = running(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                          start_new_session=True)
            p = ctx.__enter__()
        finally:
            os.close(slave)  # only the client (and its worker) hold it: EIO once they exit
        try:
            yield p
        finally:
            ctx.__exit__(None, None, None)

    def _read(self, wait):
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: nobody holds the slave any more
            data = b""
        self.buf += data
        return bool(data)

    def read_until(self, text, what=None):
        def seen():
            self._read(0.05)
            return text in self.buf
        eventually(seen, what=what or f"{text!r} on the terminal (have {self.buf!r})")
        before, _, self.buf = self.buf.partition(text)
        return before + text

    def read_all(self):
        """Everything until nobody holds the slave."""
        eventually(lambda: not self._read(0.05), what="the terminal to be closed")
        out, self.buf = self.buf, b""
        return out

    def write(self, data):
        os.write(self.master, data)

    def close(self):
        os.close(self.master)


@pytest.fixture
def terminal():
    t = Terminal()
    yield t
    t.close()


# ------------------------------------------------------------------ parity

# A running container "box" (stdout "out", stderr "err"), an exited one "done" (code 3),
# a running "victim" that exits 7 on SIGTERM, and a created "made". Commands that change
# a container get their own, made afresh for each side with the same name.
SETUPS = {
    "box": lambda b, env: b.start("box", "echo out; echo err >&2; exec sleep 300", env,
                                  ready="err"),
    "done": lambda b, env: b.exited("done", "echo bye; exit 3", env),
    "victim": lambda b, env: b.start("victim", "trap 'exit 7' TERM; echo up; sleep 300 & wait",
                                     env, ready="up"),
    "made": lambda b, env: (b.made.append(("made", env)),
                            ok(py("create", "--name", "made", "busybox", "sh", "-c",
                                  "echo started; exit 4", env=env))),
}

# ps's columns but CREATED and STATUS, which say how long ago (the sides run apart).
STILL = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.State}}\t{{.Ports}}\t{{.Names}}"

# (id, args after `fastbox`, setups shared by both sides, setups made afresh for each
# side, stdin, then a command whose result must also agree afterwards).
PARITY = [
    ("ps", ["ps", "--format", STILL], ["box", "done"], [], None, None),
    ("ps-a", ["ps", "-a", "--format", STILL], ["box", "done"], [], None, None),
    ("ps-aq", ["ps", "-a", "-q"], ["box", "done"], [], None, None),
    ("ps-json", ["ps", "--format", "{{json .State}} {{json .Names}} {{json .Command}}"], ["box"],
     [], None, None),
    ("container-ls", ["container", "ls", "-a", "--format", STILL], ["box", "done"], [], None,
     None),
    ("images", ["images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}"],
     [], [], None, None),
    ("images-q", ["images", "-q"], [], [], None, None),
    ("inspect-image", ["inspect", "busybox"], [], [], None, None),
    ("image-inspect-format", ["image", "inspect", "-f", "{{.Id}}", "busybox"], [], [], None,
     None),
    ("inspect-container", ["inspect", "box"], ["box"], [], None, None),
    ("history", ["history", "busybox"], [], [], None, None),
    ("info", ["info"], [], [], None, None),
    ("help", ["--help"], [], [], None, None),
    ("run-help", ["run", "--help"], [], [], None, None),
    ("ps-help", ["ps", "--help"], [], [], None, None),
    ("system-help", ["system", "--help"], [], [], None, None),
    ("exec-help", ["exec", "--help"], [], [], None, None),
    ("no-such-command", ["nosuchcommand"], [], [], None, None),
    ("no-such-option", ["ps", "--bogus"], [], [], None, None),
    ("missing-argument", ["logs"], [], [], None, None),
    ("rm-missing", ["rm", "nosuchcontainer"], [], [], None, None),
    ("logs-missing", ["logs", "nosuch"], [], [], None, None),
    ("exec-missing", ["exec", "nosuch", "true"], [], [], None, None),
    ("logs", ["logs", "box"], ["box"], [], None, None),
    ("logs-tail", ["logs", "--tail", "1", "box"], ["box"], [], None, None),
    ("logs-exited", ["logs", "done"], ["done"], [], None, None),
    ("top", ["top", "box"], ["box"], [], None, None),
    ("exec", ["exec", "box", "sh", "-c", "echo hi; echo oops >&2; exit 3"], ["box"], [], None,
     None),
    ("exec-env-workdir", ["exec", "-e", "A=1", "-w", "/tmp", "box", "sh", "-c", 'echo "$A"; pwd'],
     ["box"], [], None, None),
    ("exec-stdin", ["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"], ["box"], [], "piped in\n",
     None),
    ("exec-no-stdin", ["exec", "box", "cat"], ["box"], [], "not for it\n", None),
    ("exec-tty-without-terminal", ["exec", "-t", "box", "echo", "hi"], ["box"], [], None, None),
    ("exec-not-running", ["exec", "done", "true"], ["done"], [], None, None),
    ("run-tty-without-terminal", ["run", "--rm", "-t", "busybox", "echo", "hi"], [], [], None,
     None),
    ("run-tty-env-file", ["run", "--rm", "-t", "--env-file", "vars.env", "busybox", "sh", "-c",
                          'echo "$FILE_A/$FILE_B"'], [], [], None, None),
    ("run-tty-env-from-caller", ["run", "--rm", "-t", "-e", "PARITY_K", "busybox", "sh", "-c",
                                 'echo "$PARITY_K"'], [], [], None, None),
    ("run-tty-bad-flag", ["run", "--rm", "-t", "--bogus-flag", "busybox", "true"], [], [], None,
     None),
    ("run-tty-relative-volume", ["run", "--rm", "-t", "-v", "rel:/x", "busybox", "true"], [], [],
     None, None),
    ("exec-env-from-caller", ["exec", "-e", "PARITY_K", "-e", "PARITY_UNSET", "box", "sh", "-c",
                              'echo "$PARITY_K/${PARITY_UNSET-unset}"'], ["box"], [], None, None),
    ("rm-undecodable-name", ["rm", os.fsdecode(b"caf\xe9")], [], [], None, None),
    ("wait", ["wait", "done"], ["done"], [], None, None),
    ("stop", ["stop", "victim"], [], ["victim"], None, ["wait", "victim"]),
    ("kill", ["kill", "victim"], [], ["victim"], None, ["wait", "victim"]),
    ("kill-term", ["kill", "-s", "TERM", "victim"], [], ["victim"], None, ["wait", "victim"]),
    ("rm-running", ["rm", "victim"], [], ["victim"], None, ["logs", "victim"]),
    ("rm-force", ["rm", "-f", "victim"], [], ["victim"], None, ["ps", "-a", "-q"]),
    ("rm", ["rm", "done"], [], ["done"], None, ["ps", "-a", "-q"]),
    ("rename", ["rename", "victim", "renamed"], [], ["victim"], None, ["rm", "-f", "renamed"]),
    ("start-attach", ["start", "-a", "made"], [], ["made"], None, ["wait", "made"]),
]


def _result(r):
    return r.returncode, r.stdout, r.stderr


HEX_ID = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{12}\b")


def _without_ids(result):
    """Containers made afresh for each side have their own ids: the rest must agree."""
    if result is None:
        return None
    code, out, err = result
    return code, HEX_ID.sub("<id>", out), HEX_ID.sub("<id>", err)


@pytest.mark.parametrize("args, shared, fresh, stdin, after", [p[1:] for p in PARITY],
                         ids=[p[0] for p in PARITY])
def test_worker_and_python_cli_agree(parity_engine, served, boxes, tmp_path, args, shared,
                                     fresh, stdin, after):
    """One command, two implementations: a worker of the engine (through a client that
    cannot fall back) and the Python CLI give the same exit code, stdout and stderr."""
    env = {**os.environ, **parity_engine.settings, "PARITY_K": "from the caller"}
    (tmp_path / "vars.env").write_text("FILE_A=1\nFILE_B=two words\n")
    for name in shared:
        SETUPS[name](boxes, env)
    results = []
    for binary in (served, FASTBOX_PY):
        for name in fresh:
            SETUPS[name](boxes, env)
        r = run_cli(*args, binary=binary, env=env, cwd=tmp_path, input=stdin)
        later = _result(py(*after, env=env)) if after else None
        if fresh:
            results.append((_without_ids(_result(r)), _without_ids(later)))
        else:
            results.append((_result(r), later))
        if fresh:
            for name in fresh + ["renamed"]:
                boxes.remove(name, env)
    (by_engine, engine_after), (by_python, python_after) = results
    assert MISSING_PY not in by_engine[2], by_engine
    assert by_engine == by_python
    assert engine_after == python_after
    assert alive(parity_engine.engine.pid)


def test_the_worker_is_the_fork_servers_child_with_the_clients_stdio_cwd_and_umask(
        engine, served, boxes, tmp_path):
    boxes.start("box", SLEEPER, ready="ready")
    with following(["sh", "-c", 'umask 027; exec "$@"', "sh", served, "logs", "-f", "box"]) \
            as (p, _):
        server = fork_server(engine.pid)
        worker = worker_of(p.pid, engine.pid)
        assert ancestors(worker)[:2] == [server, engine.pid]
        assert p.pid not in ancestors(worker)
        for fd in (0, 1, 2):
            assert _fd_link(worker, fd) == _fd_link(p.pid, fd)
        assert os.readlink(f"/proc/{worker}/cwd") == os.readlink(f"/proc/{p.pid}/cwd")
        assert status_field(worker, "Umask") == status_field(p.pid, "Umask") == "0027"
        others = [_fd_link(worker, int(fd)) for fd in os.listdir(f"/proc/{worker}/fd")
                  if int(fd) > 2]
        assert not [link for link in others if link and link.startswith(engine.run)], others
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130
    eventually(lambda: not alive(worker), what="the worker to exit")


# ------------------------------------------------------------------ cwd, umask, environment

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_relative_output_lands_in_the_clients_cwd_with_its_umask(engine, served, tmp_path,
                                                                  umask):
    """`save -o FILE` from the client's directory, the file made with the client's umask,
    as the Python CLI makes it."""
    (tmp_path / "sub").mkdir()
    results = {}
    for side, binary in (("engine", served), ("python", FASTBOX_PY)):
        r = subprocess.run(["sh", "-c", f'umask {umask:03o}; exec "$@"', "sh", binary, "save",
                            "-o", f"sub/{side}.tar", "busybox"], cwd=tmp_path,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        path = tmp_path / "sub" / f"{side}.tar"
        assert path.exists(), (r.returncode, r.stderr)
        with tarfile.open(path) as tar:
            members = tar.getnames()
        results[side] = (r.returncode, r.stdout, r.stderr, os.stat(path).st_mode & 0o777,
                         members)
    assert MISSING_PY not in results["engine"][2]
    assert results["engine"] == results["python"]
    assert results["engine"][3] == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path / "sub")) == ["engine.tar", "python.tar"]
    assert not os.path.exists("/sub/engine.tar"), "written relative to the engine's cwd"


def test_relative_input_is_read_from_the_clients_cwd(engine, served, tmp_path):
    """`load -i FILE` reads the client's file (here an archive of the image it has)."""
    ok(py("save", "-o", "busybox.tar", "busybox", cwd=tmp_path))
    by_engine = run_cli("load", "-i", "busybox.tar", binary=served, cwd=tmp_path)
    by_python = py("load", "-i", "busybox.tar", cwd=tmp_path)
    assert _result(by_engine) == _result(by_python)
    assert by_engine.returncode == 0 and "busybox" in by_engine.stdout, by_engine
    piped = []
    for binary in (served, FASTBOX_PY):
        with open(tmp_path / "busybox.tar", "rb") as archive:
            piped.append(subprocess.run([binary, "load"], stdin=archive, capture_output=True,
                                        timeout=60))
    assert [(r.returncode, r.stdout, r.stderr) for r in piped] == \
        [(0, by_python.stdout.encode(), b"")] * 2


# Variables that change `--help` (rich, through typer). COLUMNS is read on each call: the
# worker serves it. The others typer reads once, at import, which the
# fork server did with the engine's environment: the engine must send such a caller to
# the Python CLI (proven with `watched`) rather than print the engine's idea of them.
HELP_ENV = [
    ({"COLUMNS": "50"}, True),
    ({"FORCE_COLOR": "1"}, False),
    ({"TERMINAL_WIDTH": "50"}, False),
    ({"PY_COLORS": "1"}, False),
    ({"TYPER_USE_RICH": "0"}, False),
    ({"PYTHONIOENCODING": "latin-1"}, False),
]


@pytest.mark.parametrize("extra, served_by_worker", HELP_ENV,
                         ids=[next(iter(e)) for e, _ in HELP_ENV])
def test_output_follows_the_callers_environment(engine, watched, extra, served_by_worker):
    env = {**os.environ, **extra}
    plain = py("--help")
    by_python = py("--help", env=env)
    if "PYTHONIOENCODING" not in extra:
        assert by_python.stdout != plain.stdout, "the variable changes nothing: a useless case"
    by_engine = run_cli("--help", binary=watched.binary, env=env)
    assert _result(by_engine) == _result(by_python)
    assert watched.fallbacks() == ([] if served_by_worker else ["--help"])


def test_exec_env_key_comes_from_the_caller_not_the_engine(engine_with_secret, served, boxes):
    boxes.start("box", SLEEPER, ready="ready")
    args = ["exec", "-e", "FROM_CALLER", "-e", "ENGINE_ONLY", "box", "sh", "-c",
            'echo "${FROM_CALLER-unset}/${ENGINE_ONLY-unset}"']
    env = {**os.environ, "FROM_CALLER": "caller's"}
    r = run_cli(*args, binary=served, env=env)
    assert _result(r) == _result(py(*args, env=env)) == (0, "caller's/unset\n", "")


# ------------------------------------------------------------------ terminals

@pytest.mark.parametrize("args", [
    ["run", "--rm", "-it", "busybox", "sh", "-c", "test -t 0 && test -t 1 && echo tty-ok"],
    ["exec", "-it", "box", "sh", "-c", "test -t 0 && test -t 1 && echo tty-ok"],
], ids=["run-it", "exec-it"])
def test_tty_command_is_served_on_a_terminal(engine, served, boxes, terminal, args):
    boxes.start("box", SLEEPER, ready="ready")
    before = terminal.attrs()
    with terminal.spawn([served, *args]) as p:
        out = terminal.read_all()
        assert p.wait(timeout=30) == 0, out
    assert b"tty-ok\r\n" in out and MISSING_PY.encode() not in out, out
    assert terminal.attrs() == before, "the terminal's settings were not restored"


def test_window_size_change_reaches_a_tty_container(engine, served, terminal):
    """The client's SIGWINCH, relayed to the worker, resizes the container's terminal."""
    with terminal.spawn([served, "run", "--rm", "-it", "busybox", "sh", "-c",
                         'stty size; while read x; do stty size; done']) as p:
        terminal.read_until(b"24 80\r\n")
        terminal.resize(30, 100)
        p.send_signal(signal.SIGWINCH)

        def resized():
            terminal.write(b"\r")  # another `stty size`
            terminal._read(0.05)
            return b"30 100\r\n" in terminal.buf
        eventually(resized, what="the new size in the container")
        terminal.write(b"\x04")  # end of input: the loop ends
        assert p.wait(timeout=30) == 0


def test_logs_follow_on_a_terminal_shows_lines_as_they_come(engine, served, boxes, terminal):
    boxes.start("ticker", "while :; do echo tick; sleep 0.1; done", ready="tick")
    with terminal.spawn([served, "logs", "-f", "ticker"]) as p:
        terminal.read_until(b"tick\r\n")
        terminal.read_until(b"tick\r\n")  # a line the container printed after we started
        assert p.poll() is None
        assert '"Running": true' in py("inspect", "ticker").stdout
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=30) == 130


def test_stdout_is_line_buffered_on_a_terminal(engine, served, boxes, terminal):
    """`stop A B` prints A as soon as A is stopped, while it still waits for B (which
    ignores SIGTERM): on a terminal, stdout goes out line by line, as Python's does."""
    boxes.start("first", "trap 'exit 0' TERM; echo up; sleep 300 & wait", ready="up")
    boxes.start("second", "trap '' TERM; echo up; sleep 300 & wait", ready="up")
    with terminal.spawn([served, "stop", "-t", "120", "first", "second"]) as p:
        terminal.read_until(b"first\r\n")
        assert p.poll() is None
        assert '"Running": true' in py("inspect", "second").stdout
        ok(py("kill", "second"))
        terminal.read_until(b"second\r\n")
        assert p.wait(timeout=30) == 0


def test_interrupt_key_reaches_an_interactive_tty_container(engine, served, terminal):
    """With -it our terminal is raw: ^C is a byte for the container's terminal, whose
    shell gets the SIGINT; the client and its worker get nothing."""
    with terminal.spawn([served, "run", "--rm", "-it", "busybox", "sh", "-c",
                         'trap "echo got-int; exit 3" INT; echo ready; '
                         'while :; do sleep 0.05; done']) as p:
        terminal.read_until(b"ready\r\n")
        terminal.write(b"\x03")
        terminal.read_until(b"got-int\r\n")
        assert p.wait(timeout=30) == 3


@pytest.mark.parametrize("args", [["save", "busybox"], ["load"]], ids=["save", "load"])
def test_archive_to_or_from_a_terminal_is_refused_alike(engine, served, args):
    outs = []
    for binary in (served, FASTBOX_PY):
        t = Terminal()
        try:
            with t.spawn([binary, *args]) as p:
                out = t.read_all()
                outs.append((p.wait(timeout=30), out))
        finally:
            t.close()
    assert outs[0] == outs[1]
    assert outs[0][0] == 1 and b"terminal" in outs[0][1], outs[0]


def test_help_on_a_terminal_is_the_python_clis(engine, served):
    """Width from the terminal, colours because it is one: byte for byte the same."""
    outs = []
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    for binary in (served, FASTBOX_PY):
        t = Terminal(rows=40, cols=100)
        try:
            with t.spawn([binary, "--help"], env=env) as p:
                out = t.read_all()
                outs.append((p.wait(timeout=30), out))
        finally:
            t.close()
    assert outs[0] == outs[1]
    assert b"\x1b[" in outs[0][1], "no colours on a terminal: a useless case"


# ------------------------------------------------------------------ signals

# (signals sent to the client one after the other, the code both must end with)
SIGNAL_CASES = [
    ((signal.SIGINT,), 130),
    ((signal.SIGTERM,), -signal.SIGTERM),
    ((signal.SIGHUP,), -signal.SIGHUP),
    ((signal.SIGUSR1,), -signal.SIGUSR1),
    ((signal.SIGUSR2,), -signal.SIGUSR2),
    ((signal.SIGWINCH, signal.SIGINT), 130),  # ignored by default: the command goes on
]


@pytest.mark.parametrize("sigs, code", SIGNAL_CASES,
                         ids=["+".join(signal.Signals(s).name for s in c[0]) for c in SIGNAL_CASES])
def test_signal_acts_on_the_worker_as_on_the_python_cli(engine, served, boxes, sigs, code):
    boxes.start("box", SLEEPER, ready="ready")
    results = []
    for binary in (served, FASTBOX_PY):
        with following([binary, "logs", "-f", "box"]) as (p, out):
            worker = worker_of(p.pid, engine.pid) if binary == served else None
            for sig in sigs:
                p.send_signal(sig)
            results.append(finish(p, out))
        if worker:
            eventually(lambda: not alive(worker), what="the worker to be gone")
    assert results[0] == results[1]
    assert results[0][0] == code, results[0]


def test_exec_runs_in_the_engine_not_a_worker(engine, served, boxes):
    """`exec` without -t is served like `run`: the engine spawns the program itself (no
    fork server, no worker in between), so it starts in a few milliseconds."""
    boxes.start("box", SLEEPER, ready="ready")
    before = container_pids()
    server = fork_server(engine.pid)
    with following([served, "exec", "box", "sh", "-c", "echo ready; exec sleep 300"]) as (p, _):
        [program] = eventually(lambda: list(container_pids() - before),
                               what="the exec'd program")
        assert engine.pid in ancestors(program) and server not in ancestors(program)
        assert children(server) == []
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 128 + signal.SIGTERM


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_signal_during_exec_reaches_the_program(engine, served, boxes, sig):
    """`exec` forwards the signals it gets to the program, as `run` does: the program dies
    of it and exec exits 128+signo, through the engine as through fastbox-py, and nothing
    is left running in the container."""
    boxes.start("box", SLEEPER, ready="ready")
    before = len(container_pids())
    results = []
    for binary in (served, FASTBOX_PY):
        with following([binary, "exec", "box", "sh", "-c", "echo ready; exec sleep 300"]) \
                as (p, out):
            p.send_signal(sig)
            results.append(finish(p, out))
        eventually(lambda: len(container_pids()) == before, what="the exec'd program gone")
    assert results[0] == results[1]
    assert results[0][0] == 128 + sig, results[0]


@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT], ids=["HUP", "INT"])
def test_a_signal_the_client_ignores_stays_ignored(engine, served, boxes, ignored):
    """Under `nohup` (or a script's `cmd &`, for SIGINT) the signal does nothing to the
    command; the SIGTERM after it still ends it."""
    boxes.start("box", SLEEPER, ready="ready")
    name = signal.Signals(ignored).name[3:]
    results = []
    for binary in (served, FASTBOX_PY):
        with following(["sh", "-c", f'trap "" {name}; exec "$@"', "sh", binary, "logs", "-f",
                        "box"]) as (p, out):
            p.send_signal(ignored)
            p.send_signal(signal.SIGTERM)
            results.append(finish(p, out))
    assert results[0] == results[1] == (-signal.SIGTERM, "", "")


@pytest.mark.parametrize("ignored", [None, "HUP", "INT"])
def test_worker_signal_dispositions_are_the_python_clis(engine, served, boxes, ignored):
    """What the worker ignores and blocks is what a `fastbox-py` started the same way
    would (and what a program it starts inherits)."""
    boxes.start("box", SLEEPER, ready="ready")
    wrapper = ["sh", "-c", (f'trap "" {ignored}; ' if ignored else "") + 'exec "$@"', "sh"]
    seen = {}
    for side, binary in (("engine", served), ("python", FASTBOX_PY)):
        with following([*wrapper, binary, "logs", "-f", "box"]) as (p, _):
            pid = worker_of(p.pid, engine.pid) if side == "engine" else p.pid
            seen[side] = {key: signal_mask(pid, key) for key in ("SigIgn", "SigBlk")}
    assert seen["engine"] == seen["python"]


# ------------------------------------------------------------------ dead clients

def test_killed_client_takes_its_worker_down(engine, served, boxes):
    boxes.start("box", SLEEPER, ready="ready")
    with following([served, "logs", "-f", "box"]) as (p, _):
        server = fork_server(engine.pid)
        worker = worker_of(p.pid, engine.pid)
        p.kill()
        p.wait()
    eventually(lambda: not alive(worker), what="the dead client's worker to be killed")
    assert alive(server) and alive(engine.pid)
    eventually(lambda: not children(server), what="the fork server to have no worker")
    r = run_cli("ps", "-q", binary=served)
    assert (r.returncode, r.stderr) == (0, "")


def test_killed_tty_client_takes_its_container_down(engine, served, terminal):
    """A client's hang-up is a ^C to its worker: a `run -t` container is killed and
    removed, as the Python CLI does on ^C."""
    with terminal.spawn([served, "run", "--rm", "-t", "busybox", "sh", "-c",
                         "echo ready; exec sleep 300"]) as p:
        terminal.read_until(b"ready")
        pids = container_pids()
        assert pids
        worker = worker_of(p.pid, engine.pid)
        p.kill()
        p.wait()
    eventually(lambda: not any(alive(pid) for pid in pids), what="the container's processes")
    eventually(lambda: not container_cgroups(), what="the container's cgroups to go")
    eventually(lambda: not alive(worker), what="the worker to be gone")


def test_killed_exec_client_takes_its_process_down(engine, served, boxes):
    boxes.start("box", SLEEPER, ready="ready")
    before = container_pids()
    with following([served, "exec", "box", "sh", "-c",
                    "echo ready; exec sleep 300 >/dev/null 2>&1"]) as (p, _):
        [execd] = container_pids() - before
        p.kill()
        p.wait()
    eventually(lambda: not alive(execd), what="the exec'd process to be killed")
    assert all(alive(pid) for pid in before)


def test_killed_worker_does_not_leave_its_client_hanging(engine, served, boxes):
    """A worker that dies without answering (here SIGKILLed from outside, as the OOM
    killer would): its client ends, with a failure, instead of waiting forever."""
    boxes.start("box", SLEEPER, ready="ready")
    with following([served, "logs", "-f", "box"]) as (p, out):
        os.kill(worker_of(p.pid, engine.pid), signal.SIGKILL)
        code, _, err = finish(p, out)
    assert code in (125, -signal.SIGKILL), (code, err)
    r = run_cli("ps", "-q", binary=served)
    assert (r.returncode, r.stderr) == (0, "")


def test_killed_fork_server_means_the_python_cli_not_a_failure(engine, watched):
    """Without its fork server the engine still serves `run`, and tells the client to run
    any other command itself."""
    server = fork_server(engine.pid)
    os.kill(server, signal.SIGKILL)
    eventually(lambda: not alive(server), what="the fork server to die")
    # (images: ps, like run, is served in the engine's own thread)
    r = run_cli("images", "-q", binary=watched.binary)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert watched.fallbacks() == ["images -q"]
    r = run_cli("run", "--rm", "busybox", "echo", "hi", binary=watched.binary)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert watched.fallbacks() == ["images -q"]
    assert alive(engine.pid)


# ------------------------------------------------------------------ hygiene

MIXED = [
    (["ps", "-a", "-q"], 0),
    (["images", "-q"], 0),
    (["rm", "nosuchcontainer"], 1),
    (["inspect", "busybox"], 0),
    (["--help"], 0),
    (["nosuchcommand"], 1),
    (["exec", "box", "echo", "hi"], 0),
]


def test_many_worker_commands_leave_nothing_behind(engine, served, boxes):
    boxes.start("box", SLEEPER, ready="ready")
    server = fork_server(engine.pid)
    # One exec first: the engine keeps the exec helper's sealed memfd from then on.
    assert run_cli("exec", "box", "true", binary=served).returncode == 0
    idle = {pid: (int(status_field(pid, "Threads")), fd_count(pid) - owner_slots(pid))
            for pid in (engine.pid, server)}
    expected = {tuple(args): _result(py(*args)) for args, _ in MIXED}
    for args, code in MIXED:
        assert expected[tuple(args)][0] == code, expected[tuple(args)]
    batch, rounds = 10, 10
    for n in range(rounds):
        cmds = [MIXED[(n * batch + i) % len(MIXED)][0] for i in range(batch)]
        clients = [subprocess.Popen([served, *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
                   for args in cmds]
        try:
            got = []
            for p in clients:
                out, err = p.communicate(timeout=120)
                got.append((p.returncode, out, err))
        finally:
            for p in clients:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert got == [expected[tuple(args)] for args in cmds]

    def settled():
        # Besides the owner entries a process keeps for its next starts (at most KEEP_FREE).
        return all(int(status_field(pid, "Threads")) <= threads
                   and fd_count(pid) - owner_slots(pid) <= fds
                   and owner_slots(pid) <= owners.KEEP_FREE
                   for pid, (threads, fds) in idle.items())
    eventually(settled, what=f"the engine and fork server back to {idle} (threads, fds)")
    eventually(lambda: not children(server), what="no worker left")
    assert fork_server(engine.pid) == server


def test_engine_stop_ends_the_fork_server(engine, served):
    assert run_cli("ps", binary=served).returncode == 0
    server = fork_server(engine.pid)
    pid = engine.pid
    assert engine.stop().returncode == 0
    engine.reap(pid)
    eventually(lambda: not alive(server), what="the fork server to exit")
    reap_if_ours(server)


def test_killed_engine_takes_the_fork_server_down(engine, served):
    server = fork_server(engine.pid)
    os.kill(engine.pid, signal.SIGKILL)
    engine.reap(engine.pid)
    eventually(lambda: not alive(server), what="the orphaned fork server to exit")
    reap_if_ours(server)
    r = run_cli("ps", binary=served)  # a stale socket: the client would fall back
    assert r.returncode == 125 and MISSING_PY in r.stderr, r.stderr
    assert engine.start()[0] == "started"
    r = run_cli("ps", "-q", binary=served)
    assert (r.returncode, r.stderr) == (0, "")


def test_engine_stop_lets_a_running_worker_finish(engine, served, boxes):
    boxes.start("box", "echo ready; while [ ! -e /go ]; do sleep 0.05; done; echo last; exit 5",
                ready="ready")
    with following([served, "logs", "-f", "box"]) as (p, out):
        worker = worker_of(p.pid, engine.pid)
        pid = engine.pid
        r = engine.stop()
        assert (r.returncode, r.stdout) == (0, f"fastbox engine stopped (pid {pid})\n")
        engine.reap(pid)
        assert alive(worker) and p.poll() is None
        assert engine.start()[0] == "started"  # the worker holds nothing of the old one's
        r = run_cli("ps", "-q", binary=served)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        ok(py("exec", "box", "touch", "/go"))
        assert out.readline() == "last\n"
        assert finish(p, out) == (0, "", "")
    eventually(lambda: not alive(worker), what="the worker to exit")
    reap_if_ours(worker)
    assert py("wait", "box").stdout == "5\n"


# ------------------------------------------------------------------ never served

@pytest.mark.parametrize("args", [["engine", "status"], ["engine", "--help"], ["engine"]],
                         ids=["status", "help", "bare"])
def test_engine_commands_go_to_the_python_cli(engine, served, args):
    r = run_cli(*args, binary=served)
    assert r.returncode == 125 and MISSING_PY in r.stderr, (r.returncode, r.stderr)
    by_client = run_cli(*args)
    assert _result(by_client) == _result(py(*args))
    if args == ["engine", "status"]:
        assert by_client.returncode == 0 and f"(pid {engine.pid})" in by_client.stdout
