"""The lifecycle from the command line: `run -d` outliving (and surviving the SIGKILL
of) the CLI that started it, names taken by two CLIs at once, create/start/start -a,
ps/stop/kill/wait/rm/inspect/rename/container prune, and their one-line errors.

Where a test kills the CLI "at a point", the point is reached through a handshake, not
a sleep: the CLI blocked on the record's lock while the monitor already runs, or the
starting process frozen (v1 freezer cgroup) while the core builds the container.
"""
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import time

import pytest

from fastbox import containers

from test_lifecycle import (FASTBOX, GO, pids_in, cli, eventually, kill_leftovers,  # noqa: F401
                            monitors_of, one_line_error, proc_stat, reap, reap_dead_children,
                            record_dir, running, session_cgroups, inspect)

HEX64 = re.compile(r"^[0-9a-f]{64}$")
FREEZER = "/sys/fs/cgroup/freezer"


def run_detached(*args):
    r = cli("run", "-d", *args)
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert HEX64.match(cid) and r.stdout == cid + "\n", r.stdout
    return cid


def ps(*flags):
    """Short ids that `fastbox ps FLAGS -q` lists."""
    r = cli("ps", "-q", *flags)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def ps_json(all=True):
    """`ps --format json` rows (Docker's fields) by full id."""
    r = cli("ps", "--no-trunc", "--format", "json", *(["-a"] if all else []))
    assert r.returncode == 0, r.stderr
    return {rec["ID"]: rec for rec in map(json.loads, r.stdout.splitlines())}


def cli_children():
    """Live children of ours that are still a `fastbox` process (the C client, the Python
    CLI it execs, or the intermediate that forks to start a container, not yet exec'd into
    the monitor)."""
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(name)
            if st and st[2] == me and st[1] != "Z" and st[0] in ("fastbox", "fastbox-py"):
                out.append(int(name))
    return out


def container_ids_on_disk():
    from fastbox import config
    d = config.containers_dir()
    return sorted(e for e in os.listdir(d) if HEX64.match(e)) if os.path.isdir(d) else []


def check_consistent_and_clean_up():
    """After a CLI died at some point of `run -d`: once nothing is still starting, every
    container process that runs has a live monitor and is listed as running (what `ps`
    prints); removing every record (`rm -f`) then leaves no cgroup, monitor, process or
    record. The API is used here for speed; the tests check the CLI's own output."""
    eventually(lambda: not cli_children(), what="no starting process left")
    reap_dead_children()
    listed = {c.id: c for c in containers.list_containers(all=True)}
    problems = []
    for cid in sorted({os.path.basename(d) for d in session_cgroups()}):
        tasks = pids_in(session_cgroups(cid))
        if not tasks:
            continue
        if not monitors_of(cid):
            problems.append(f"container {cid[:12]} runs (pids {sorted(tasks)}) without a monitor")
        state = listed[cid].status if cid in listed else "no record"
        if state != "running":
            problems.append(f"container {cid[:12]} runs but ps does not list it as running "
                            f"(record: {state})")
    for cid, c in listed.items():
        try:
            c.remove(force=True)
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(f"rm -f {cid[:12]}: {type(e).__name__}: {e}")
    for cid in listed:
        eventually(lambda: not monitors_of(cid), what=f"{cid[:12]}'s monitor gone")
    reap_dead_children()
    left = sorted({os.path.basename(d) for d in session_cgroups()})
    if left:
        problems.append(f"cgroups of {[c[:12] for c in left]} left after rm -f of every record")
    if container_ids_on_disk():
        problems.append(f"records left: {[c[:12] for c in container_ids_on_disk()]}")
    for cid in left:
        kill_leftovers(cid)
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------ run -d and the CLI's death

def test_run_detached_outlives_the_cli(busybox):
    cid = run_detached("--name", "svc", "busybox", "sleep", "1000")
    # The CLI has exited (cli() waited for it); the container runs on.
    info = inspect("svc")
    assert info["Id"] == cid and info["State"]["Running"] is True
    assert running(info["State"]["Pid"]) and running(info["MonitorPid"])
    assert ps() == [cid[:12]]
    r = cli("ps")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["CONTAINER", "ID"]
    assert lines[1].split()[0] == cid[:12] and " Up " in lines[1] and lines[1].endswith("svc")
    assert cli("rm", "-f", "svc").returncode == 0
    eventually(lambda: not monitors_of(cid), what="monitor gone")
    assert ps("-a") == []


