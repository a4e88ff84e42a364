"""`run` options a Docker user reaches for: --label/--label-file, --stop-signal,
--stop-timeout, --shm-size, --ulimit, --cidfile, --init (zombies reaped, signals
forwarded, no host binary or fd reachable), --pull against a real registry, and
--restart after a crash of the container and a SIGKILL of its monitor.

No timing assertions: a stop's outcome shows in its exit code (143: the program took
SIGTERM; 137: SIGKILL after the timeout)."""
import json
import os
import signal
import subprocess

import pytest
from waiting import eventually

from test_lifecycle import FASTBOX, cli, one_line_error, reap  # noqa: F401
from test_lifecycle import ok, inspect, cleanup  # noqa: F401

pytest_plugins = ["conftest_registry"]


def run_d(cleanup, *args):
    ref = ok(cli("run", "-d", *args)).stdout.strip()
    cleanup.append(ref)
    return ref


# ------------------------------------------------------------------ labels, stop, shm, ulimit

def test_labels_and_label_file(busybox, cleanup, tmp_path):
    f = tmp_path / "labels"
    f.write_text("# a comment\nteam=db\nshared=from-file\n\n")
    ref = ok(cli("create", "--label", "app=web", "-l", "shared=from-flag", "--label-file", str(f),
                 "--label", "empty", "busybox", "true")).stdout.strip()
    cleanup.append(ref)
    assert inspect(ref)["Config"]["Labels"] == {"app": "web", "team": "db",
                                                "shared": "from-flag", "empty": ""}
    r = cli("run", "--rm", "--label", "=x", "busybox", "true")
    assert r.returncode == 125 and "invalid label" in one_line_error(r)


def test_stop_signal_and_stop_timeout(busybox, cleanup):
    trap = "trap 'echo got-usr1; exit 3' USR1; while true; do sleep 0.05; done"
    a = run_d(cleanup, "--stop-signal", "USR1", "busybox", "sh", "-c", trap)
    assert inspect(a)["Config"]["StopSignal"] == "SIGUSR1"
    ok(cli("stop", a))
    assert inspect(a)["State"]["ExitCode"] == 3
    assert ok(cli("logs", a)).stdout == "got-usr1\n"
    # sh as PID 1 ignores SIGTERM: --stop-timeout 1 makes stop SIGKILL it after 1 s
    b = run_d(cleanup, "--stop-timeout", "1", "busybox", "sleep", "1000")
    assert inspect(b)["Config"]["StopTimeout"] == 1
    ok(cli("stop", b))
    assert inspect(b)["State"]["ExitCode"] == 137
    for flag, value in (("--stop-signal", "SIGNOPE"), ("--stop-timeout", "soon")):
        r = cli("run", "--rm", flag, value, "busybox", "true")
        assert r.returncode == 125 and flag in one_line_error(r)


def test_shm_size(busybox):
    out = ok(cli("run", "--rm", "--shm-size", "100m", "busybox", "sh", "-c",
                 "df -k /dev/shm | tail -1 | awk '{print $2}'; grep ' /dev/shm ' /proc/mounts")).stdout
    size, *mounts = out.splitlines()
    assert size == str(100 * 1024)
    mount = mounts[-1]  # the container's own, over the default one
    assert "nosuid" in mount and "nodev" in mount and "noexec" in mount
    default = ok(cli("run", "--rm", "busybox", "sh", "-c", "df -k /dev/shm | tail -1 | awk '{print $2}'"))
    assert default.stdout == "65536\n"


