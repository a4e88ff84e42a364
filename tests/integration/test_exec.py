"""`fastbox exec` and Container.exec_run: a process started inside a running container
joins every namespace and the cgroups of the container (pid 1 is the container's, the
root is its root), gets the container's security settings, and its exit code comes back.
"""
import os
import threading

import pytest

from fastbox import containers
from fastbox.errors import CommandNotExecutable, CommandNotFound, ContainerStateError

import fbtest
from test_lifecycle import (GO, pids_in, cli, eventually, one_line_error,  # noqa: F401
                            reap, running, start, wait_for_log)  # (reap: an autouse fixture)

NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


@pytest.fixture
def box(busybox):
    """A running busybox container that wrote /data at start, named `box`."""
    c = start(["sh", "-c", "echo from-container > /data; echo ready; exec sleep 1000"],
              name="box", hostname="boxhost")
    wait_for_log(c, "ready")
    yield c
    c.remove(force=True)


@pytest.fixture
def probebox(probe):
    c = start(["sh", "-c", "echo ready; exec sleep 1000"], image=probe.image, name="pbox")
    wait_for_log(c, "ready")
    yield c
    c.remove(force=True)


def _ns(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


# ------------------------------------------------------------------ what exec sees

def test_exec_sees_pid_1_of_the_container(box):
    r = box.exec_run(["cat", "/proc/1/cmdline"])
    assert r.exit_code == 0 and r.stdout == b"sleep\x001000\x00"
    r = box.exec_run(["ps", "-o", "pid,comm"])
    rows = [line.split() for line in r.stdout.decode().splitlines()[1:]]
    assert ["1", "sleep"] in rows
    assert all(int(pid) > 1 for pid, comm in rows if comm == "ps")
    r = box.exec_run(["sh", "-c", "echo $$"])
    assert int(r.stdout) > 1


def test_exec_sees_the_containers_files_and_root(box):
    assert box.exec_run(["cat", "/data"]).stdout == b"from-container\n"
    assert box.exec_run(["sh", "-c", "echo from-exec > /fromexec"]).exit_code == 0
    assert box.exec_run(["cat", "/fromexec"]).stdout == b"from-exec\n"
    # The file is in the container's writable layer, not in the host's /.
    assert not os.path.exists("/fromexec") and not os.path.exists("/data")
    assert box.exec_run(["hostname"]).stdout == b"boxhost\n"


def test_exec_joins_every_namespace_and_the_cgroups(box):
    seen = {}

    def look(pid):
        seen["ns"] = {k: _ns(pid, k) for k in NAMESPACES}
        with open(f"/proc/{pid}/cgroup") as f:
            seen["cgroup"] = f.read()
        with open(f"/proc/{pid}/status") as f:
            seen["nspid"] = next(line.split()[1:] for line in f if line.startswith("NSpid:"))

    # sh waits for /go so the process is still there when on_start looks at it.
    t = threading.Thread(target=lambda: seen.setdefault(
        "result", box.exec_run(["sh", "-c", GO], on_start=look)))
    t.start()
    try:
        eventually(lambda: "ns" in seen, what="on_start")
    finally:
        box.exec_run(["touch", "/go"])
        t.join(60)
    assert seen["result"].exit_code == 0
    assert seen["ns"] == {k: _ns(box.pid, k) for k in NAMESPACES}
    with open(f"/proc/{box.pid}/cgroup") as f:
        assert seen["cgroup"] == f.read()
    assert len(seen["nspid"]) == 2 and int(seen["nspid"][1]) > 1  # a pid inside the pid ns


def test_exec_gets_the_containers_security_settings(probebox):
    status = fbtest.parse_status(probebox.exec_run(["/probe", "caps"]).stdout.decode())
    assert status["CapEff"] == fbtest.DOCKER_CAPS & fbtest.host_capbnd()
    assert status["CapBnd"] == fbtest.DOCKER_CAPS & fbtest.host_capbnd()
    assert probebox.exec_run(["/probe", "nnp"]).stdout == b"1\n"
    seccomp = probebox.exec_run(["grep", "^Seccomp:", "/proc/self/status"]).stdout.split()
    assert seccomp[1] == b"2"
    # No fd of ours (or of the monitor) reaches the exec'd process: only 0-2.
    lines = probebox.exec_run(["/probe", "fds"]).stdout.decode().splitlines()
    dirfd = lines[0].split()[1]
    fds = sorted(line.split()[1] for line in lines[1:] if line.split()[1] != dirfd)
    assert fds == ["0", "1", "2"], lines


def test_exec_environment(box):
    r = box.exec_run(["sh", "-c", "echo $PATH; echo $HOSTNAME; echo $HOME"])
    assert r.stdout.decode().splitlines() == [fbtest.DEFAULT_PATH, "boxhost", "/root"]


# ------------------------------------------------------------------ exit codes and errors

def test_exec_exit_code_api(box):
    assert box.exec_run(["sh", "-c", "exit 7"]).exit_code == 7
    assert box.exec_run(["sh", "-c", "kill -9 $$"]).exit_code == 137
    r = box.exec_run("echo out; echo err >&2; exit 3")  # a string goes through /bin/sh -c
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    with pytest.raises(CommandNotFound):
        box.exec_run(["/no/such"])
    with pytest.raises(CommandNotExecutable):
        box.exec_run(["/etc/passwd"])
    assert box.reload().status == "running"


def test_exec_exit_code_cli(box):
    r = cli("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert cli("exec", box.id[:12], "true").returncode == 0
    r = cli("exec", "box", "/no/such")
    assert r.returncode == 127 and "not found" in one_line_error(r)
    r = cli("exec", "box", "/etc/passwd")
    assert r.returncode == 126
    one_line_error(r)


def test_exec_options_cli(box):
    r = cli("exec", "-e", "FOO=bar", "--env=BAZ=qux", "-w", "/tmp", "-u", "1000:1000", "box",
            "sh", "-c", 'echo "$FOO $BAZ $(pwd) $(id -u):$(id -g)"')
    assert (r.returncode, r.stdout) == (0, "bar qux /tmp 1000:1000\n"), r.stderr
    r = cli("exec", "-u", "nobody", "box", "id", "-un")
    assert r.stdout == "nobody\n"
    # Options after the container belong to the command.
    r = cli("exec", "box", "printf", "[%s]", "-e", "X=1", "-u", "-w")
    assert r.stdout == "[-e][X=1][-u][-w]"
    r = cli("exec", "-u", "nosuchuser", "box", "id")
    assert r.returncode == 1
    one_line_error(r)


def test_exec_options_api(box):
    r = box.exec_run(["sh", "-c", 'echo "$FOO $(pwd) $(id -u)"'], env=["FOO=1"], workdir="/etc",
                     user="65534")
    assert r.stdout == b"1 /etc 65534\n"


def test_exec_uses_the_containers_user_and_workdir(busybox):
    c = start(["sleep", "1000"], user="1000:1000", workdir="/tmp")
    try:
        assert c.exec_run(["sh", "-c", "echo $(id -u) $(pwd)"]).stdout == b"1000 /tmp\n"
    finally:
        c.remove(force=True)


def test_exec_interactive_passes_stdin(box):
    r = cli("exec", "-i", "box", "sh", "-c", "cat; echo done", input="piped in\n")
    assert (r.returncode, r.stdout) == (0, "piped in\ndone\n")
    r = cli("exec", "box", "cat")  # without -i, stdin is /dev/null
    assert (r.returncode, r.stdout) == (0, "")


def test_exec_tty(box):
    r = cli("exec", "-t", "box", "sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty")
    assert r.returncode == 0
    assert r.stdout.replace("\r\n", "\n") == "is-a-tty\n"


def test_exec_into_a_stopped_container_fails_cleanly(busybox):
    c = start(["sh", "-c", "exit 0"], name="gone")
    c.wait()
    with pytest.raises(ContainerStateError, match="not running"):
        c.exec_run(["true"])
    r = cli("exec", "gone", "true")
    assert r.returncode == 1
    assert "not running" in one_line_error(r)
    c.remove()


def test_exec_into_a_created_container_fails_cleanly(busybox):
    c = containers.create("busybox", ["sleep", "1000"], name="notyet")
    r = cli("exec", "notyet", "true")
    assert r.returncode == 1
    one_line_error(r)
    c.remove()


def test_exec_into_a_missing_container(fb_env):
    r = cli("exec", "nosuch", "true")
    assert r.returncode == 1
    assert "no such container" in one_line_error(r)


def test_exec_usage_errors(box):
    r = cli("exec", "box")
    assert r.returncode == 125
    assert "requires at least 2 arguments (CONTAINER COMMAND)" in r.stderr
    r = cli("exec", "--bogus", "box", "true")
    assert r.returncode == 125


def test_exec_process_dies_with_the_container(box):
    """The exec'd process is in the container's pid namespace: when its init dies, the
    kernel kills it too, and exec_run returns."""
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "r", box.exec_run(["sh", "-c", "echo started > /exec-started; exec sleep 1000"])))
    t.start()
    try:
        eventually(lambda: box.exec_run(["cat", "/exec-started"]).exit_code == 0,
                   what="the exec'd process")
        box.kill()
        t.join(60)
        assert not t.is_alive()
        assert result["r"].exit_code == 137
    finally:
        if t.is_alive():
            box.kill()
            t.join(60)


def test_many_execs_leave_nothing(box):
    for i in range(30):
        assert box.exec_run(["sh", "-c", f"exit {i % 3}"]).exit_code == i % 3
    # Only the container's own process remains in its cgroups.
    eventually(lambda: pids_in(box.attrs["cgroups"]) == {box.pid}, what="execs gone")
    assert running(box.pid)
