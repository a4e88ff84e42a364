"""The commands a Docker user reaches for beyond run/ps/stop: version and --version,
pause/unpause, restart, update, exec -d and the `container` group, from the command
line, compared with what Docker documents: output shape, exit code, side effects.

Real containers; no timing assertions: states are polled for (`eventually`), and
"paused" is shown by a counter that stops advancing while the test itself waits for
a later handshake."""
import json
import os
import re

import pytest
from waiting import eventually

from fbtest import host_cgroup_dir, read
from test_lifecycle import cli, one_line_error, reap  # noqa: F401
from test_lifecycle import ok, inspect, cleanup  # noqa: F401

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def run_d(*args):
    r = ok(cli("run", "-d", *args))
    assert HEX64.match(r.stdout.strip())
    return r.stdout.strip()


# ------------------------------------------------------------------ version

def test_version_flag_and_command():
    import fastbox
    r = ok(cli("--version"))
    assert r.stdout == f"fastbox version {fastbox.__version__}\n"
    assert ok(cli("-v")).stdout == r.stdout
    out = ok(cli("version")).stdout
    assert out.startswith("Client:\n Version:")
    assert f" Version:           {fastbox.__version__}" in out
    assert "\nEngine:\n" in out and f"Kernel Version:    {os.uname().release}" in out


# ------------------------------------------------------------------ pause / unpause

def _freezer_state(pid):
    from fastbox.runtime import cgroup
    if cgroup.layout().v1.get("freezer"):
        return read(host_cgroup_dir(pid, "freezer") + "/freezer.state")
    events = read(host_cgroup_dir(pid, "") + "/cgroup.events")
    return "FROZEN" if "frozen 1" in events.splitlines() else "THAWED"


def _counter(ref):
    lines = ok(cli("logs", ref)).stdout.split()
    return int(lines[-1]) if lines else -1


def test_pause_freezes_every_process_and_unpause_thaws(busybox, cleanup):
    ref = run_d("--name", "ticker", "busybox", "sh", "-c",
                "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done")
    cleanup.append(ref)
    eventually(lambda: _counter("ticker") > 2, what="the counter ticking")
    pid = inspect("ticker")["State"]["Pid"]

    r = ok(cli("pause", "ticker"))
    assert r.stdout == "ticker\n"
    assert _freezer_state(pid) == "FROZEN"
    state = inspect("ticker")["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    frozen_at = _counter("ticker")
    # exec into a paused container, pause twice: one-line errors, nothing changes
    r = cli("exec", "ticker", "true")
    assert r.returncode != 0 and "paused" in one_line_error(r)
    r = cli("pause", "ticker")
    assert r.returncode != 0 and "already paused" in one_line_error(r)
    # ps says so as Docker's does: "Up 2 seconds (Paused)", State paused, status=paused
    row = ok(cli("ps", "--filter", "status=paused", "--format", "{{.State}}|{{.Status}}")).stdout
    assert row.startswith("paused|Up ") and row.rstrip().endswith(" (Paused)"), row
    assert ok(cli("ps", "-q", "--filter", "status=running")).stdout == ""
    # it stays frozen while we look (no tick for as long as three more `logs` take)
    for _ in range(3):
        assert _counter("ticker") == frozen_at

    assert ok(cli("unpause", "ticker")).stdout == "ticker\n"
    assert _freezer_state(pid) == "THAWED"
    eventually(lambda: _counter("ticker") > frozen_at, what="the counter ticking again")
    assert inspect("ticker")["State"]["Status"] == "running"
    r = cli("unpause", "ticker")
    assert r.returncode != 0 and "not paused" in one_line_error(r)


def test_stop_and_rm_of_a_paused_container(busybox, cleanup):
    """Docker kills a paused container at once on stop (its SIGTERM could not be
    handled), and rm -f removes it; a non-KILL signal is refused while paused."""
    a = run_d("busybox", "sleep", "1000")
    b = run_d("busybox", "sleep", "1000")
    cleanup.extend([a, b])
    ok(cli("pause", a))
    ok(cli("pause", b))
    r = cli("kill", "-s", "TERM", a)
    assert r.returncode != 0 and "paused" in one_line_error(r)
    assert ok(cli("stop", a)).stdout == a + "\n"
    assert inspect(a)["State"]["ExitCode"] == 137
    ok(cli("rm", "-f", b))
    assert cli("inspect", b).returncode != 0


# ------------------------------------------------------------------ restart

def test_restart_keeps_the_writable_layer_and_starts_a_new_process(busybox, cleanup):
    ref = run_d("--name", "again", "busybox", "sh", "-c",
                "trap 'exit 0' TERM; while true; do sleep 0.05; done")
    cleanup.append(ref)
    ok(cli("exec", "again", "sh", "-c", "echo kept > /marker"))
    before = inspect("again")["State"]["Pid"]
    r = ok(cli("restart", "-t", "5", "again"))
    assert r.stdout == "again\n"
    state = inspect("again")["State"]
    assert state["Running"] and state["Pid"] != before
    assert ok(cli("exec", "again", "cat", "/marker")).stdout == "kept\n"


def test_restart_of_a_stopped_container_starts_it(busybox, cleanup):
    ref = ok(cli("create", "busybox", "sleep", "1000")).stdout.strip()
    cleanup.append(ref)
    ok(cli("restart", ref))
    assert inspect(ref)["State"]["Status"] == "running"
    r = cli("restart", "nosuch")
    assert r.returncode != 0 and "no such container" in one_line_error(r)


# ------------------------------------------------------------------ update

def _limits(pid):
    from fastbox.runtime import cgroup
    if cgroup.layout().v1:
        return (read(host_cgroup_dir(pid, "memory") + "/memory.limit_in_bytes"),
                read(host_cgroup_dir(pid, "pids") + "/pids.max"),
                read(host_cgroup_dir(pid, "cpu") + "/cpu.cfs_quota_us"))
    d = host_cgroup_dir(pid, "")
    return (read(d + "/memory.max"), read(d + "/pids.max"), read(d + "/cpu.max").split()[0])


def test_update_changes_a_running_containers_cgroups(busybox, cleanup):
    ref = run_d("--name", "limited", "-m", "256m", "busybox", "sleep", "1000")
    cleanup.append(ref)
    pid = inspect("limited")["State"]["Pid"]
    r = ok(cli("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
               "--cpus", "0.5", "limited"))
    assert r.stdout == "limited\n"
    assert _limits(pid) == (str(64 << 20), "50", "50000")
    host = inspect("limited")["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"], host["NanoCpus"]) == \
        (64 << 20, 128 << 20, 50, 500_000_000)
    # the limit holds inside: a 51st process cannot be made
    r = cli("exec", "limited", "sh", "-c", "for i in $(seq 60); do sleep 2 & done; wait")
    assert r.returncode != 0 or "can't fork" in r.stderr or "Resource" in r.stderr