def test_ulimit_within_our_hard_limits(busybox):
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    out = ok(cli("run", "--rm", "--ulimit", f"nofile=100:{min(hard, 200)}", "--ulimit", "core=0",
                 "busybox", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c")).stdout
    assert out.split() == ["100", str(min(hard, 200)), "0"]
    if hard != resource.RLIM_INFINITY:
        r = cli("run", "--rm", "--ulimit", f"nofile=10:{hard + 1}", "busybox", "true")
        assert r.returncode == 125 and "CAP_SYS_RESOURCE" in one_line_error(r)
    for bad in ("nofile", "bogus=1", "nofile=2:1", "nofile=x"):
        r = cli("run", "--rm", "--ulimit", bad, "busybox", "true")
        assert r.returncode == 125 and "--ulimit" in one_line_error(r), bad


def test_cidfile(busybox, cleanup, tmp_path):
    path = tmp_path / "cid"
    ref = run_d(cleanup, "--cidfile", str(path), "busybox", "sleep", "1000")
    assert path.read_text() == ref
    r = cli("run", "-d", "--cidfile", str(path), "busybox", "sleep", "1000")
    assert r.returncode == 125 and "container ID file found" in one_line_error(r)
    assert len(ok(cli("ps", "-aq")).stdout.split()) == 1  # nothing was created
    fg = tmp_path / "fg"
    ok(cli("run", "--rm", "--cidfile", str(fg), "busybox", "true"))
    assert len(fg.read_text()) == 64


# ------------------------------------------------------------------ --init

ZOMBIE_MAKER = "sh -c 'sleep 0.05 &' ; exec sleep 1000"  # the sleep 0.05 is orphaned to PID 1


def zombies(ref):
    out = ok(cli("exec", ref, "ps", "-o", "stat,comm")).stdout.splitlines()[1:]
    return [line for line in out if line.split()[0].startswith("Z")]


def test_without_init_pid1_leaves_zombies(busybox, cleanup):
    """The control for the next test: with sleep as PID 1, the orphan stays a zombie."""
    ref = run_d(cleanup, "busybox", "sh", "-c", ZOMBIE_MAKER)
    eventually(lambda: zombies(ref), what="a zombie under a PID 1 that never waits")


def test_init_reaps_zombies_and_stop_reaches_the_program(busybox, cleanup):
    ref = run_d(cleanup, "--init", "busybox", "sh", "-c", ZOMBIE_MAKER)
    assert inspect(ref)["HostConfig"]["Init"] is True
    ps = ok(cli("exec", ref, "ps", "-o", "pid,comm,args")).stdout
    assert " 1 " in ps and "fastbox-init" in ps.splitlines()[1]
    eventually(lambda: "sleep 0.05" not in ok(cli("exec", ref, "ps", "-o", "args")).stdout.splitlines(),
               what="the orphan gone")
    assert zombies(ref) == []
    # sleep (PID 2 now) dies of the forwarded SIGTERM: 128 + 15, long before -t 60
    ok(cli("stop", "-t", "60", ref))
    assert inspect(ref)["State"]["ExitCode"] == 143


def test_init_passes_the_exit_code_and_reports_a_missing_program(busybox):
    r = cli("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7")
    assert r.returncode == 7
    r = cli("run", "--rm", "--init", "busybox", "no-such-program")
    assert r.returncode == 127 and "no-such-program" in r.stderr


def test_init_exposes_no_host_binary_or_fd(busybox, cleanup):
    """PID 1 runs from a sealed memfd: its exe is no host path and cannot be written;
    it holds no fd but stdio."""
    ref = run_d(cleanup, "--init", "busybox", "sleep", "1000")
    pid = inspect(ref)["State"]["Pid"]
    exe = os.readlink(f"/proc/{pid}/exe")
    assert exe.startswith("/memfd:fastbox-init"), exe
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    out = cli("exec", ref, "sh", "-c", "readlink /proc/1/exe; ls /proc/1/fd | tr '\\n' ' '; "
                                       "echo x > /proc/1/exe && echo WROTE").stdout
    assert out.splitlines()[0].startswith("/memfd:fastbox-init")
    assert out.splitlines()[1].split() == ["0", "1", "2"]
    assert "WROTE" not in out
    from fastbox.runtime import init_binary
    with open(init_binary.INIT, "rb") as f:  # the installed binary is untouched
        assert f.read(4) == b"\x7fELF"


# ------------------------------------------------------------------ --pull

def test_pull_never_and_a_bad_policy(busybox, own_store):
    r = cli("run", "--rm", "--pull", "never", "127.0.0.1:1/nothing/here:v1", "true")
    assert r.returncode == 125 and "no such image" in one_line_error(r)
    r = cli("run", "--rm", "--pull", "sometimes", "busybox", "true")
    assert r.returncode == 125 and "--pull" in one_line_error(r)


def test_run_pulls_a_missing_image(pushed, registry, own_store):
    ref = pushed["multi"]
    r = cli("run", "--rm", ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from multi\n"
    assert r.stderr.splitlines()[0] == f"Unable to find image '{ref}' locally"
    assert "Status: Downloaded newer image for" in r.stderr
    before = registry.log().count("/manifests/")
    ok(cli("run", "--rm", ref))  # present now: no registry request
    assert registry.log().count("/manifests/") == before
    ok(cli("run", "--rm", "--pull", "always", ref))
    assert registry.log().count("/manifests/") > before


# ------------------------------------------------------------------ --restart

def _state(ref):
    s = inspect(ref)
    return s["State"], s["RestartCount"]


def test_restart_on_failure_counts_and_gives_up(busybox, cleanup):
    ref = run_d(cleanup, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    eventually(lambda: _state(ref)[1] == 2 and not _state(ref)[0]["Running"]
               and ok(cli("logs", ref)).stdout.count("run") == 3, timeout=60,
               what="two restarts, then exited")
    assert inspect(ref)["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                           "MaximumRetryCount": 2}
    assert inspect(ref)["State"]["ExitCode"] == 3
    # on-failure does not restart a success
    ok_ref = run_d(cleanup, "--restart", "on-failure", "busybox", "true")
    eventually(lambda: not _state(ok_ref)[0]["Running"], what="exited")
    assert _state(ok_ref)[1] == 0


def test_restart_always_after_the_container_crashes(busybox, cleanup):
    ref = run_d(cleanup, "--restart", "always", "busybox", "sleep", "1000")
    first = inspect(ref)["State"]["Pid"]
    os.kill(first, signal.SIGKILL)  # a crash, not a stop
    eventually(lambda: _state(ref)[0]["Running"] and _state(ref)[0]["Pid"] != first,
               timeout=60, what="running again")
    assert _state(ref)[1] == 1
    # stop is a user's stop: no restart
    ok(cli("stop", "-t", "1", ref))
    assert not _state(ref)[0]["Running"]
    assert ok(cli("ps", "-q")).stdout == ""


def test_restart_after_the_monitor_is_sigkilled(busybox, cleanup):
    """The monitor dies: the next fastbox command sweeps the orphan and, as dockerd
    does when it comes back, starts the container again under a new monitor."""
    ref = run_d(cleanup, "--restart", "unless-stopped", "busybox", "sleep", "1000")
    info = inspect(ref)
    os.kill(info["MonitorPid"], signal.SIGKILL)
    eventually(lambda: ok(cli("ps", "-q")).stdout.strip() == ref[:12]
               and inspect(ref)["State"]["Pid"] != info["State"]["Pid"], timeout=60,
               what="running again")
    after = inspect(ref)
    assert after["MonitorPid"] != info["MonitorPid"] and after["RestartCount"] == 1
    with open(f"/proc/{after['MonitorPid']}/comm") as f:
        assert f.read().strip() == "fastbox-monitor"
    try:  # the old container process is gone, not left running unwatched
        os.kill(info["State"]["Pid"], 0)
        with open(f"/proc/{info['State']['Pid']}/stat") as f:
            assert f.read().split()[2] == "Z"
    except ProcessLookupError:
        pass


def test_restarting_while_the_back_off_runs(busybox, cleanup):
    """Docker's wording while the monitor waits out the back-off: `ps` (without -a too)
    shows "Restarting (CODE) N seconds ago", inspect State.Restarting and Status
    "restarting" (Running too, as Docker says); once it is stopped, neither."""
    import re
    ref = run_d(cleanup, "--restart", "always", "busybox", "sh", "-c", "exit 3")

    def restarting_row():
        out = ok(cli("ps", "--filter", f"id={ref}", "--format",
                     "{{.State}}|{{.Status}}")).stdout.strip()
        return out if out.startswith("restarting|") else None

    def all_three():  # in one back-off window (they grow: 0.1 s, 0.2 s, 0.4 s, ...)
        row = restarting_row()
        listed = ok(cli("ps", "-q", "--filter", "status=restarting")).stdout.split()
        state = inspect(ref)["State"]
        return (row, state) if row and ref[:12] in listed and state["Restarting"] else None

    row, state = eventually(all_three, timeout=90, what="restarting in ps, its filter, inspect")
    assert re.fullmatch(r"restarting\|Restarting \(3\) (Less than a second|\d+ seconds?) ago",
                        row), row
    assert state["Status"] == "restarting" and state["Running"] and state["ExitCode"] == 3
    ok(cli("stop", "-t", "1", ref))
    eventually(lambda: not inspect(ref)["State"]["Restarting"], timeout=30, what="stopped")
    state = inspect(ref)["State"]
    assert state["Status"] == "exited" and not state["Running"], state
    assert ok(cli("ps", "-q")).stdout == ""


def test_restart_policy_errors(busybox):
    for args, text in ((["--restart", "sometimes"], "invalid restart policy"),
                       (["--restart", "always:3"], "only on-failure"),
                       (["--rm", "--restart", "always"], "--restart and --rm")):
        r = cli("run", "-d", *args, "busybox", "true")
        assert r.returncode == 125 and text in one_line_error(r), args
