"""Ways out of the container (issue 10), performed for real from inside one.

1. The exec window: a watcher (tests/probe/attack.c `watch`, root with the default
   capabilities in a detached container) races 200 `exec`s per lane for each new pid of
   the container's pid namespace, and opens its /proc/N/{mem,exe,maps,fd,cmdline}. A
   process it may see must never be (or share the memory, fds or binary of) a host
   process: no host binary at /proc/N/exe, no host library in its maps, no /proc/N/mem
   of such a process opened read-write, no fd >= 3 on a host file, no host Python's
   command line.
2. Leaked fds (CVE-2024-21626): a cwd of /proc/self/fd/N (image WORKDIR, `run -w`, an
   `exec -w` symlink), N from 3 to 64, through the engine and without it. The client
   runs in a directory holding a marker, and holds an fd of it (as after `exec 40<dir`).
   Either the start fails (125) or `..` walked up from the cwd reaches the container's
   root; the host's root and the marker are never seen.
3. The caller's terminal: in a pty harness running `sh -i`, a container started without
   -t must not reach the shell's terminal (TIOCSTI, /dev/tty, keystrokes), while -t
   still gives it one, and stdio and ^C still work.
"""
import io
import os
import re
import select
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest
from test_engine import engine_ctl, served  # noqa: F401  (fixtures)
from test_lifecycle import reap  # noqa: F401  (an autouse fixture)
from waiting import eventually

pytestmark = pytest.mark.engine  # its engine lanes start an engine (conftest: no FASTBOX_NO_ENGINE)

from fastbox import containers

HERE = os.path.dirname(os.path.abspath(__file__))
ATTACK_SOURCE = os.path.join(HERE, "..", "probe", "attack.c")
ATTACK_IMAGE = "fastbox-test/attack:latest"
FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
FASTBOX_PY = FASTBOX + "-py"
EXEC_RACES = 200
TTY_RACES = 50
FDS = range(3, 65)
CWD_ROUNDS = 2


# ------------------------------------------------------------------ the attack image

@pytest.fixture(scope="session")
def attack(session_dirs, tmp_path_factory):
    """An image with busybox and the static attack program at /attack."""
    import shutil
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the attack program")
    work = tmp_path_factory.mktemp("attack")
    binary = str(work / "attack")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", binary, ATTACK_SOURCE], check=True,
                   capture_output=True)
    tarball = str(work / "rootfs.tar")
    _write_rootfs(tarball, binary)
    from fastbox.images.store import ImageStore
    store = ImageStore(root=session_dirs.images)
    image = store.import_tar(tarball, ATTACK_IMAGE)
    return SimpleNamespace(image=ATTACK_IMAGE, id=image.id, tarball=tarball, store=store)


