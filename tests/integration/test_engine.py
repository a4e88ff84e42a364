"""The warm engine behind the C `fastbox` client: `fastbox run` through the engine must
behave exactly as the Python CLI does (same code, output and errors), the engine must
decline callers unlike itself, forward signals, kill the container of a client that
dies, survive garbage on its socket, and start, report and stop cleanly.

Which implementation served a run is proven, not assumed: `served` is a copy of the C
client alone in a directory, so a fallback (which execs `fastbox-py` beside the binary)
fails loudly; `watched` is a copy beside a `fastbox-py` that notes each fallback in a
file before it execs the real Python CLI.
"""
import array
import json
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from cgroup_pids import pids_in
from waiting import eventually
from fastbox.state import owners

pytestmark = pytest.mark.engine  # conftest: no FASTBOX_NO_ENGINE here

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
FASTBOX_PY = FASTBOX + "-py"
PROBE = "fastbox-test/probe:latest"
MISSING_PY = "cannot run"  # what the served-only client says if it falls back


def run_cli(*args, binary=FASTBOX, env=None, cwd=None, input=None, timeout=60):
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, input=input, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


@contextlib.contextmanager
def running(argv, **kwargs):
    """A client process, killed if still there and reaped when the block ends."""
    p = subprocess.Popen(argv, **kwargs)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def alive(pid):
    """True unless pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def ancestors(pid):
    out = []
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rpartition(")")[2].split()[1])
        except OSError:
            break
        out.append(pid)
    return out


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def owner_slots(pid):
    """The fds of pid that hold its owner entries (kept for reuse, at most KEEP_FREE)."""
    fds = f"/proc/{pid}/fd"
    slots = 0
    for fd in os.listdir(fds):
        try:
            slots += f"/{owners.OWNERS}/" in os.readlink(os.path.join(fds, fd))
        except FileNotFoundError:
            pass
    return slots


def container_cgroups():
    """Every cgroup directory below this session's parent, in every hierarchy."""
    parent = os.environ["FASTBOX_CGROUP_PARENT"]
    found = []
    for top in [f"/sys/fs/cgroup/{parent}"] + [os.path.join("/sys/fs/cgroup", h, parent)
                                                for h in os.listdir("/sys/fs/cgroup")]:
        if os.path.isdir(top):
            for dirpath, dirnames, _ in os.walk(top):
                found.extend(os.path.join(dirpath, d) for d in dirnames)
    return found


def container_pids():
    return pids_in(container_cgroups())


# ------------------------------------------------------------------ fixtures

