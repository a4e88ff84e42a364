"""The `fastbox` command line: exit codes, one-line errors, records, names, timings."""
import os
import signal
import subprocess
import sys

import pytest
from cgroup_pids import container_cgroups
from waiting import eventually

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def run_cli(*args, input=None):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


def one_line_error(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr
    return lines[0]


# ------------------------------------------------------------------ run

def test_run_with_defaults(busybox):
    """`fastbox run IMAGE CMD`, no options at all: the first thing anyone types."""
    r = run_cli("run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


def test_tty_run_forwards_signals_to_its_container(busybox):
    """`run -t` forwards the signals it gets, as `run` does: a SIGTERM reaches the
    container (whose trap ends it), never orphaning it with its cgroups."""
    import pty
    master, slave = pty.openpty()
    p = subprocess.Popen([FASTBOX, "run", "-t", "--rm", "busybox", "sh", "-c",
                          'trap "exit 5" TERM; echo ready; sleep 300 & wait'],
                         stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        seen = b""
        while b"ready" not in seen:
            seen += os.read(master, 1024)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    eventually(lambda: not container_cgroups(), what="the container's cgroups to go")


def _on_a_terminal(argv, rows, cols):
    """(exit code, all output) of argv run on a new pty of that size."""
    import fcntl
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    try:
        while True:
            try:
                data = os.read(master, 1024)
            except OSError:  # EIO: every holder of the slave is gone
                break
            if not data:
                break
            out += data
        return p.wait(timeout=30), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_tty_has_the_callers_size_from_the_start(busybox):
    """A program that asks for its terminal's size at once gets the caller's, for run
    and exec alike (the size was once copied only after the program had started)."""
    from fastbox import containers
    code, out = _on_a_terminal([FASTBOX, "run", "--rm", "-t", "busybox", "stty", "size"], 33, 111)
    assert (code, out.split()) == (0, [b"33", b"111"]), out
    c = containers.run("busybox", ["sleep", "300"])
    try:
        code, out = _on_a_terminal([FASTBOX, "exec", "-t", c.id, "stty", "size"], 21, 77)
        assert (code, out.split()) == (0, [b"21", b"77"]), out
    finally:
        c.remove(force=True)


def test_env_bytes_that_are_not_utf8_reach_the_container(busybox):
    """Linux environments are bytes: `-e KEY` of a value that is not UTF-8, and `-e K=V`
    of one given in argv, arrive unchanged (they crashed the core's encoder once)."""
    env = {**os.environb, b"RAW": b"\xff\xfe-raw"}
    r = subprocess.run([FASTBOX, "run", "--rm", "-e", "RAW", "-e", b"ARG=\xfe\xff-arg",
                        "busybox", "sh", "-c", 'printf "%s|%s" "$RAW" "$ARG"'],
                       env=env, capture_output=True, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"\xff\xfe-raw|\xfe\xff-arg", b"")


@pytest.mark.parametrize("network", [[], ["--network", "none"], ["--network", "host"]])
def test_run_network_namespace(busybox, network):
    """The CLI has its namespace made on another thread while it plans: still its own,
    new, with only lo and lo up (or the host's, with --network host); the default, the
    bridge network, adds eth0 (the session runs in a network namespace of its own)."""
    script = "readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate; ip -o link | wc -l"
    outs = [run_cli("run", "--rm", *network, "busybox", "sh", "-c", script).stdout.split()
            for _ in range(2)]
    host = os.readlink("/proc/self/ns/net")
    if network[-1:] == ["host"]:
        assert all(o[0] == host for o in outs)
    else:
        links = "2" if not network else "1"
        assert all(o[1:] == ["unknown", links] for o in outs), outs
        assert host not in {o[0] for o in outs}


def test_run_echo(busybox):
    r = run_cli("run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


@pytest.mark.parametrize("network", ["none", "host"])
def test_run_exit_code_is_the_containers(probe, network):
    r = run_cli("run", "--rm", "--network", network, probe.image, "/probe", "exit", "7")
    assert r.returncode == 7
    assert r.stderr == ""


def test_run_options_reach_the_container(probe, tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "env").write_text("FROM_FILE=1\n")
    r = run_cli("run", "--rm", "--network=none", "-e", "A=1", "-eB=2", f"--env-file={tmp_path / 'env'}",
                "-w", "/work/dir", "-h", "clihost", "-v", f"{tmp_path / 'vol'}:/vol", "--tmpfs", "/t",
                probe.image, "sh", "-c",
                'echo "$A$B$FROM_FILE $(pwd) $(hostname)"; echo v > /vol/v; echo t > /t/t; cat /t/t')
    assert r.returncode == 0, r.stderr
    assert r.stdout == "121 /work/dir clihost\nt\n"
    assert (tmp_path / "vol" / "v").read_text() == "v\n"


def test_run_user(probe):
    r = run_cli("run", "--rm", "--network", "none", "-u", "1000:1000", probe.image, "/probe", "uid")
    assert r.stdout == "uid 1000\ngid 1000\ngroups 1000\n"


def test_run_read_only(probe):
    r = run_cli("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/t", probe.image, "sh", "-c",
                "/probe write /x; /probe write /t/x")
    assert r.stdout == "EROFS\nok\n"


def test_run_limits(probe):
    r = run_cli("run", "--rm", "--network", "none", "-m", "32m", probe.image, "/probe", "memhog", "200")
    assert r.returncode == 137
    r = run_cli("run", "--rm", "--network", "none", "--pids-limit", "10", probe.image, "/probe", "forkbomb", "100")
    assert r.returncode == 0 and "errno EAGAIN" in r.stdout


def test_run_command_args_are_not_options(busybox):
    r = run_cli("run", "--rm", "--network", "none", "busybox", "echo", "--rm", "-e", "X=1")
    assert r.stdout == "--rm -e X=1\n"


def test_run_interactive_passes_stdin(busybox):
    r = run_cli("run", "--rm", "--network", "none", "-i", "busybox", "cat", input="piped in\n")
    assert r.stdout == "piped in\n"


def test_run_without_interactive_gets_no_stdin(busybox):
    r = run_cli("run", "--rm", "--network", "none", "busybox", "cat", input="not for it\n")
    assert (r.returncode, r.stdout) == (0, "")


def test_run_entrypoint(probe):
    r = run_cli("run", "--rm", "--network", "none", "--entrypoint", "/probe", probe.image, "exit", "3")
    assert r.returncode == 3


def test_run_help(busybox):
    r = run_cli("run", "--help")
    assert r.returncode == 0 and "Usage: fastbox run" in r.stdout


def test_signals_are_forwarded_to_the_container(busybox):
    """SIGTERM to the CLI reaches the container's pid 1 (here a shell with a trap)."""
    p = subprocess.Popen([FASTBOX, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                          'trap "exit 42" TERM; echo ready; while :; do sleep 1; done'],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        _wait_for_handler(p.pid, signal.SIGTERM)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 42
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def _wait_for_handler(pid, sig):
    """Until the CLI has installed its forwarding handler (SigCgt), not a fixed sleep."""
    import time
    for _ in range(6000):
        with open(f"/proc/{pid}/status") as f:
            cgt = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        if cgt & (1 << (sig - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("fastbox never installed a handler for the signal")


# ------------------------------------------------------------------ errors: 125/126/127

@pytest.mark.parametrize("args, words", [
    (["--memory", "lots", "busybox", "true"], "memory"),
    (["-v", "rel/ative:/path", "busybox", "true"], "volume"),
    (["fastbox-test/unknown-image:nope", "true"], "unknown-image"),
    (["--bogus-flag", "busybox", "true"], "unknown flag"),
    (["--cpus"], "argument"),
    ([], "image"),
    (["--network", "no such net", "busybox", "true"], "network"),
    (["-u", "no-such-user", "busybox", "true"], "no-such-user"),
    (["--env-file", "/nonexistent/env", "busybox", "true"], "env-file"),
    (["--cpus", "0", "busybox", "true"], "cpus"),
    (["--pids-limit", "0", "busybox", "true"], "pids-limit"),
    (["--name", "bad/name", "busybox", "true"], "name"),
    (["-w", "relative", "busybox", "true"], "workdir"),
])
def test_bad_input_is_125_with_one_line(busybox, args, words):
    r = run_cli("run", "--rm", *args)
    assert r.returncode == 125
    assert r.stdout == ""
    line = r.stderr.splitlines()[0]
    assert line.startswith("fastbox: ") and words in line, r.stderr


@pytest.mark.parametrize("command", ["/etc/not-executable", "/etc"])
def test_not_executable_is_126(probe, command):
    r = run_cli("run", "--rm", "--network", "none", probe.image, command)
    assert r.returncode == 126
    assert command in one_line_error(r)


@pytest.mark.parametrize("command", ["/no/such/file", "no-such-command"])
def test_missing_command_is_127(probe, command):
    r = run_cli("run", "--rm", "--network", "none", probe.image, command)
    assert r.returncode == 127
    assert command in one_line_error(r)


def test_timings_go_to_stderr(busybox):
    r = run_cli("run", "--rm", "--network", "none", "--timings", "busybox", "echo", "out")
    assert r.returncode == 0
    assert r.stdout == "out\n"
    phases = {}
    for line in r.stderr.splitlines()[1:]:
        name, value = line.split()
        phases[name] = float(value)
    for key in ("image", "cloned", "rootfs", "pivot", "mounts", "exec", "execed", "exited", "total"):
        assert key in phases, r.stderr
    assert phases["total"] >= phases["exited"] >= phases["execed"]


def test_no_timings_without_the_flag(busybox):
    r = run_cli("run", "--rm", "--network", "none", "busybox", "true")
    assert r.stderr == ""


# ------------------------------------------------------------------ records: ps, rm, names

def _ps(*args):
    r = run_cli("ps", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_kept_container_shows_in_ps_and_rm_removes_it(busybox, fb_env):
    r = run_cli("run", "--network", "none", "--name", "kept", "busybox", "sh", "-c", "echo x > /f; exit 3")
    assert r.returncode == 3
    rows = [line for line in _ps("-a")[1:] if line.split()[-1] == "kept"]
    assert len(rows) == 1 and "Exited (3) " in rows[0]
    cid_prefix = rows[0].split()[0]
    [cid] = [e for e in os.listdir(os.path.join(fb_env.root, "containers")) if e.startswith(cid_prefix)]
    cdir = os.path.join(fb_env.root, "containers", cid)
    assert open(os.path.join(cdir, "upper", "f")).read() == "x\n"
    assert _ps() == _ps()[:1]  # not running: only the header without -a
    assert cid_prefix in _ps("-a", "-q")

    rm = run_cli("rm", "kept")
    assert rm.returncode == 0, rm.stderr
    assert not os.path.exists(cdir)
    assert not [line for line in _ps("-a")[1:] if "kept" in line]
    # the name is free again
    assert run_cli("run", "--network", "none", "--name", "kept", "busybox", "true").returncode == 0
    assert run_cli("rm", "kept").returncode == 0


def test_rm_by_id_prefix(busybox, fb_env):
    assert run_cli("run", "--network", "none", "busybox", "true").returncode == 0
    [cid] = _ps("-a", "-q")
    assert run_cli("rm", cid).returncode == 0
    assert _ps("-a", "-q") == []


def test_rm_unknown_is_an_error(busybox):
    r = run_cli("rm", "no-such-container")
    assert r.returncode == 1  # Docker's code for a failed non-run command
    assert "no-such-container" in one_line_error(r)


def test_rm_container_keeps_no_record(busybox):
    assert run_cli("run", "--rm", "--network", "none", "--name", "gone", "busybox", "true").returncode == 0
    assert _ps("-a", "-q") == []


def test_name_twice_fails_clearly(busybox):
    assert run_cli("run", "--network", "none", "--name", "dup", "busybox", "true").returncode == 0
    r = run_cli("run", "--network", "none", "--name", "dup", "busybox", "echo", "second")
    assert r.returncode == 125
    assert r.stdout == ""
    line = one_line_error(r)
    assert "dup" in line and "already in use" in line
    assert len(_ps("-a", "-q")) == 1
    assert run_cli("rm", "dup").returncode == 0


def test_name_of_a_running_rm_container_is_taken(busybox, pipes):
    """Docker reserves a --rm container's name while it runs, too."""
    import fastbox
    from fastbox import errors
    stdin = pipes()
    second = {}

    def on_start(pid):
        try:
            try:
                fastbox.run("busybox", ["true"], name="busy")
                second["error"] = None
            except errors.FastboxError as e:
                second["error"] = e
        finally:
            stdin.close_w()

    first = fastbox.run("busybox", ["sh", "-c", "read x; true"], name="busy", stdin=stdin.r,
                        on_start=on_start)
    assert first.exit_code == 0
    assert second["error"] is not None, "a second container got the name of a running one"
    assert second["error"].exit_code == 125 and "already in use" in str(second["error"])


def test_api_name_twice(busybox):
    import fastbox
    from fastbox import errors
    from fastbox.state.store import StateStore
    fastbox.run("busybox", ["true"], name="api-dup", remove=False)
    with pytest.raises(errors.ContainerStateError) as e:
        fastbox.run("busybox", ["true"], name="api-dup", remove=False)
    assert e.value.exit_code == 125 and "already in use" in str(e.value)
    StateStore().remove("api-dup")


# ------------------------------------------------------------------ images, info

def test_images_lists_busybox(busybox):
    r = run_cli("images")
    assert r.returncode == 0
    assert any(line.split()[:2] == ["busybox", "latest"] for line in r.stdout.splitlines()[1:])


def test_info(busybox):
    from fastbox.runtime import cgroup
    r = run_cli("info")
    assert r.returncode == 0
    assert f"cgroup mode:   {cgroup.layout().mode}" in r.stdout
    assert os.environ["FASTBOX_ROOT"] in r.stdout


def test_running_container_in_ps_and_rm_refused(busybox, pipes):
    """While a kept container runs, `ps` shows it and `rm` (without -f) refuses it."""
    import fastbox
    stdin = pipes()
    seen = {}

    def on_start(pid):
        try:
            seen["ps"] = _ps()
            seen["rm"] = run_cli("rm", "runner")
        finally:
            stdin.close_w()

    try:
        r = fastbox.run("busybox", ["sh", "-c", "read x; true"], name="runner", remove=False,
                        stdin=stdin.r, on_start=on_start)
        run_error = None
    except Exception as e:  # reported after what ps/rm saw, which explains it
        run_error = e
    rows = [line for line in seen["ps"][1:] if line.split()[-1] == "runner"]
    assert len(rows) == 1 and " Up " in rows[0], seen["ps"]
    assert seen["rm"].returncode == 1, seen["rm"]
    assert "running" in one_line_error(seen["rm"])
    assert run_error is None
    assert r.exit_code == 0
    assert [line.split()[-1] for line in _ps()[1:]] == []
    assert run_cli("rm", "runner").returncode == 0


def test_cli_passes_no_extra_fd_to_the_container(probe):
    leaky = os.open("/", os.O_RDONLY)
    try:
        r = subprocess.run([FASTBOX, "run", "--rm", "--network", "none", probe.image, "/probe", "fds"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, pass_fds=(leaky,))
    finally:
        os.close(leaky)
    lines = r.stdout.splitlines()
    dirfd = int(lines[0].split()[1])
    fds = sorted(int(line.split()[1]) for line in lines[1:] if int(line.split()[1]) != dirfd)
    assert fds == [0, 1, 2], r.stdout


def test_cli_signals_reset_in_the_container(probe):
    """The CLI is Python (SIGPIPE ignored, handlers installed): none of it reaches the program."""
    r = run_cli("run", "--rm", "--network", "none", probe.image, "/probe", "sigs")
    assert sorted(r.stdout.splitlines()) == ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]


def test_run_path_does_not_import_heavy_modules(busybox):
    """DESIGN.md: `fastbox run` keeps typer/click (~40 ms) and pyroute2 (~110 ms) off its path."""
    code = (
        "import os, sys\n"
        "def fake_exit(code):\n"
        "    raise SystemExit(code)\n"
        "os._exit = fake_exit\n"
        "from fastbox.cli import entry\n"
        "sys.argv = ['fastbox', 'run', '--rm', '--network', 'none', 'busybox', 'true']\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit as e:\n"
        "    rc = e.code\n"
        "heavy = sorted(m for m in ('typer', 'click', 'pyroute2', 'rich') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    # cwd "/": `python -c` puts the cwd first on sys.path, and a checkout's unbuilt
    # fastbox/ must not shadow the installed package.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, cwd="/")
    assert r.stdout == "0 []\n", (r.stdout, r.stderr)