def test_update_errors_are_one_line(busybox, cleanup):
    ref = run_d("busybox", "sleep", "1000")
    cleanup.append(ref)
    for args, text in ((["update", ref], "one or more flags"),
                       (["update", "--memory", "lots", ref], "--memory"),
                       (["update", "--cpus", "0.5", "nosuch"], "no such container")):
        r = cli(*args)
        assert r.returncode != 0
        assert text in one_line_error(r)


def test_update_of_a_created_container_applies_at_its_start(busybox, cleanup):
    ref = ok(cli("create", "busybox", "sleep", "1000")).stdout.strip()
    cleanup.append(ref)
    ok(cli("update", "--pids-limit", "33", ref))
    ok(cli("start", ref))
    pid = inspect(ref)["State"]["Pid"]
    assert _limits(pid)[1] == "33"


# ------------------------------------------------------------------ exec -d

def test_exec_detached_returns_at_once_and_the_program_runs_on(busybox, cleanup):
    ref = run_d("busybox", "sleep", "1000")
    cleanup.append(ref)
    r = ok(cli("exec", "-d", ref, "sh", "-c", "while [ ! -e /go ]; do sleep 0.02; done; "
                                              "echo done > /out"))
    assert r.stdout == "" and r.stderr == ""
    # it is still waiting for the handshake: the CLI did not wait for it
    assert cli("exec", ref, "cat", "/out").returncode != 0
    ok(cli("exec", ref, "touch", "/go"))
    eventually(lambda: cli("exec", ref, "cat", "/out").stdout == "done\n", what="/out")


def test_exec_detached_reports_a_start_failure(busybox, cleanup):
    ref = run_d("busybox", "sleep", "1000")
    cleanup.append(ref)
    r = cli("exec", "-d", ref, "no-such-program")
    assert r.returncode == 127
    assert "executable file not found" in one_line_error(r)


# ------------------------------------------------------------------ the container group