def _write_rootfs(tar_path, binary):
    from fastbox.images import default
    buf = io.BytesIO()
    default.write_rootfs(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r") as src, tarfile.open(tar_path, "w") as out:
        for member in src:
            out.addfile(member, src.extractfile(member) if member.isreg() else None)
        info = tarfile.TarInfo("attack")
        info.mode, info.size = 0o755, os.path.getsize(binary)
        with open(binary, "rb") as f:
            out.addfile(info, f)


@pytest.fixture
def engine(engine_ctl, attack):
    what, _ = engine_ctl.start()
    assert what == "started"
    return engine_ctl


def _client(lane, served_binary):
    """The binary a lane runs: the Python CLI, or the C client that only the engine can
    serve (a copy with no fastbox-py beside it, so it cannot fall back)."""
    return FASTBOX_PY if lane == "python" else served_binary


def _on_a_terminal(argv, timeout=60):
    """(exit code, output) of argv with a new pty as its stdio."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        while select.select([master], [], [], timeout)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the slave is gone
                break
            if not data:
                break
            out += data
        return p.wait(timeout=timeout), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


# ------------------------------------------------------------------ 1. the exec window

def _watcher(attack):
    c = containers.run(attack.image, ["/attack", "watch"])
    eventually(lambda: b"watch ready" in c.logs(), what="the watcher to be ready")
    return c


def _verdicts(c):
    """Stop the watcher and read its lines: (violations, clean, missed)."""
    c.kill(signal.SIGTERM)
    eventually(lambda: b"watch done" in c.logs() or c.reload().status != "running",
               what="the watcher to stop")
    lines = c.logs().decode(errors="replace").splitlines()
    return tuple([line for line in lines if line.startswith(kind)]
                 for kind in ("VIOLATION", "clean", "missed"))


def _race(lane, c, served_binary, n):
    """n execs of /bin/true into c through one lane; every one must succeed."""
    for i in range(n):
        if lane == "api":
            code = c.exec_run(["/bin/true"]).exit_code
        elif lane in ("python", "engine"):
            code = subprocess.run([_client(lane, served_binary), "exec", c.id, "/bin/true"],
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=60).returncode
        elif lane in ("python-tty", "engine-tty"):
            code, _ = _on_a_terminal([_client(lane[:-4], served_binary), "exec", "-t", c.id,
                                      "/bin/true"])
        else:
            raise AssertionError(lane)
        assert code == 0, f"exec {i} through {lane} exited {code}"


@pytest.mark.parametrize("lane, n", [("python", EXEC_RACES), ("engine", EXEC_RACES),
                                     ("api", EXEC_RACES), ("python-tty", TTY_RACES),
                                     ("engine-tty", TTY_RACES)])
def test_exec_window_shows_the_container_no_host_process(request, attack, served, lane, n):
    """No pid the container can see is, at any moment, a host process: the watcher never
    reads a host binary at /proc/N/exe, host libraries in /proc/N/maps, a host file
    behind /proc/N/fd/K (K >= 3) or the host Python's command line, and never opens
    /proc/N/mem of such a process read-write."""
    if lane.startswith("engine"):
        request.getfixturevalue("engine")
    c = _watcher(attack)
    try:
        _race(lane, c, served, n)
        violations, clean, missed = _verdicts(c)
    finally:
        c.remove(force=True)
    seen = len(violations) + len(clean)
    print(f"{lane}: {n} execs, {seen} pids seen, {len(missed)} missed, "
          f"{len(violations)} violations")  # shown by -rP: what the watcher could judge
    kinds = Counter(k for v in violations for k in re.search(r"kinds=(\S+)", v)[1].split(","))
    assert seen >= n // 10, (f"the watcher saw only {seen} of {n} execs ({len(missed)} missed):"
                            " it cannot judge this lane")
    worst = max(violations, key=lambda v: v.count(","), default="")
    assert not violations, (f"{lane}: {len(violations)} of {seen} pids seen ({len(missed)} missed) "
                            f"were host processes ({dict(kinds)}); e.g. {worst[:600]}")


# ------------------------------------------------------------------ 2. leaked fds, the cwd

@pytest.fixture
def caller_dir(tmp_path):
    """The client's cwd, holding a marker no container may ever list."""
    d = tmp_path / "caller"
    d.mkdir()
    marker = f"HOST-MARKER-{uuid.uuid4().hex}"
    (d / marker).write_text("the host\n")
    return SimpleNamespace(path=str(d), marker=marker)


def _breakout(result, caller_dir, fb_env):
    """None if the start was refused (run: 125; exec: 1, as Docker's failed commands) with
    fastbox's one-line error, or the cwd is inside; else what was seen."""
    code, out, err = result
    if code in (125, 1) and len(err.splitlines()) == 1 and err.startswith("fastbox: ") \
            and not out:
        return None
    root = os.stat("/")
    host_root = f"{root.st_dev}:{root.st_ino}"
    seen = []
    if caller_dir.marker in out:
        seen.append("the caller's marker")
    if re.search(rf"^level \d+ {host_root} ", out, re.M):
        seen.append("the host's /")
    if os.path.basename(fb_env.root) + "/" in out or os.path.basename(fb_env.run) + "/" in out:
        seen.append("FASTBOX_ROOT/RUN")
    if code == 0 and "verdict inside" in out and not seen:
        return None
    cwd = re.search(r"^level 0 \S+ (.{0,80})", out, re.M)
    return f"exit {code}, {', '.join(seen) or 'not inside'}" + (
        f" (cwd lists {cwd[1]!r})" if cwd else f" {err.strip()[:120]!r}")


def _assert_no_breakout(results, caller_dir, fb_env, what):
    """results: N -> the results of every round for N."""
    outcomes = Counter(re.sub(r"\d+", "N", r[2].strip() or f"exit {r[0]}")
                       for rounds in results.values() for r in rounds)
    print(f"{what}: {dict(outcomes)}")  # shown by -rP
    broke = {}
    for n, rounds in results.items():
        found = [f for f in (_breakout(r, caller_dir, fb_env) for r in rounds) if f]
        if found:
            broke[n] = found[0]
    assert not broke, (f"{what}: the host was visible for N = {sorted(broke)}; "
                       f"N={min(broke)}: {broke[min(broke)]}")


def _rounds(start):
    """{N: [start(N) for each round]}: the engine's own fd numbers shift when a background
    task holds one at that moment, so every N is tried more than once."""
    return {n: [start(n) for _ in range(CWD_ROUNDS)] for n in FDS}


def _run(argv, cwd):
    """argv run from cwd, holding a directory fd of the caller's (>= 40), as after a
    shell's `exec 40<dir`: a host fd the container may not reach either."""
    import fcntl
    fd = os.open(cwd, os.O_RDONLY | os.O_DIRECTORY)
    held = fcntl.fcntl(fd, fcntl.F_DUPFD, 40)
    os.close(fd)
    try:
        r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=60, pass_fds=(held,))
    finally:
        os.close(held)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_image_workdir_on_a_leaked_fd_never_reaches_the_host(request, attack, served, lane,
                                                           caller_dir, fb_env):
    """Images whose WORKDIR is /proc/self/fd/N, N = 3..64."""
    if lane == "engine":
        request.getfixturevalue("engine")
    results = {}
    for n in FDS:
        ref = f"fastbox-test/attack-workdir-fd{n}:latest"
        attack.store.import_tar(attack.tarball, ref, changes={"WorkingDir": f"/proc/self/fd/{n}"})
        try:
            results[n] = [_run([_client(lane, served), "run", "--rm", ref, "/attack", "cwd"],
                               caller_dir.path) for _ in range(CWD_ROUNDS)]
        finally:
            attack.store.remove(ref)  # the session's store: other tests list its images
    _assert_no_breakout(results, caller_dir, fb_env, f"WORKDIR /proc/self/fd/N via {lane}")


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_run_workdir_on_a_leaked_fd_never_reaches_the_host(request, attack, served, lane,
                                                         caller_dir, fb_env):
    """`run -w /proc/self/fd/N`, N = 3..64."""
    if lane == "engine":
        request.getfixturevalue("engine")
    results = _rounds(lambda n: _run([_client(lane, served), "run", "--rm", "-w",
                                      f"/proc/self/fd/{n}", attack.image, "/attack", "cwd"],
                                     caller_dir.path))
    _assert_no_breakout(results, caller_dir, fb_env, f"run -w /proc/self/fd/N via {lane}")


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_exec_workdir_symlink_to_a_leaked_fd_never_reaches_the_host(request, attack, served,
                                                                   lane, caller_dir, fb_env):
    """`exec -w /appN`, where the container made /appN a symlink to /proc/self/fd/N."""
    if lane == "engine":
        request.getfixturevalue("engine")
    c = containers.run(attack.image, ["sh", "-c", f"for n in $(seq {FDS[0]} {FDS[-1]}); do "
                                      "ln -s /proc/self/fd/$n /app$n; done; echo ready; "
                                      "exec sleep 1000"])
    try:
        eventually(lambda: b"ready" in c.logs(), what="the symlinks")
        results = _rounds(lambda n: _run([_client(lane, served), "exec", "-w", f"/app{n}", c.id,
                                          "/attack", "cwd"], caller_dir.path))
    finally:
        c.remove(force=True)
    _assert_no_breakout(results, caller_dir, fb_env, f"exec -w /app -> /proc/self/fd/N via {lane}")