def test_cli_sigkilled_right_after_printing_the_id(busybox):
    p = subprocess.Popen([FASTBOX, "run", "-d", "busybox", "sh", "-c", "echo alive; exec sleep 1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        cid = p.stdout.readline().decode().strip()
        p.kill()
    finally:
        p.wait()
        p.stdout.close()
        p.stderr.close()
    assert HEX64.match(cid)
    assert ps() == [cid[:12]]
    c = containers.get(cid)
    assert c.status == "running" and running(c.pid)
    eventually(lambda: "alive" in c.logs().decode(), what="output logged")
    assert c.exec_run(["true"]).exit_code == 0
    c.stop(timeout=0)
    assert c.reload().status == "exited"
    assert cli("rm", cid).returncode == 0
    check_consistent_and_clean_up()


def test_cli_sigkilled_while_recording_the_start(busybox, fb_env):
    """Killed after the monitor runs but before the CLI wrote "running" into the record
    (held there on the record's lock): the container keeps running, shows as running,
    and rm -f cleans it."""
    cdir = os.path.join(fb_env.root, "containers")
    for attempt in range(10):
        known = set(container_ids_on_disk())
        p = subprocess.Popen([FASTBOX, "run", "-d", "busybox", "sleep", "1000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        lock_fd = None
        try:
            cid = eventually(lambda: next((c for c in container_ids_on_disk() if c not in known
                                           and os.path.exists(os.path.join(cdir, c, "state.json"))),
                                          None), interval=0.0002, what="the record")
            lock_fd = os.open(os.path.join(cdir, cid, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with open(os.path.join(cdir, cid, "state.json")) as f:
                won = json.load(f)["status"] == "created"
            if won:  # the CLI cannot record the start until we let go
                eventually(lambda: monitors_of(cid), what="the monitor")
                p.kill()
        finally:
            p.wait()
            if lock_fd is not None:
                os.close(lock_fd)
            p.stdout.close()
            p.stderr.close()
        if won:
            break
        check_consistent_and_clean_up()  # we were too late this time: try again
    else:
        pytest.fail("never took the record's lock before the CLI")
    assert p.returncode == -signal.SIGKILL
    pid = eventually(lambda: pids_in(session_cgroups(cid)), what="the container's process")
    assert all(running(x) for x in pid)
    assert ps() == [cid[:12]], "ps does not list the running container"
    check_consistent_and_clean_up()


@contextlib.contextmanager
def freezer_group():
    """A v1 freezer cgroup under this session's cgroup parent (conftest's leak check
    covers it), emptied back into our own freezer cgroup and removed afterwards."""
    from fastbox import config
    if not os.path.isdir(FREEZER):
        pytest.skip("no v1 freezer hierarchy")
    with open("/proc/self/cgroup") as f:
        own = next(line.rstrip("\n").split(":", 2)[2] for line in f
                   if "freezer" in line.split(":")[1].split(","))
    path = os.path.join(FREEZER, config.cgroup_parent(), "starting")
    os.makedirs(path)
    try:
        yield path
    finally:
        _write(path + "/freezer.state", "THAWED")
        for pid in open(path + "/cgroup.procs").read().split():
            with contextlib.suppress(OSError):
                _write(FREEZER + own + "/cgroup.procs", pid)
        eventually(lambda: _try_rmdir(path), what=f"rmdir {path}")


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _try_rmdir(path):
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def test_cli_sigkilled_while_the_container_is_being_built(busybox):
    """Killed while the starting process (forked from the CLI) is inside the core,
    building the container, before it reported back: whatever it then does, no
    container may be left running unwatched and unlisted."""
    with freezer_group() as group:
        p = subprocess.Popen(["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "_",
                              FASTBOX, "run", "-d", "busybox", "sleep", "1000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        try:
            # The core makes the container's cgroups first thing: then it is building it.
            # (Containers join the freezer hierarchy too: our own group there is not one.)
            eventually(lambda: [c for c in session_cgroups() if c != group],
                       interval=0.0002, what="the container's cgroup")
            _write(group + "/freezer.state", "FROZEN")
            eventually(lambda: open(group + "/freezer.state").read().strip() == "FROZEN",
                       interval=0.001, what="frozen")
            # Thaw only the CLI (moving it out does) and kill it; the starter stays frozen.
            with open("/proc/self/cgroup") as f:
                own = next(line.rstrip("\n").split(":", 2)[2] for line in f
                           if "freezer" in line.split(":")[1].split(","))
            _write(FREEZER + own + "/cgroup.procs", str(p.pid))
            p.kill()
        finally:
            if p.poll() is None and str(p.pid) in open(group + "/cgroup.procs").read().split():
                _write(group + "/freezer.state", "THAWED")  # else a frozen p never dies
                p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
        _write(group + "/freezer.state", "THAWED")
        eventually(lambda: not cli_children(), what="the starter done")
    check_consistent_and_clean_up()


def test_cli_sigkilled_at_various_points(busybox):
    """SIGKILL `run -d` at fractions of its own duration (measured first): wherever it
    dies, the state stays consistent and rm -f cleans everything."""
    t0 = time.monotonic()
    run_detached("busybox", "sleep", "1000")
    whole = time.monotonic() - t0
    check_consistent_and_clean_up()
    for i in range(1, 7):
        p = subprocess.Popen([FASTBOX, "run", "-d", "busybox", "sleep", "1000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        time.sleep(whole * i / 6)
        p.kill()
        p.wait()
        check_consistent_and_clean_up()


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("round_", range(3))
def test_two_runs_with_one_name_at_once(busybox, round_):
    argv = [FASTBOX, "run", "-d", "--name", "x", "busybox", "sleep", "1000"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    wins = [r for r in results if r[0] == 0]
    losses = [r for r in results if r[0] != 0]
    assert len(wins) == 1 and len(losses) == 1, results
    cid = wins[0][1].strip()
    assert HEX64.match(cid)
    code, out, err = losses[0]
    assert code == 125 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: ") and '"/x"' in lines[0], err
    assert "already in use" in lines[0]
    assert ps() == [cid[:12]]
    assert inspect("x")["Id"] == cid
    assert cli("rm", "-f", "x").returncode == 0
    check_consistent_and_clean_up()


def test_name_in_use_error(busybox):
    run_detached("--name", "taken", "busybox", "sleep", "1000")
    r = cli("run", "-d", "--name", "taken", "busybox", "true")
    assert r.returncode == 125 and "already in use" in one_line_error(r)
    r = cli("create", "--name", "taken", "busybox", "true")
    assert r.returncode == 1
    one_line_error(r)
    assert cli("rm", "-f", "taken").returncode == 0
    check_consistent_and_clean_up()


# ------------------------------------------------------------------ create / start

def test_create_start_and_start_attach(busybox):
    for i in range(2):
        r = cli("create", "--name", f"sa{i}", "busybox", "sh", "-c", "echo out; echo err >&2; exit 5")
        assert r.returncode == 0 and HEX64.match(r.stdout.strip())
        info = inspect(f"sa{i}")
        assert info["State"]["Status"] == "created" and info["State"]["Pid"] == 0
        r = cli("start", "-a", f"sa{i}")
        assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
        assert inspect(f"sa{i}")["State"]["ExitCode"] == 5
        r = cli("start", "-a", f"sa{i}")  # a stopped container starts again
        assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")
    r = cli("create", "--name", "bg", "busybox", "sleep", "1000")
    r = cli("start", "bg")
    assert (r.returncode, r.stdout) == (0, "bg\n")
    assert inspect("bg")["State"]["Running"] is True
    r = cli("start", "bg")  # Docker: starting a running container is a no-op
    assert (r.returncode, r.stdout, r.stderr) == (0, "bg\n", "")
    check_consistent_and_clean_up()


def test_create_takes_runs_options(busybox):
    r = cli("create", "--name", "opts", "-e", "A=1", "-w", "/tmp", "-m", "64m", "busybox",
            "sh", "-c", 'echo "$A $(pwd)"')
    assert r.returncode == 0, r.stderr
    info = inspect("opts")
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    r = cli("start", "-a", "opts")
    assert (r.returncode, r.stdout) == (0, "1 /tmp\n")
    check_consistent_and_clean_up()


# ------------------------------------------------------------------ stop / kill / wait / rm

def test_stop_cli(busybox):
    run_detached("--name", "s1", "busybox", "sleep", "1000")
    t0 = time.monotonic()
    r = cli("stop", "-t", "1", "s1")
    assert time.monotonic() - t0 >= 1.0
    assert (r.returncode, r.stdout) == (0, "s1\n")
    assert inspect("s1")["State"]["ExitCode"] == 137
    lines = cli("ps", "-a").stdout.splitlines()
    assert "Exited (137) " in lines[1]
    run_detached("--name", "s2", "busybox", "sh", "-c",
                 "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done")
    eventually(lambda: "ready" in cli("logs", "s2").stdout, what="ready")
    r = cli("stop", "--time", "60", "s2")
    assert r.returncode == 0
    assert inspect("s2")["State"]["ExitCode"] == 42
    r = cli("wait", "s1", "s2")
    assert (r.returncode, r.stdout) == (0, "137\n42\n")
    r = cli("stop", "nosuch")
    assert r.returncode == 1
    one_line_error(r)
    check_consistent_and_clean_up()


def test_kill_cli(busybox):
    cid = run_detached("busybox", "sh", "-c",
                       "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done")
    eventually(lambda: "ready" in cli("logs", cid).stdout, what="ready")
    assert cli("kill", "-s", "USR1", cid[:12]).returncode == 0
    eventually(lambda: "usr1" in cli("logs", cid).stdout, what="USR1 handled")
    r = cli("kill", "-s", "NOSUCH", cid)
    assert r.returncode == 1 and "invalid signal" in one_line_error(r)
    r = cli("kill", "--signal", "9", cid)
    assert (r.returncode, r.stdout) == (0, cid + "\n")
    assert cli("wait", cid).stdout == "137\n"
    r = cli("kill", cid)
    assert r.returncode == 1 and "not running" in one_line_error(r)
    check_consistent_and_clean_up()


def waiting_on_a_pidfd(pid):
    """True once process pid holds a pidfd (`fastbox wait` blocks on the monitor's)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]":
                return True
    return False


def test_wait_cli_blocks_until_exit(busybox):
    cid = run_detached("busybox", "sh", "-c", f"{GO}; exit 3")
    p = subprocess.Popen([FASTBOX, "wait", cid], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        eventually(lambda: waiting_on_a_pidfd(p.pid), what="fastbox wait blocked")
        assert p.poll() is None
        assert containers.get(cid).exec_run(["touch", "/go"]).exit_code == 0
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
    assert (p.returncode, out) == (0, "3\n"), err
    check_consistent_and_clean_up()


def test_rm_cli(busybox):
    cid = run_detached("--name", "r", "busybox", "sleep", "1000")
    r = cli("rm", "r")
    assert r.returncode == 1 and "stop it first or use -f" in one_line_error(r)
    c = containers.get(cid)
    assert c.status == "running"
    pids = {c.pid, c.inspect()["MonitorPid"]}
    r = cli("rm", "-f", "r")
    assert (r.returncode, r.stdout) == (0, "r\n")
    assert not any(running(p) for p in pids)
    assert session_cgroups() == [] and not os.path.exists(record_dir(cid))
    r = cli("rm", "r")
    assert r.returncode == 1 and "no such container" in one_line_error(r)
    check_consistent_and_clean_up()


@pytest.mark.parametrize("command", [["stop", "-t", "30"], ["rm", "-f"], ["wait"]])
def test_commands_on_a_detached_rm_container(busybox, command):
    """`run -d --rm`: the record goes with the container, yet stop / rm -f / wait of it
    succeed (as with Docker) and nothing is left."""
    cid = run_detached("--rm", "--name", "eph", "busybox", "sh", "-c",
                       f"trap 'exit 3' TERM; echo ready; {GO}; exit 0")
    eventually(lambda: "ready" in cli("logs", "eph").stdout, what="ready")
    p = None
    if command == ["wait"]:
        p = subprocess.Popen([FASTBOX, "wait", "eph"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        eventually(lambda: waiting_on_a_pidfd(p.pid) or p.poll() is not None,
                   what="fastbox wait blocked")
        containers.get(cid).exec_run(["touch", "/go"])
        out, err = p.communicate(timeout=60)
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    else:
        r = cli(*command, "eph")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    eventually(lambda: not os.path.exists(record_dir(cid)), what="the record removed")
    check_consistent_and_clean_up()


def test_run_detached_rm_cleans_up_after_itself(busybox):
    cid = run_detached("--rm", "--name", "gone", "busybox", "sh", "-c", f"{GO}; exit 0")
    assert ps() == [cid[:12]]
    containers.get(cid).exec_run(["touch", "/go"])
    eventually(lambda: not os.path.exists(record_dir(cid)), what="the record removed")
    eventually(lambda: not monitors_of(cid), what="the monitor gone")
    assert ps("-a") == [] and session_cgroups() == []
    assert cli("inspect", "gone").returncode == 1
    run_detached("--rm", "--name", "gone", "busybox", "true")  # the name is free again
    eventually(lambda: ps("-a") == [] and not container_ids_on_disk(), what="second one gone")
    check_consistent_and_clean_up()


def test_killed_monitor_cli(busybox):
    cid = run_detached("busybox", "sleep", "1000")
    info = inspect(cid)
    os.kill(info["MonitorPid"], signal.SIGKILL)
    eventually(lambda: not running(info["MonitorPid"]), what="the monitor dead")
    reap_dead_children()
    assert ps() == []
    lines = cli("ps", "-a").stdout.splitlines()
    assert cid[:12] in lines[1] and "Exited (" in lines[1]
    try:
        r = cli("rm", cid)
        assert r.returncode == 0, r.stderr
        assert not running(info["State"]["Pid"]), "the container still runs after rm"
        assert session_cgroups() == [], "its cgroups are left after rm"
    finally:
        kill_leftovers(cid)


# ------------------------------------------------------------------ ps / inspect / rename / prune

def test_ps_formats(busybox):
    up = run_detached("--name", "up", "busybox", "sleep", "1000")
    down = run_detached("--name", "down", "busybox", "sh", "-c", "exit 4")
    assert cli("wait", "down").stdout == "4\n"
    assert ps() == [up[:12]]
    assert sorted(ps("-a")) == sorted([up[:12], down[:12]])
    assert sorted(ps("--all")) == sorted(ps("-a"))
    records = ps_json()
    assert set(records) == {up, down}
    assert records[up]["State"] == "running" and records[up]["Names"] == "up"
    assert records[up]["Status"].startswith("Up ")
    assert records[down]["State"] == "exited" and records[down]["Status"].startswith("Exited (4) ")
    assert set(ps_json(all=False)) == {up}
    lines = cli("container", "ls", "-a").stdout.splitlines()
    assert len(lines) == 3
    check_consistent_and_clean_up()


def test_inspect_cli(busybox):
    cid = run_detached("--name", "ins", "-e", "K=V", "--memory", "32m", "busybox", "sleep", "1000")
    r = cli("inspect", "ins", cid[:12])
    assert r.returncode == 0
    a, b = json.loads(r.stdout)
    assert a == b or (a["Id"] == b["Id"] == cid)
    assert a["Name"] == "/ins" and a["State"]["Running"] is True
    assert a["Config"]["Env"] == ["K=V"] and a["HostConfig"]["Memory"] == 32 * 1024 * 1024
    assert proc_stat(a["MonitorPid"])[0] == "fastbox-monitor"
    r = cli("inspect", "nosuchthing")
    assert r.returncode == 1
    check_consistent_and_clean_up()


def test_rename_cli(busybox):
    cid = run_detached("--name", "old", "busybox", "sleep", "1000")
    assert cli("rename", "old", "new").returncode == 0
    assert inspect("new")["Id"] == cid and inspect("new")["Name"] == "/new"
    assert cli("inspect", "old").returncode == 1
    run_detached("--name", "old", "busybox", "sleep", "1000")
    r = cli("rename", "new", "old")
    assert r.returncode == 1 and "already in use" in one_line_error(r)
    r = cli("rename", "nosuch", "whatever")
    assert r.returncode == 1
    check_consistent_and_clean_up()


def test_container_prune_cli(busybox):
    live = run_detached("--name", "live", "busybox", "sleep", "1000")
    dead = run_detached("--name", "dead", "busybox", "true")
    cli("wait", "dead")
    made = cli("create", "busybox", "true").stdout.strip()
    r = cli("container", "prune", "-f")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "Deleted Containers:" and sorted(lines[1:3]) == sorted([dead, made])
    assert lines[3] == "" and lines[4].startswith("Total reclaimed space: ")
    assert ps("-a") == [live[:12]]
    assert cli("container", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    check_consistent_and_clean_up()


def test_run_detached_with_a_terminal(busybox):
    cid = run_detached("-t", "busybox", "sh", "-c", "test -t 1 && echo tty-ok; exec sleep 1000")
    eventually(lambda: "tty-ok" in cli("logs", cid).stdout, what="output through the terminal")
    r = cli("exec", "-t", cid, "sh", "-c", "test -t 0 && echo exec-tty-ok")
    assert r.returncode == 0 and "exec-tty-ok" in r.stdout
    check_consistent_and_clean_up()


# ------------------------------------------------------------------ usage errors

# Docker: a flag's error exits 125 (cobra's FlagErrorFunc), a missing argument or an
# unknown command 1.
@pytest.mark.parametrize("args, code", [(["stop"], 1), (["logs", "--tail", "x", "c"], 125),
                                        (["rm"], 1), (["kill"], 1), (["nosuchcommand"], 1),
                                        (["inspect"], 1)])
def test_usage_errors_are_one_message(fb_env, args, code):
    r = cli(*args)
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.returncode == code, (r.returncode, r.stderr[-500:])