class Engine:
    """`fastbox engine start|stop|status` for this test's FASTBOX_RUN."""

    def __init__(self, run):
        self.run = run
        self.sock = os.path.join(run, "engine.sock")
        self.pidfile = os.path.join(run, "engine.pid")
        self.pids = []  # every engine this test started, to reap them all

    @property
    def pid(self):
        return self.pids[-1]

    def start(self):
        r = run_cli("engine", "start")
        assert r.returncode == 0, r.stderr
        m = re.fullmatch(r"fastbox engine (started|already running) \(pid (\d+)\)\n", r.stdout)
        assert m, r.stdout
        pid = int(m[2])
        if pid not in self.pids:
            self.pids.append(pid)
        return m[1], pid

    def stop(self):
        return run_cli("engine", "stop")

    def status(self):
        return run_cli("engine", "status")

    def reap(self, pid, timeout=30.0):
        """The engine was started by a CLI that exited: it is our child (we are a child
        subreaper). Waits for it to be gone and reaps it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
                if not os.path.exists(f"/proc/{pid}"):
                    return
            if done == pid:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"engine {pid} still there")
            time.sleep(0.01)


@pytest.fixture
def engine_ctl(fb_env, busybox):
    """An Engine not yet started; whatever runs at the end is stopped and reaped, and its
    socket and pidfile must be gone."""
    eng = Engine(fb_env.run)
    yield eng
    r = eng.stop()
    for pid in eng.pids:
        eng.reap(pid)
    assert r.returncode == 0, r.stderr
    for pid in eng.pids:
        assert not os.path.exists(f"/proc/{pid}"), f"engine {pid} is still there"
    assert not os.path.exists(eng.sock), "engine.sock left behind"
    assert not os.path.exists(eng.pidfile), "engine.pid left behind"
    log = os.path.join(eng.run, "engine.log")
    text = open(log).read() if os.path.exists(log) else ""
    assert "Traceback" not in text and "engine error" not in text, text


@pytest.fixture
def engine(engine_ctl, probe):
    what, _ = engine_ctl.start()
    assert what == "started"
    return engine_ctl


@pytest.fixture
def served(tmp_path):
    """A copy of the C client with no fastbox-py beside it: it can only be served."""
    d = tmp_path / "served-only"
    d.mkdir()
    shutil.copy2(FASTBOX, d / "fastbox")
    return str(d / "fastbox")


@pytest.fixture
def watched(tmp_path):
    """A copy of the C client whose fastbox-py notes each fallback, then runs the real one."""
    d = tmp_path / "watched"
    d.mkdir()
    shutil.copy2(FASTBOX, d / "fastbox")
    marker = d / "fallbacks"
    script = d / "fastbox-py"
    script.write_text(f'#!/bin/sh\necho "$*" >> {marker}\nexec {FASTBOX_PY} "$@"\n')
    script.chmod(0o755)

    def fallbacks():
        return marker.read_text().splitlines() if marker.exists() else []

    return SimpleNamespace(binary=str(d / "fastbox"), fallbacks=fallbacks)


# ------------------------------------------------------------------ parity

# (id, args after `fastbox`, extra environment, stdin, expected code, expected stdout or
# None). IMG is the probe image, TMP the test's tmp dir (also the client's cwd).
PARITY = [
    ("echo", ["run", "--rm", "IMG", "echo", "hi"], {}, None, 0, "hi\n"),
    ("exit-code", ["run", "--rm", "IMG", "/probe", "exit", "7"], {}, None, 7, ""),
    ("stderr", ["run", "--rm", "IMG", "sh", "-c", "echo out; echo err >&2; exit 2"], {}, None,
     2, "out\n"),
    ("not-found", ["run", "--rm", "IMG", "no-such-command"], {}, None, 127, ""),
    ("no-such-path", ["run", "--rm", "IMG", "/no/such/file"], {}, None, 127, ""),
    ("not-executable", ["run", "--rm", "IMG", "/etc/not-executable"], {}, None, 126, ""),
    ("unknown-image", ["run", "--rm", "fastbox-test/unknown-image:nope", "true"], {}, None, 125,
     ""),
    ("bad-memory", ["run", "--rm", "--memory", "lots", "IMG", "true"], {}, None, 125, ""),
    ("detach-bad-memory", ["run", "-d", "--memory", "lots", "IMG", "true"], {}, None, 125, ""),
    ("detach-unknown-image", ["run", "-d", "fastbox-test/unknown-image:nope"], {}, None, 125, ""),
    ("unknown-flag", ["run", "--rm", "--bogus-flag", "IMG", "true"], {}, None, 125, ""),
    ("no-image", ["run", "--rm"], {}, None, 125, ""),
    ("flag-needs-arg", ["run", "--cpus"], {}, None, 125, ""),
    ("relative-volume", ["run", "--rm", "-v", "rel/x:/x", "IMG", "true"], {}, None, 125, ""),
    ("bad-user", ["run", "--rm", "-u", "no-such-user", "IMG", "true"], {}, None, 125, ""),
    ("bad-env", ["run", "--rm", "-e", "BAD KEY=1", "IMG", "true"], {}, None, 125, ""),
    ("env", ["run", "--rm", "-e", "A=1", "-eB=two words", "IMG", "sh", "-c", 'echo "$A/$B"'],
     {}, None, 0, "1/two words\n"),
    ("env-from-caller", ["run", "--rm", "-e", "PARITY_K", "-e", "PARITY_UNSET", "IMG", "sh", "-c",
                         'echo "$PARITY_K/${PARITY_UNSET-unset}"'],
     {"PARITY_K": "from the caller"}, None, 0, "from the caller/unset\n"),
    ("env-file-relative", ["run", "--rm", "--env-file", "vars.env", "IMG", "sh", "-c",
                           'echo "$FILE_A/$FILE_B"'], {}, None, 0, "1/two words\n"),
    ("workdir", ["run", "--rm", "-w", "/work/dir", "IMG", "pwd"], {}, None, 0, "/work/dir\n"),
    ("user", ["run", "--rm", "-u", "1000:1000", "IMG", "/probe", "uid"], {}, None, 0,
     "uid 1000\ngid 1000\ngroups 1000\n"),
    ("hostname", ["run", "--rm", "--hostname", "parity", "IMG", "hostname"], {}, None, 0,
     "parity\n"),
    ("read-only", ["run", "--rm", "--read-only", "--tmpfs", "/t", "IMG", "sh", "-c",
                   "/probe write /x; /probe write /t/x"], {}, None, 0, "EROFS\nok\n"),
    ("volume", ["run", "--rm", "-v", "TMP/vol:/vol:ro", "IMG", "sh", "-c",
                "cat /vol/f; /probe write /vol/g; true"], {}, None, 0, "in the volume\nEROFS\n"),
    ("stdin", ["run", "--rm", "-i", "IMG", "sh", "-c", "tr a-z A-Z"], {}, "piped in\n", 0,
     "PIPED IN\n"),
    ("no-stdin", ["run", "--rm", "IMG", "cat"], {}, "not for it\n", 0, ""),
    ("entrypoint", ["run", "--rm", "--entrypoint", "/probe", "IMG", "exit", "3"], {}, None, 3, ""),
    ("args-not-options", ["run", "--rm", "IMG", "echo", "--rm", "-e", "X=1"], {}, None, 0,
     "--rm -e X=1\n"),
    ("network-none", ["run", "--rm", "--network", "none", "IMG", "sh", "-c", "ip -o link | wc -l"], {}, None, 0,
     "1\n"),
    ("network-host", ["run", "--rm", "--network", "host", "IMG", "readlink",
                      "/proc/self/ns/net"], {}, None, 0, None),
    ("signals-reset", ["run", "--rm", "IMG", "/probe", "sigs"], {}, None, 0,
     "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"),
    ("named", ["run", "--rm", "--name", "parity", "IMG", "true"], {}, None, 0, ""),
    ("help", ["run", "--help"], {}, None, 0, None),
]


def _substitute(args, tmp):
    return [a.replace("IMG", PROBE).replace("TMP", tmp) for a in args]


def _parity_setup(tmp_path):
    (tmp_path / "vars.env").write_text("# a comment\nFILE_A=1\n\nFILE_B=two words\n")
    (tmp_path / "vol").mkdir(exist_ok=True)
    (tmp_path / "vol" / "f").write_text("in the volume\n")


@pytest.fixture(scope="module")
def parity_engine(tmp_path_factory, session_dirs, probe):
    """One engine for the whole parity table (each case starting its own would cost most
    of the table's time), with its own FASTBOX_ROOT and FASTBOX_RUN; the cases' clients
    use the same. Started before any test's leak check takes its `before`."""
    base = tmp_path_factory.mktemp("parity-engine")
    (base / "root").mkdir()
    (base / "run").mkdir()
    os.symlink(session_dirs.images, base / "root" / "images")
    # FASTBOX_CONFIG too: each test sets its own, and a client whose FASTBOX_* settings
    # differ from the engine's is (rightly) told to run the Python CLI.
    settings = {"FASTBOX_ROOT": str(base / "root"), "FASTBOX_RUN": str(base / "run"),
                "FASTBOX_CGROUP_PARENT": session_dirs.cgroup_parent,
                "FASTBOX_CONFIG": str(base / "fastbox-config.json")}
    env = {**os.environ, **settings}
    r = run_cli("engine", "start", env=env)
    assert r.returncode == 0, r.stderr
    eng = Engine(settings["FASTBOX_RUN"])
    eng.pids.append(int(re.fullmatch(r"fastbox engine started \(pid (\d+)\)\n", r.stdout)[1]))
    yield SimpleNamespace(settings=settings, engine=eng)
    r = run_cli("engine", "stop", env=env)
    eng.reap(eng.pid)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(eng.sock) and not os.path.exists(eng.pidfile)


@pytest.mark.parametrize("args, extra_env, stdin, code, stdout",
                         [p[1:] for p in PARITY], ids=[p[0] for p in PARITY])
def test_engine_and_python_cli_agree(parity_engine, served, tmp_path, args, extra_env, stdin,
                                     code, stdout):
    """One test, two implementations: the engine (through a client that cannot fall back)
    and the Python CLI give the same exit code, stdout and stderr."""
    _parity_setup(tmp_path)
    args = _substitute(args, str(tmp_path))
    env = {**os.environ, **parity_engine.settings, **extra_env}
    by_engine = run_cli(*args, binary=served, env=env, cwd=tmp_path, input=stdin)
    by_python = run_cli(*args, env={**env, "FASTBOX_NO_ENGINE": "1"}, cwd=tmp_path, input=stdin)
    assert MISSING_PY not in by_engine.stderr, by_engine.stderr
    assert (by_engine.returncode, by_engine.stdout, by_engine.stderr) == \
        (by_python.returncode, by_python.stdout, by_python.stderr)
    assert by_engine.returncode == code, by_engine.stderr
    if stdout is not None:
        assert by_engine.stdout == stdout
    if code >= 125:
        assert by_engine.stderr.startswith("fastbox: "), by_engine.stderr
    assert alive(parity_engine.engine.pid)


@pytest.fixture
def engine_with_secret(engine_ctl, probe):
    """An engine started with ENGINE_ONLY in its environment, which its clients lack."""
    r = run_cli("engine", "start", env={**os.environ, "ENGINE_ONLY": "engine secret"})
    assert r.returncode == 0, r.stderr
    engine_ctl.pids.append(int(re.fullmatch(r"fastbox engine started \(pid (\d+)\)\n",
                                            r.stdout)[1]))
    return engine_ctl


def test_env_key_never_comes_from_the_engine(engine_with_secret, served):
    r = run_cli("run", "--rm", "-e", "ENGINE_ONLY", "-e", "FROM_CALLER", PROBE, "sh", "-c",
                'echo "${ENGINE_ONLY-unset}/${FROM_CALLER-unset}"', binary=served,
                env={**os.environ, "FROM_CALLER": "caller's"})
    assert (r.returncode, r.stdout, r.stderr) == (0, "unset/caller's\n", "")


def test_env_file_bare_key_comes_from_the_caller(engine_with_secret, served, tmp_path):
    """An --env-file line `KEY` copies the caller's KEY, as `-e KEY` does; the engine's own
    environment must never reach a container."""
    (tmp_path / "bare.env").write_text("FROM_CALLER\nENGINE_ONLY\n")
    args = ["run", "--rm", "--env-file", "bare.env", PROBE, "sh", "-c",
            'echo "${FROM_CALLER-unset}/${ENGINE_ONLY-unset}"']
    caller = {**os.environ, "FROM_CALLER": "caller's"}
    by_python = run_cli(*args, env={**caller, "FASTBOX_NO_ENGINE": "1"}, cwd=tmp_path)
    assert (by_python.returncode, by_python.stdout) == (0, "caller's/unset\n")
    by_engine = run_cli(*args, binary=served, env=caller, cwd=tmp_path)
    assert (by_engine.returncode, by_engine.stdout, by_engine.stderr) == (0, "caller's/unset\n", "")


def test_missing_relative_env_file_error_is_the_same(engine, served, tmp_path):
    args = ["run", "--rm", "--env-file", "missing.env", PROBE, "true"]
    by_engine = run_cli(*args, binary=served, cwd=tmp_path)
    by_python = run_cli(*args, env={**os.environ, "FASTBOX_NO_ENGINE": "1"}, cwd=tmp_path)
    assert by_python.returncode == 125 and "missing.env" in by_python.stderr
    assert (by_engine.returncode, by_engine.stderr) == (by_python.returncode, by_python.stderr)


def test_relative_env_file_from_a_deleted_cwd(engine, served, tmp_path):
    """From a deleted working directory a relative --env-file cannot be read, whoever
    runs it; the engine must not find it from its own working directory instead."""
    from_root = os.path.relpath(tmp_path / "vars.env", "/")
    (tmp_path / "vars.env").write_text("FOUND=yes\n")
    results = []
    for binary, extra in ((served, {}), (FASTBOX, {"FASTBOX_NO_ENGINE": "1"})):
        (tmp_path / "gone").mkdir()
        results.append(subprocess.run(
            ["sh", "-c", 'cd gone && rmdir ../gone && exec "$@"', "sh", binary, "run", "--rm",
             "--env-file", from_root, PROBE, "sh", "-c", 'echo "${FOUND-unset}"'],
            cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
            env={**os.environ, **extra}))
    by_engine, by_python = results
    assert by_python.returncode == 125, by_python
    assert (by_engine.returncode, by_engine.stdout) == (by_python.returncode, by_python.stdout)


def test_engine_runs_the_container_as_its_child(engine, served):
    """The container's processes descend from the engine, not from the client."""
    with running([served, "run", "--rm", "-i", PROBE, "sh", "-c",
                  "echo ready; read x; true"],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "ready\n"
        pids = container_pids()
        assert pids, "no process in the container's cgroup"
        for pid in pids:
            chain = ancestors(pid)
            assert engine.pid in chain and p.pid not in chain, (pid, chain)
        assert os.path.realpath(f"/proc/{p.pid}/exe") == os.path.realpath(served)
        p.stdin.close()
        assert p.wait(timeout=30) == 0


def test_served_container_gets_only_the_clients_fds(engine, served):
    """Nothing of the engine (listener, epoll, other connections) leaks into a container."""
    r = run_cli("run", "--rm", PROBE, "/probe", "fds", binary=served)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    dirfd = int(lines[0].split()[1])
    fds = sorted(int(line.split()[1]) for line in lines[1:] if int(line.split()[1]) != dirfd)
    assert fds == [0, 1, 2], r.stdout


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_closed_stdio_fd_goes_as_dev_null(engine, served, fd):
    """The client sends /dev/null for a closed fd 0, 1 or 2 (never its engine connection).
    Read from the host, in the shell's `sleep`: the shell itself moves its fds about while
    it redirects its `echo` (caught mid-way when the fork server, warming up right after
    `engine start`, takes a CPU); its child has them as the shell was given them."""
    out = 2 if fd == 1 else 1
    p = subprocess.Popen(["sh", "-c", f'exec {fd}<&-; exec "$@"', "sh", served, "run", "--rm",
                          "-i", PROBE, "sh", "-c",
                          f'trap "exit 0" TERM; echo ready >&{out}; sleep 300 & wait'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert (p.stderr if out == 2 else p.stdout).readline() == b"ready\n"
        def the_sleep():
            pids = container_pids()
            [init] = [pid for pid in pids if ancestors(pid)[0] not in pids]
            return [pid for pid in pids if ancestors(pid)[0] == init]
        [sleep] = eventually(the_sleep, what="the container's sleep")
        link = os.readlink(f"/proc/{sleep}/fd/{fd}")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
    assert link == "/dev/null"
    assert p.returncode == 0


def test_timings_through_the_engine(engine, served):
    r = run_cli("run", "--rm", "--timings", PROBE, "echo", "out", binary=served)
    assert (r.returncode, r.stdout) == (0, "out\n"), r.stderr
    phases = dict(line.split() for line in r.stderr.splitlines()[1:])
    for key in ("image", "cloned", "exec", "exited", "total"):
        assert key in phases, r.stderr
    assert float(phases["total"]) >= float(phases["exited"])


def test_kept_container_through_the_engine(engine, served):
    """A run without --rm is recorded in the caller's FASTBOX_ROOT, as the CLI would."""
    r = run_cli("run", "--name", "kept", PROBE, "sh", "-c", "exit 3", binary=served)
    assert r.returncode == 3, r.stderr
    ps = run_cli("ps", "-a")
    rows = [line for line in ps.stdout.splitlines()[1:] if line.split()[-1] == "kept"]
    assert len(rows) == 1 and "Exited (3) " in rows[0], ps.stdout
    assert run_cli("rm", "kept").returncode == 0


# ------------------------------------------------------------------ signals

@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 3), (signal.SIGUSR1, 5),
                                       (signal.SIGINT, 6)])
def test_client_signal_reaches_the_container(engine, served, sig, code):
    name = signal.Signals(sig).name[3:]
    with running([served, "run", "--rm", PROBE, "sh", "-c",
                  f'trap "exit {code}" {name}; echo ready; sleep 30 & wait'],
                 stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) as p:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(sig)
        assert p.wait(timeout=30) == code


def test_killed_client_takes_its_container_down(engine, served):
    p = subprocess.Popen([served, "run", "--rm", PROBE, "sh", "-c", "echo ready; sleep 300"],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        pids = container_pids()
        assert pids and all(engine.pid in ancestors(pid) for pid in pids)
        assert container_cgroups()
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    eventually(lambda: not any(alive(pid) for pid in pids), what="the container's processes")
    eventually(lambda: not container_cgroups(), what="the container's cgroups to go")
    assert alive(engine.pid)
    assert run_cli("run", "--rm", PROBE, "echo", "still serving", binary=served).stdout == \
        "still serving\n"


# ------------------------------------------------------------------ fallbacks

def test_no_engine_runs_through_the_python_cli(fb_env, probe, watched):
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert len(watched.fallbacks()) == 1


def test_engine_serves_without_falling_back(engine, watched):
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert watched.fallbacks() == []
    assert run_cli("ps", "-a", binary=watched.binary).returncode == 0
    assert watched.fallbacks() == []  # any other command: served too (by a worker)
    assert run_cli("engine", "status", binary=watched.binary).returncode == 0
    assert watched.fallbacks() == ["engine status"]  # but never `fastbox engine ...`


def test_other_fastbox_root_falls_back(engine, watched, fb_env, tmp_path):
    """A caller with another FASTBOX_ROOT is not the engine's: its container is run, and
    recorded, by the Python CLI in the caller's root."""
    other = tmp_path / "other-root"
    other.mkdir()
    os.symlink(os.readlink(os.path.join(fb_env.root, "images")), other / "images")
    env = {**os.environ, "FASTBOX_ROOT": str(other)}
    r = run_cli("run", "--name", "elsewhere", PROBE, "sh", "-c", "exit 4", binary=watched.binary,
                env=env)
    assert r.returncode == 4, r.stderr
    assert len(watched.fallbacks()) == 1
    assert "elsewhere" in run_cli("ps", "-a", env=env).stdout
    assert "elsewhere" not in run_cli("ps", "-a").stdout
    assert run_cli("rm", "elsewhere", env=env).returncode == 0


def test_extra_fastbox_variable_falls_back(engine, watched):
    env = {**os.environ, "FASTBOX_SOMETHING_ELSE": "1"}
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert len(watched.fallbacks()) == 1


def test_client_in_another_mount_namespace_falls_back(engine, watched):
    r = subprocess.run(["unshare", "-m", "--propagation", "private", watched.binary, "run", "--rm",
                        PROBE, "echo", "hi"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    assert len(watched.fallbacks()) == 1


def test_client_in_another_net_namespace_gets_its_own_host_network(engine, watched):
    """--network host means the caller's network: the engine's would be wrong."""
    r = subprocess.run(["unshare", "-n", "sh", "-c",
                        'readlink /proc/self/ns/net; exec "$@"', "sh", watched.binary, "run",
                        "--rm", "--network", "host", PROBE, "readlink", "/proc/self/ns/net"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    client_ns, container_ns = r.stdout.splitlines()
    assert container_ns == client_ns
    assert container_ns != os.readlink(f"/proc/{engine.pid}/ns/net")
    assert len(watched.fallbacks()) == 1


def test_client_with_fewer_capabilities_falls_back(engine, watched):
    """A caller without CAP_NET_RAW in its bounding set cannot give it to a container;
    the engine, which has it, must not do so on its behalf."""
    net_raw = 1 << 13
    r = subprocess.run(["setpriv", "--bounding-set=-net_raw", watched.binary, "run", "--rm",
                        PROBE, "grep", "CapBnd", "/proc/self/status"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not int(r.stdout.split()[1], 16) & net_raw
    assert len(watched.fallbacks()) == 1


def test_client_with_another_ulimit_falls_back(engine, watched):
    """A shell's `ulimit -n` is the container's when the CLI runs it; the engine's is not."""
    r = subprocess.run(["prlimit", "--nofile=321:321", watched.binary, "run", "--rm", PROBE, "sh",
                        "-c", "ulimit -n"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "321\n", "")
    assert len(watched.fallbacks()) == 1


def test_client_in_its_own_uts_namespace_is_served(engine, watched):
    """A container's uts namespace is new, whatever the caller's: no need to fall back."""
    r = subprocess.run(["unshare", "-u", "sh", "-c", 'hostname changed-by-caller; exec "$@"', "sh",
                        watched.binary, "run", "--rm", "-h", "box", PROBE, "hostname"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "box\n", "")
    assert watched.fallbacks() == []


def test_tty_is_served(engine, watched):
    """`run -t` is served too (by a worker of the engine's fork server, which relays the
    terminal): on a terminal, the container gets one, and nothing falls back."""
    import pty
    master, slave = pty.openpty()
    try:
        with running([watched.binary, "run", "--rm", "-t", PROBE, "sh", "-c",
                      "test -t 0 && test -t 1 && echo tty-ok"],
                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True) as p:
            os.close(slave)
            slave = -1
            out = b""
            while True:  # until EIO: nobody holds the terminal any more
                assert select.select([master], [], [], 30)[0], out
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            assert p.wait(timeout=30) == 0, out
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert out.replace(b"\r", b"") == b"tty-ok\n", out  # our terminal (cooked) adds a \r
    assert watched.fallbacks() == []


def test_detached_through_the_engine_outlives_it(engine, served):
    """run -d is served; the container's monitor is not the engine's (nor its
    descendant), so the container keeps running after `engine stop`."""
    r = run_cli("run", "-d", "--name", "bg", "-e", "FROM_CALLER", PROBE, "sh", "-c",
                'echo "$FROM_CALLER"; /probe fds; exec sleep 300', binary=served,
                env={**os.environ, "FROM_CALLER": "caller's"})
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", r.stdout), r.stdout
    try:
        logs = eventually(lambda: (lambda o: o if "fd 2" in o else "")(
            run_cli("logs", "bg").stdout), what="the container's output in its log")
        # Once `/probe fds` is gone from the cgroup: only the shell, exec'd into sleep.
        pids = eventually(lambda: (lambda p: p if len(p) == 1 else None)(container_pids()),
                          what="the detached container's one process")
        assert all(engine.pid not in ancestors(pid) for pid in pids)
        lines = logs.splitlines()
        assert lines[0] == "caller's"
        dirfd = int(lines[1].split()[1])
        assert sorted(int(line.split()[1]) for line in lines[2:]
                      if int(line.split()[1]) != dirfd) == [0, 1, 2], logs

        pid = engine.pid
        assert engine.stop().returncode == 0
        engine.reap(pid)
        assert all(alive(p) for p in pids)
        ps = run_cli("ps").stdout
        assert any(line.split()[-1] == "bg" for line in ps.splitlines()[1:]), ps
    finally:
        assert run_cli("rm", "-f", "bg").returncode == 0
    eventually(lambda: not container_cgroups(), what="the container's cgroups to go")


def test_no_engine_variable_skips_the_engine(engine, watched):
    env = {**os.environ, "FASTBOX_NO_ENGINE": "1"}
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary, env=env)
    assert (r.returncode, r.stdout) == (0, "hi\n")
    assert len(watched.fallbacks()) == 1


def test_huge_environment_falls_back(engine, watched):
    """A request too big for one message (3 x 100 KB of environment) goes to the CLI."""
    env = {**os.environ, **{f"BIG_{i}": "x" * 100_000 for i in range(3)}}
    r = run_cli("run", "--rm", "-e", "BIG_2", PROBE, "sh", "-c", 'echo "${#BIG_2}"',
                binary=watched.binary, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "100000\n", "")
    assert len(watched.fallbacks()) == 1


SECCOMP_ALLOW_ALL = """
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000))  # RET ALLOW
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(1, ctypes.addressof(insn))
if libc.prctl(22, 2, ctypes.byref(prog), 0, 0):  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit("seccomp: errno %d" % ctypes.get_errno())
os.execv(sys.argv[1], sys.argv[1:])
"""

CALLER_ATTRIBUTES = [
    ("nice", ["nice", "-n", "7"], "cut -d' ' -f19 /proc/self/stat"),
    ("sched-policy", ["chrt", "--batch", "0"], "grep ^policy /proc/self/sched"),
    ("oom_score_adj", ["choom", "-n", "300", "--"], "cat /proc/self/oom_score_adj"),
    ("cpu-affinity", ["taskset", "-c", "0"], "grep Cpus_allowed_list /proc/self/status"),
    ("seccomp-filter", [sys.executable, "-c", SECCOMP_ALLOW_ALL],
     "grep Seccomp_filters /proc/self/status"),
]


@pytest.mark.parametrize("wrapper, script", [a[1:] for a in CALLER_ATTRIBUTES],
                         ids=[a[0] for a in CALLER_ATTRIBUTES])
def test_caller_process_attributes_reach_the_container(engine, wrapper, script):
    """What a container inherits from whoever starts it is the caller's, engine or not
    (served with it applied, or declined): here a wrapper sets the caller's."""
    if wrapper[0] == "taskset" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no narrower affinity to give the caller")
    if wrapper[0] == "chrt" and not os.path.exists("/proc/self/sched"):
        pytest.skip("no /proc/<pid>/sched in this kernel")
    outs = []
    for wrap, extra in ((wrapper, {}), (wrapper, {"FASTBOX_NO_ENGINE": "1"}), ([], {})):
        r = subprocess.run([*wrap, FASTBOX, "run", "--rm", PROBE, "sh", "-c", script],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                           env={**os.environ, **extra})
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    by_engine, by_python, unwrapped = outs
    assert by_python != unwrapped, "the wrapper changed nothing the container sees"
    assert by_engine == by_python


# ------------------------------------------------------------------ lifecycle

def test_status_start_twice_stop_twice(engine_ctl, probe):
    r = engine_ctl.status()
    assert (r.returncode, r.stdout) == (1, "fastbox engine is not running\n")
    assert engine_ctl.start()[0] == "started"
    pid = engine_ctl.pid
    r = engine_ctl.status()
    assert r.returncode == 0 and f"(pid {pid})" in r.stdout, r.stdout
    assert engine_ctl.start() == ("already running", pid)
    found = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_engine(int(p))]
    # The engine's fork server has its command line and environment: it is its child.
    engines = [p for p in found if ancestors(p)[0] not in found]
    assert engines == [pid]
    assert all(ancestors(p)[0] == pid for p in found if p != pid), found
    assert os.path.exists(engine_ctl.sock)
    with open(engine_ctl.pidfile) as f:
        assert int(f.read().split()[0]) == pid

    r = engine_ctl.stop()
    assert (r.returncode, r.stdout) == (0, f"fastbox engine stopped (pid {pid})\n")
    engine_ctl.reap(pid)
    assert not os.path.exists(engine_ctl.sock) and not os.path.exists(engine_ctl.pidfile)
    assert engine_ctl.status().returncode == 1
    r = engine_ctl.stop()
    assert (r.returncode, r.stdout) == (0, "fastbox engine is not running\n")


def _is_engine(pid):
    """An engine process serving this test's FASTBOX_RUN."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"fastbox.engine" not in f.read():
                return False
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return False
    return f"FASTBOX_RUN={os.environ['FASTBOX_RUN']}".encode() in env and alive(pid)


def test_killed_engine_leaves_a_stale_socket_that_clients_survive(engine, watched):
    old = engine.pid
    os.kill(old, signal.SIGKILL)
    engine.reap(old)
    assert os.path.exists(engine.sock)  # stale: nobody listens
    assert engine.status().returncode == 1
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    # It ran in the Python CLI, and started a new engine by itself (the killed one did
    # not leave engine.off), which replaced the stale socket.
    assert sorted(watched.fallbacks()) == ["engine serve --auto",
                                           f"run --rm {PROBE} echo hi"]
    assert engine.start()[0] in ("started", "already running") and engine.pid != old
    r = run_cli("run", "--rm", PROBE, "echo", "hi", binary=watched.binary)
    assert (r.returncode, r.stdout) == (0, "hi\n")
    assert len(watched.fallbacks()) == 2  # served by the new engine


def test_stop_terminates_running_containers(engine, served):
    """`engine stop` gives a running container SIGTERM: its trap's code reaches the client."""
    with running([served, "run", "--rm", PROBE, "sh", "-c",
                  'trap "exit 4" TERM; echo ready; sleep 30 & wait'],
                 stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) as p:
        assert p.stdout.readline() == "ready\n"
        pid = engine.pid
        r = engine.stop()
        assert (r.returncode, r.stdout) == (0, f"fastbox engine stopped (pid {pid})\n")
        assert p.wait(timeout=30) == 4
    engine.reap(pid)
    assert not container_cgroups()


# ------------------------------------------------------------------ load and robustness

def _request(args, cwd="/"):
    """A request as the C client builds it, with this process's environment."""
    env = [f"{k}={v}" for k, v in os.environ.items()]
    fields = ["FBCLI1", cwd, str(len(args)), *args, str(len(env)), *env]
    return b"".join(f.encode() + b"\0" for f in fields)


def _blocked_in_recv(pid):
    """The process is asleep waiting for a message on a socket (the engine's reply)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read() == "__skb_wait_for_more_packets"
    except OSError:
        return False


def test_stopping_engine_tells_waiting_clients_to_fall_back(engine, watched):
    """A client whose request is queued when the engine stops (here: sent while the
    engine was SIGSTOPped) is told F and runs the Python CLI, not reset (125)."""
    if not os.path.exists("/proc/self/wchan"):
        pytest.skip("no /proc/<pid>/wchan to see the client wait")
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        p = subprocess.Popen([watched.binary, "run", "--rm", PROBE, "echo", "hi"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
        eventually(lambda: _blocked_in_recv(p.pid), what="the client to wait for the engine")
        os.kill(engine.pid, signal.SIGTERM)
    finally:
        os.kill(engine.pid, signal.SIGCONT)
    out, err = p.communicate(timeout=60)
    engine.reap(engine.pid)
    assert (p.returncode, out, err) == (0, "hi\n", "")
    assert len(watched.fallbacks()) == 1


def test_stopping_engine_answer_survives_a_late_reader(engine):
    """As above, but the client reads only after the engine has gone: the F must still be
    there for it (a client preempted between its send and its recv)."""
    null = os.open("/dev/null", os.O_RDWR)
    os.kill(engine.pid, signal.SIGSTOP)
    try:
        conn = _send(engine.sock, _request(["fastbox", "run", "--rm", PROBE, "true"]),
                     (null, null, null))
        os.kill(engine.pid, signal.SIGTERM)
    finally:
        os.kill(engine.pid, signal.SIGCONT)
        os.close(null)
    engine.reap(engine.pid)
    with conn:
        try:
            reply = conn.recv(16)
        except ConnectionResetError:
            reply = b"(reset)"
    assert reply == b"F" or reply[:1] == b"X", reply  # declined, or served before the stop


def _settled_threads_and_fds(pid, threads, fds):
    """Waits until the engine is back to at most threads threads and fds fds, besides the
    owner entries it keeps for its next starts (at most KEEP_FREE of them)."""
    eventually(lambda: int(status_field(pid, "Threads")) <= threads
               and fd_count(pid) - owner_slots(pid) <= fds
               and owner_slots(pid) <= owners.KEEP_FREE,
               what=f"the engine to go back to {threads} threads and {fds} fds")


def spare_made(pid):
    """Whether pid holds a network namespace besides its own: the engine's spare."""
    own = os.readlink(f"/proc/{pid}/ns/net")
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return any(link.startswith("net:[") and link != own for link in links)


@pytest.fixture
def idle_engine(engine_ctl, probe):
    """A started engine, with its threads and fds counted once it is idle. The bridge
    first: the engine then keeps a spare with its veth (its namespace and a netlink socket
    inside) from its start, as it does once it has served a bridge run in its own threads.
    Started before the bridge existed, it kept a plain one (one fd fewer), and a count
    depended on which runs its threads served; counted before its worker had made the
    spare, one fd fewer again."""
    r = run_cli("run", "--rm", PROBE, "true", env={**os.environ, "FASTBOX_NO_ENGINE": "1"})
    assert r.returncode == 0, r.stderr
    what, _ = engine_ctl.start()
    assert what == "started"
    eventually(lambda: spare_made(engine_ctl.pid), what="the engine's spare namespace")
    threads = int(status_field(engine_ctl.pid, "Threads"))  # idle: no request served yet
    return engine_ctl, threads, fd_count(engine_ctl.pid)


def test_many_clients_at_once(idle_engine, served):
    engine, threads, fds = idle_engine
    n = 50
    clients = [subprocess.Popen([served, "run", "--rm", PROBE, "sh", "-c", f"echo {i}; exit {i}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL) for i in range(n)]
    results = []
    try:
        for p in clients:
            out, err = p.communicate(timeout=120)
            results.append((p.returncode, out, err))
    finally:
        for p in clients:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert results == [(i, b"%d\n" % i, b"") for i in range(n)]
    _settled_threads_and_fds(engine.pid, threads, fds)
    assert not container_cgroups()


def _send(sock_path, payload, fds=()):
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.settimeout(30)
    conn.connect(sock_path)
    if fds:
        conn.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    elif payload:
        conn.send(payload)
    return conn


def test_malformed_requests_do_not_hurt_the_engine(idle_engine, served):
    """Garbage, a request without fds, bad counts, a signal before any request, a silent
    connection: each is dropped (the connection closed), and the engine serves on."""
    engine, threads, fds = idle_engine
    good_env = b"".join(f"{k}={v}\0".encode() for k, v in os.environ.items())
    envc = str(len(os.environ)).encode()
    null = os.open("/dev/null", os.O_RDWR)
    try:
        bad = [
            (b"garbage", ()),
            (b"\0" * 100, (null, null, null)),
            (b"FBCLI1\0/\0" + b"3\0fastbox\0run\0" + PROBE.encode() + b"\0" + envc + b"\0"
             + good_env, ()),  # a good request, but no fds
            (b"FBCLI1\0/\0" + b"3\0fastbox\0run\0" + PROBE.encode() + b"\0" + envc + b"\0"
             + good_env, (null,)),  # one fd
            (b"FBCLI1\0/\0999\0fastbox\0run\0" + envc + b"\0" + good_env, (null, null, null)),
            (b"FBCLI1\0/\0x\0y\0", (null, null, null)),
            (b"FBCLI1\0/\0-5\0\0\0", (null, null, null)),
            (b"FBRUN1\0/\0" + b"3\0fastbox\0run\0" + PROBE.encode() + b"\0" + envc + b"\0"
             + good_env, (null, null, null)),  # the old protocol's magic
            (b"FBCLI1\0/\0" + b"1\0fastbox\0" + envc + b"\0" + good_env,
             (null, null, null)),  # no command
            (b"K15", ()),
            (b"X0", (null, null, null)),
        ]
        for payload, passed in bad:
            conn = _send(engine.sock, payload, passed)
            with conn:
                assert conn.recv(16) == b"", payload  # dropped, no reply
        silent = _send(engine.sock, b"")
        closed_at_once = _send(engine.sock, b"")
        closed_at_once.close()
        with silent:
            r = run_cli("run", "--rm", PROBE, "echo", "still serving", binary=served)
            assert (r.returncode, r.stdout, r.stderr) == (0, "still serving\n", "")
    finally:
        os.close(null)
    assert alive(engine.pid)
    _settled_threads_and_fds(engine.pid, threads, fds)


def test_a_raw_request_is_served_like_the_clients(engine, tmp_path):
    """The protocol as documented in fastbox/engine/protocol.py: a well-formed request from
    another program (here, us) with pipes for stdio gets "X<code>" and the output."""
    payload = _request(["fastbox", "run", "--rm", PROBE, "sh", "-c",
                        "cat; echo out; echo err >&2; exit 9"], cwd=str(tmp_path))
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        conn = _send(engine.sock, payload, (in_r, out_w, err_w))
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        with conn:
            reply = conn.recv(16)
        outputs = {}

        def drain(name, fd):
            outputs[name] = b"".join(iter(lambda: os.read(fd, 65536), b""))

        readers = [threading.Thread(target=drain, args=a) for a in (("out", out_r), ("err", err_r))]
        for t in readers:
            t.start()
        for t in readers:
            t.join(30)
        assert (reply, outputs) == (b"X9", {"out": b"out\n", "err": b"err\n"})
    finally:
        for fd in (in_w, out_r, err_r):
            os.close(fd)


def test_detached_answer_comes_with_a_record_that_says_running(engine, served):
    """The engine answers `run -d` once the program runs and the record says so (before
    it has finished its own bookkeeping): `inspect`, `ps` and `stop` right after the id
    is printed see a running container, and the record is completed afterwards (its
    owner the monitor, its start time the one `ps` showed)."""
    for _ in range(5):
        r = run_cli("run", "-d", PROBE, "sleep", "300", binary=served)
        assert r.returncode == 0, r.stderr
        ref = r.stdout.strip()
        try:
            (info,) = json.loads(run_cli("inspect", ref, binary=served).stdout)
            assert info["State"]["Status"] == "running" and info["State"]["Pid"] > 0, info
            assert info["MonitorPid"] and info["State"]["StartedAt"].endswith("Z")
            assert alive(info["State"]["Pid"]) and alive(info["MonitorPid"])
            assert ref[:12] in run_cli("ps", "-q", binary=served).stdout.split()
            r = run_cli("stop", "-t", "0", ref, binary=served)
            assert r.returncode == 0, r.stderr
            (after,) = json.loads(run_cli("inspect", ref, binary=served).stdout)
            assert after["State"]["Status"] == "exited", after["State"]
            # the engine's late update never turns an exited record back to running
            rec = eventually(lambda: (lambda d: d if d.get("owner", "").startswith(f"{info['MonitorPid']}-")
                                      else None)(_record(engine, ref)), what="owner = monitor")
            assert rec["status"] == "exited" and rec["started_at"] == info["State"]["StartedAt"]
        finally:
            run_cli("rm", "-f", ref, binary=served)


def _record(engine, ref):
    from fastbox import config
    with open(os.path.join(config.containers_dir(), ref, "state.json")) as f:
        return json.load(f)


def test_detached_monitor_holds_nothing_of_the_engine_or_the_client(engine, served):
    """The monitor of a served `run -d` starts in a process that shares the engine's
    memory until it execs: once it runs, it is the small static monitor (its own
    memory), in a session of its own, no child of the engine, and holds none of the
    engine's fds (its socket, listener, spare namespaces) nor the client's stdio."""
    r = subprocess.run([served, "run", "-d", PROBE, "sleep", "300"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    assert r.returncode == 0, r.stderr
    ref = r.stdout.strip()
    try:
        (info,) = json.loads(run_cli("inspect", ref).stdout)
        mon = info["MonitorPid"]
        assert os.readlink(f"/proc/{mon}/exe").endswith("/fastbox-monitor")
        assert int(status_field(mon, "VmRSS").split()[0]) < 4096
        assert engine.pid not in ancestors(mon)
        assert os.getsid(mon) not in (os.getsid(engine.pid), os.getsid(0))

        def inodes(pid):
            out = {}
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except FileNotFoundError:
                    continue
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if not link.startswith("anon_inode:"):  # (one inode for all of a kind)
                    out[(st.st_dev, st.st_ino)] = link
            return out
        null = os.stat("/dev/null")
        shared = {k: v for k, v in inodes(mon).items() if k in inodes(engine.pid)
                  and k != (null.st_dev, null.st_ino)}
        assert shared == {}, shared
        mine = set(inodes(os.getpid()))
        assert not mine & set(inodes(mon)) - {(null.st_dev, null.st_ino)}
    finally:
        run_cli("rm", "-f", ref)