# ------------------------------------------------------------------ 3. the caller's terminal

class Shell:
    """An interactive host shell (`sh -i`) on a new pty, in its own session with the pty
    as its controlling terminal: what a user at a terminal has."""

    def __init__(self, cwd):
        import fcntl
        import pty
        import termios
        self.master, slave = pty.openpty()
        env = {**os.environ, "PS1": "$ ", "PS2": "> "}
        env.pop("ENV", None)
        self.p = subprocess.Popen(["sh", "-i"], stdin=slave, stdout=slave, stderr=slave,
                                  cwd=cwd, env=env, start_new_session=True,
                                  preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.out = b""
        self.steps = 0

    def type(self, text):
        os.write(self.master, text.encode())

    def expect(self, pattern, timeout=60, since=0):
        """Reads until pattern (a regex over the transcript from byte `since`) is seen;
        returns that part of the transcript."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.out[since:].decode(errors="replace")):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} in {self.out[-2000:]!r}")
            try:
                self.out += os.read(self.master, 65536)
            except OSError:
                raise AssertionError(f"terminal closed before {pattern!r}: {self.out[-2000:]!r}")
        return self.out[since:].decode(errors="replace")

    def begin(self, line):
        """Types line, followed by an end mark that the shell computes (so its echo of our
        typing never matches); returns where its output starts, for end()."""
        self.steps += 1
        start = len(self.out)
        self.type(f"{line}; echo END-$((1000+{self.steps}))-$?\n")
        return self.steps, start

    def end(self, begun, timeout=60):
        """(exit code, what appeared on the terminal) of the line begun."""
        step, start = begun
        text = self.expect(rf"END-{1000 + step}-(\d+)", timeout, since=start)
        return int(re.search(rf"END-{1000 + step}-(\d+)", text)[1]), text

    def command(self, line, timeout=60):
        return self.end(self.begin(line), timeout)

    def close(self):
        """Ends the shell as a user would (`exit`), then makes sure it is gone."""
        if self.master < 0:
            return
        try:
            if self.p.poll() is None:
                self.type("exit\n")
                self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        finally:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def shell(tmp_path):
    s = Shell(str(tmp_path))
    s.expect(r"\$ ")
    yield s
    s.close()


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_container_cannot_type_into_the_callers_shell(request, attack, served, lane, shell,
                                                    tmp_path):
    """TIOCSTI from a container started without -t: on /dev/tty, on its stdio, or on a
    stdio terminal it tries to make its own; the host shell must never run the line."""
    if lane == "engine":
        request.getfixturevalue("engine")
    pwned = tmp_path / "pwned"
    code, text = shell.command(f"{_client(lane, served)} run --rm {attack.image} "
                               f"/attack tiocsti 'touch {pwned}\\n'")
    # Whatever was pushed into the terminal is read by the shell before this line.
    shell.command("true")
    shell.close()
    attempts = re.findall(r"(?:^|\$ )((?:tiocsti|tiocsctty) [^\r\n]*)", text, re.M)
    with open("/proc/sys/dev/tty/legacy_tiocsti") as f:  # 0: TIOCSTI needs CAP_SYS_ADMIN
        legacy = f.read().strip()
    assert not pwned.exists(), (f"{lane}: the host shell ran a line a container typed "
                                f"(dev.tty.legacy_tiocsti={legacy}): {attempts}")
    assert code == 1, (code, text)


def _tty_lines(text):
    """The attack's `tty ...` lines; the shell's next prompt may come first on a line."""
    return re.findall(r"(?:^|\$ )((?:tty|ttyread) [^\r\n]*)", text, re.M)


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_dev_tty_is_only_the_containers_own_terminal(request, attack, served, lane, shell):
    """Without -t, /dev/tty fails with ENXIO in `run` and `exec` (the container is not
    in the caller's session); with -t it is the container's own terminal."""
    if lane == "engine":
        request.getfixturevalue("engine")
    fb = _client(lane, served)
    c = containers.run(attack.image, ["sleep", "1000"])
    try:
        seen = {}
        for what, line in [("run", f"{fb} run --rm {attack.image} /attack tty"),
                           ("exec", f"{fb} exec {c.id} /attack tty"),
                           ("run -t", f"{fb} run --rm -t {attack.image} /attack tty"),
                           ("exec -t", f"{fb} exec -t {c.id} /attack tty")]:
            seen[what] = _tty_lines(shell.command(line)[1])
    finally:
        c.remove(force=True)
    assert seen == {"run": ["tty ENXIO"], "exec": ["tty ENXIO"], "run -t": ["tty ok"],
                    "exec -t": ["tty ok"]}, f"{lane}: {seen}"


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_container_cannot_read_the_users_keystrokes(request, attack, served, lane, shell):
    """Even where TIOCSTI is off (dev.tty.legacy_tiocsti=0), a container holding the
    caller's terminal could read what the user types next: /dev/tty must not open."""
    if lane == "engine":
        request.getfixturevalue("engine")
    secret = f"#typed-{uuid.uuid4().hex[:12]}"
    begun = shell.begin(f"{_client(lane, served)} run --rm {attack.image} /attack ttyread")
    if "waiting" in shell.expect(r"ttyread (waiting|open \w+)|END-\d+-\d+", since=begun[1]):
        shell.type(secret + "\n")
    lines = _tty_lines(shell.end(begun)[1])
    stolen = secret.encode().hex()
    assert not any(stolen in line for line in lines), f"{lane}: it read {secret!r}: {lines}"
    assert lines == ["ttyread open ENXIO"], f"{lane}: {lines}"


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_container_cannot_read_the_users_keystrokes_from_its_stdout(request, attack, served,
                                                                    lane, shell):
    """The same theft through fd 1 instead of /dev/tty: it works through the engine too,
    whose containers are in a session of their own already."""
    if lane == "engine":
        request.getfixturevalue("engine")
    secret = f"#typed-{uuid.uuid4().hex[:12]}"
    begun = shell.begin(f"{_client(lane, served)} run --rm {attack.image} sh -c "
                        "'echo reading-$((1+1)); read -t 2 x <&1; echo \"got-[$x]\"'")
    shell.expect(r"reading-2", since=begun[1])
    # typed at once, into the terminal's input queue: a read that could take it (blocked
    # on it already) would have it within milliseconds, well inside its 2 s
    shell.type(secret + "\n")
    _, text = shell.end(begun)
    assert f"got-[{secret}]" not in text, f"{lane}: it read {secret!r} from its stdout"


@pytest.mark.parametrize("lane", ["python", "engine"])
def test_foreground_stdio_and_ctrl_c_still_work(request, attack, served, lane, shell):
    """In its own session the container still has the caller's stdio (-i: its stdin)
    and ^C on the terminal still ends it with 130 (the CLI forwards SIGINT)."""
    if lane == "engine":
        request.getfixturevalue("engine")
    fb = _client(lane, served)
    code, text = shell.command(f"{fb} run --rm {attack.image} sh -c 'echo out-$((6*7)); "
                               "echo err-$((6*8)) >&2'")
    assert code == 0 and "out-42" in text and "err-48" in text, text
    begun = shell.begin(f"{fb} run --rm -i {attack.image} sh -c 'head -n1 | tr a-z A-Z'")
    shell.type("typed-in\n")  # typed ahead: the terminal keeps it for the container's stdin
    code, text = shell.end(begun)
    assert code == 0 and "TYPED-IN" in text, text
    begun = shell.begin(f"{fb} run --rm {attack.image} sh -c 'trap \"echo got-$((6*9)); exit 130\" "
                        "INT; echo started-$((2+3)); sleep 60 & wait'")
    shell.expect(r"started-5", since=begun[1])
    shell.type("\x03")
    code, text = shell.end(begun, timeout=30)
    assert code == 130 and "got-54" in text, text  # the container's trap ran