def test_container_group_has_the_container_commands(busybox):
    r = ok(cli("container", "run", "--rm", "busybox", "echo", "hi"))
    assert r.stdout == "hi\n"
    ref = ok(cli("container", "create", "--name", "grouped", "busybox", "sleep", "1000")).stdout.strip()
    try:
        ok(cli("container", "start", "grouped"))
        assert ok(cli("container", "ls", "-q")).stdout.split() == [ref[:12]]
        assert json.loads(ok(cli("container", "inspect", "grouped")).stdout)[0]["Id"] == ref
        ok(cli("container", "pause", "grouped"))
        ok(cli("container", "unpause", "grouped"))
        assert ok(cli("container", "exec", "grouped", "echo", "in")).stdout == "in\n"
    finally:
        assert ok(cli("container", "rm", "-f", "grouped")).stdout == "grouped\n"


# ------------------------------------------------------------------ events

def _events(*args):
    lines = ok(cli("events", "--since", "10m", "--until", "0s", *args)).stdout.splitlines()
    return [line.split()[2] for line in lines]  # TIME container ACTION ID (attrs)


def test_events_log_the_lifecycle(busybox):
    ref = ok(cli("run", "-d", "--name", "evented", "--label", "team=x", "busybox", "sh", "-c",
                 "while [ ! -e /go ]; do sleep 0.02; done; exit 3")).stdout.strip()
    ok(cli("pause", ref))
    ok(cli("unpause", ref))
    ok(cli("exec", ref, "touch", "/go"))
    eventually(lambda: inspect(ref)["State"]["Status"] == "exited", what="exited")
    ok(cli("rm", ref))
    assert _events() == ["create", "start", "pause", "unpause", "die", "destroy"]
    line = ok(cli("events", "--since", "10m", "--until", "0s", "-f", "event=die")).stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z container die [0-9a-f]{64} "
                    r"\(exitCode=3, image=busybox, name=evented, team=x\)\n$", line), line
    as_json = [json.loads(x) for x in ok(cli("events", "--since", "10m", "--until", "0s",
                                             "--format", "{{json .}}")).stdout.splitlines()]
    assert {e["Actor"]["ID"] for e in as_json} == {ref}
    assert _events("-f", "container=evented", "-f", "event=start") == ["start"]
    assert _events("-f", "label=team=y") == []
    r = cli("events", "--since", "yesterday-ish", "--until", "0s")
    assert r.returncode != 0 and "--since" in one_line_error(r)
    r = cli("events", "-f", "colour=red", "--until", "0s")
    assert r.returncode != 0 and "invalid filter" in one_line_error(r)


def test_events_of_foreground_containers(busybox):
    """A foreground --rm container shows as Docker's do: create, start, die (its exit
    code), destroy; a kept one create, start, die."""
    r = cli("run", "--rm", "--name", "fg-rm", "--label", "team=z", "busybox", "sh", "-c",
            "exit 5")
    assert r.returncode == 5, r.stderr
    lines = ok(cli("events", "--since", "10m", "--until", "0s", "-f",
                   "container=fg-rm")).stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["create", "start", "die", "destroy"], lines
    assert len({line.split()[3] for line in lines}) == 1
    die = [line for line in lines if " die " in line][0]
    assert die.endswith("(exitCode=5, image=busybox, name=fg-rm, team=z)"), die
    r = cli("run", "--name", "fg-kept", "busybox", "true")
    assert r.returncode == 0, r.stderr
    try:
        assert _events("-f", "container=fg-kept") == ["create", "start", "die"]
    finally:
        ok(cli("rm", "fg-kept"))


def test_events_follow_until_interrupted(busybox):
    import signal
    import subprocess
    from test_lifecycle import FASTBOX
    p = subprocess.Popen([FASTBOX, "events", "-f", "event=start"], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        ref = ok(cli("run", "-d", "busybox", "true")).stdout.strip()
        line = p.stdout.readline()
        assert f" container start {ref} " in line
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        p.stdout.close()
    cli("rm", "-f", ref)


def test_a_paused_container_whose_monitor_died_is_swept(busybox):
    """The janitor kills what a dead monitor left: frozen tasks too (thawed, so that
    SIGKILL lands), and removes their cgroups."""
    import signal
    from test_lifecycle import session_cgroups
    ref = ok(cli("run", "-d", "busybox", "sleep", "1000")).stdout.strip()
    ok(cli("pause", ref))
    info = inspect(ref)
    os.kill(info["MonitorPid"], signal.SIGKILL)
    eventually(lambda: inspect(ref)["State"]["Status"] == "exited", what="swept")
    eventually(lambda: session_cgroups(ref) == [], what="its cgroups gone")
    ok(cli("rm", ref))
