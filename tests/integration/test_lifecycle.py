"""Detached containers through the Python API (fastbox.containers): create/start/run,
stop/kill/wait, remove, rename, inspect, prune, the per-container monitor, reconciling a
record whose monitor died, and a burst of 200 containers that must leave nothing behind.

Real containers, no mocks. Nothing here asserts an upper bound on time: eventual states
are polled for with generous timeouts (`eventually`), and a test that waits on a process
handshake (a file created with exec, a line in the log) never depends on scheduling.

The helpers and the `reap` fixture at the top are shared with test_exec.py,
test_logs_stats.py and test_lifecycle_cli.py (imported as `from test_lifecycle import ...`,
the way conftest imports fbtest).

Monitors are children of this test process: fastbox double-forks them away from whoever
started the container, and the session made itself a child subreaper (tests/conftest.py),
so they reparent here instead of to init. A monitor that exits is then our zombie; the
`reap` fixture collects such dead children (only dead ones: a live leftover stays a leak
for conftest's check).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from cgroup_pids import pids_in
from waiting import eventually

from fastbox import containers
from fastbox.errors import ContainerStateError, FastboxError, SpecError

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
MONITOR_RSS_LIMIT_KB = 2048
GO = "while [ ! -e /go ]; do sleep 0.02; done"  # a handshake: wait for `exec touch /go`


# ------------------------------------------------------------------ helpers

def cli(*args, input=None, timeout=120):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          timeout=timeout)


def ok(r):
    """A command's result, which must have succeeded."""
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


def inspect(ref):
    """`fastbox inspect REF`'s one object."""
    (info,) = json.loads(ok(cli("inspect", ref)).stdout)
    return info


@pytest.fixture
def cleanup():
    """A list of containers to `rm -f` after the test."""
    made = []
    yield made
    for ref in made:
        cli("rm", "-f", ref)


def one_line_error(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def proc_stat(pid):
    """(comm, state, ppid) of pid, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    comm = data[data.index("(") + 1:data.rindex(")")]
    fields = data[data.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1])


def running(pid):
    """A live (not zombie) process."""
    st = proc_stat(pid) if pid else None
    return st is not None and st[1] != "Z"


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def monitors_of(cid):
    """Live fastbox-monitor processes whose arguments name container cid."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(name)
            if st and st[0] == "fastbox-monitor" and st[1] != "Z" \
                    and any(cid.encode() in a for a in cmdline(name)):
                out.append(int(name))
    return out


def session_cgroups(cid=None):
    """Container cgroups under this session's parent (all, or container cid's)."""
    from fastbox import config
    from fastbox.runtime import cgroup
    lay = cgroup.layout()
    parent = config.cgroup_parent()
    tops = set(lay.v1.values()) | ({lay.v2} if lay.v2 and not lay.v1 else set())
    found = []
    for top in sorted(tops):
        base = os.path.join(top, parent)
        if os.path.isdir(base):
            found += [os.path.join(base, e) for e in os.listdir(base)
                      if os.path.isdir(os.path.join(base, e)) and (cid is None or e == cid)]
    return found


def host_mounts_mentioning(text):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


def record_dir(cid):
    from fastbox import config
    return os.path.join(config.containers_dir(), cid)


def name_file(name):
    from fastbox import config
    return os.path.join(config.containers_dir(), "names", name)


def assert_nothing_left(cid, pids=(), name=None):
    """No record, directory, name, cgroup, mount or process of container cid remains."""
    assert not os.path.exists(record_dir(cid)), os.listdir(record_dir(cid))
    assert cid not in [c.id for c in containers.list_containers(all=True)]
    if name:
        assert not os.path.exists(name_file(name))
    assert session_cgroups(cid) == []
    assert host_mounts_mentioning(cid) == []
    # A --rm monitor removes the record, then exits: give it the moment in between.
    eventually(lambda: monitors_of(cid) == [], what="the monitor gone")
    for pid in pids:
        assert not running(pid), f"process {pid} {proc_stat(pid)} still runs"


def kill_leftovers(cid):
    """Last-resort cleanup after a failed assertion: kill what a container left in its
    cgroups and remove them (conftest would too, but report the same failure again)."""
    dirs = session_cgroups(cid)
    for pid in pids_in(dirs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in monitors_of(cid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for d in dirs:
        try:
            eventually(lambda: _rmdir(d), timeout=10, what=f"rmdir {d}")
        except AssertionError:
            pass
    reap_dead_children()


def _rmdir(d):
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def reap_dead_children(exclude=()):
    """waitpid every zombie child of ours (exited monitors, containers orphaned here)."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        st = proc_stat(name)
        if st and st[2] == me and st[1] == "Z":
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:
                pass


def _finishing_rm_monitors():
    """Our child monitors of --rm containers whose records are gone: about to exit."""
    me, out = os.getpid(), []
    for name in os.listdir("/proc"):
        st = proc_stat(name) if name.isdigit() else None
        if st and st[0] == "fastbox-monitor" and st[2] == me and st[1] != "Z":
            args = cmdline(name)
            if b"--remove-dir" in args:
                cid = args[args.index(b"--id") + 1].decode() if b"--id" in args else ""
                if cid and not os.path.exists(record_dir(cid)):
                    out.append(int(name))
    return out


@pytest.fixture(autouse=True)
def reap(fb_env):
    """After the test (before conftest's leak check), let --rm monitors that have
    removed their container finish, and reap the monitors that exited."""
    yield
    deadline = time.monotonic() + 5
    while _finishing_rm_monitors() and time.monotonic() < deadline:
        time.sleep(0.01)
    reap_dead_children()


def start(command, image="busybox", **options):
    """A detached container (API)."""
    return containers.run(image, command, **options)


def touch_go(c):
    """The handshake's other half. The container may exit as soon as /go exists; the end
    of its pid namespace then SIGKILLs the exec'd touch if that has not exited yet (the
    VM lane's emulated guest hits this window): 137 is that. A touch killed before it made
    /go would leave the container waiting, which every caller's own (timed) wait reports."""
    assert c.exec_run(["touch", "/go"]).exit_code in (0, 137)


def log_text(c):
    return c.logs().decode()


def wait_for_log(c, text, timeout=30):
    return eventually(lambda: text in log_text(c), timeout=timeout, what=f"{text!r} in the log")


# ------------------------------------------------------------------ run / create / start

def test_run_detached_is_running_under_its_monitor(busybox):
    c = start(["sleep", "1000"], name="web")
    try:
        assert c.status == "running"
        assert len(c.id) == 64 and all(ch in "0123456789abcdef" for ch in c.id)
        assert running(c.pid)
        monitor = c.inspect()["MonitorPid"]
        assert proc_stat(monitor)[0] == "fastbox-monitor"
        assert proc_stat(c.pid)[2] == monitor, "the monitor is the container's parent"
        # The record on disk says the same.
        with open(os.path.join(record_dir(c.id), "state.json")) as f:
            on_disk = json.load(f)
        assert (on_disk["status"], on_disk["pid"], on_disk["name"]) == ("running", c.pid, "web")
        assert [x.id for x in containers.list_containers()] == [c.id]
        assert containers.get("web").id == c.id
    finally:
        c.remove(force=True)
    assert_nothing_left(c.id, name="web")


def test_create_then_start(busybox):
    c = containers.create("busybox", ["sh", "-c", f"echo started; {GO}; exit 4"], name="later")
    assert c.status == "created" and c.pid == 0
    assert session_cgroups(c.id) == [] and monitors_of(c.id) == []
    assert containers.list_containers() == []
    assert [x.status for x in containers.list_containers(all=True)] == ["created"]
    with pytest.raises(ContainerStateError):
        c.kill()
    with pytest.raises(ContainerStateError):
        c.exec_run(["true"])
    c.start()
    assert c.status == "running" and running(c.pid)
    wait_for_log(c, "started")
    with pytest.raises(ContainerStateError, match="only a created or stopped container"):
        c.start()
    touch_go(c)
    assert c.wait() == 4
    c.start()  # an exited container starts again (/go is still in its writable layer)
    assert c.wait() == 4
    c.remove()
    assert_nothing_left(c.id, name="later")


def test_created_container_can_be_removed(busybox):
    c = containers.create("busybox", ["true"], name="never")
    c.remove()
    assert_nothing_left(c.id, name="never")
    containers.create("busybox", ["true"], name="never").remove()  # the name is free again


def test_start_failure_leaves_nothing(busybox):
    with pytest.raises(FastboxError) as e:
        containers.run("busybox", ["/no/such/program"], name="bad")
    assert e.value.exit_code == 127
    assert containers.list_containers(all=True) == []
    assert not os.path.exists(name_file("bad"))
    assert session_cgroups() == []


def test_exit_code_and_times_are_recorded(busybox):
    c = start(["sh", "-c", f"{GO}; exit 7"])
    touch_go(c)
    assert c.wait() == 7
    c.reload()
    assert c.status == "exited" and c.attrs["exit_code"] == 7
    assert c.attrs["finished_at"] and c.attrs["started_at"]
    state = c.inspect()["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 7)
    # The monitor removed the cgroups itself, and is gone.
    assert eventually(lambda: session_cgroups(c.id) == [] and monitors_of(c.id) == [],
                      what="monitor exit")
    c.remove()
    assert_nothing_left(c.id)


# ------------------------------------------------------------------ stop / kill / wait

@pytest.mark.parametrize("command", [
    ["sleep", "1000"],  # pid 1 of a pid namespace: SIGTERM has no default action
    ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"],
], ids=["pid1-default", "trap-ignore"])
def test_stop_of_container_ignoring_sigterm_kills_after_timeout(busybox, command):
    c = start(command)
    if command[0] == "sh":
        wait_for_log(c, "ready")
    pid = c.pid
    t0 = time.monotonic()
    code = c.stop(timeout=1)
    elapsed = time.monotonic() - t0
    assert code == 137
    assert elapsed >= 1.0, "stop returned before its timeout although TERM was ignored"
    assert c.reload().status == "exited" and c.attrs["exit_code"] == 137
    assert not running(pid)
    c.remove()
    assert_nothing_left(c.id)


def test_stop_of_container_handling_sigterm_returns_its_code(busybox):
    c = start(["sh", "-c", "trap 'echo bye; exit 42' TERM; echo ready; "
                           "while :; do sleep 0.05; done"])
    wait_for_log(c, "ready")
    # The timeout is long: had TERM not been delivered and handled, the code would be 137.
    assert c.stop(timeout=60) == 42
    assert "bye" in log_text(c)
    assert c.stop(timeout=60) == 42  # stopping an exited container: its code, nothing else
    c.remove()
    assert_nothing_left(c.id)


def test_kill_with_a_signal(busybox):
    c = start(["sh", "-c", "trap 'echo got-usr1' USR1; trap 'echo got-hup' HUP; echo ready; "
                           "while :; do sleep 0.05; done"])
    wait_for_log(c, "ready")
    c.kill("SIGUSR1")
    wait_for_log(c, "got-usr1")
    c.kill("HUP")
    wait_for_log(c, "got-hup")
    assert c.reload().status == "running"
    with pytest.raises(SpecError):
        c.kill("NOSUCHSIGNAL")
    c.kill()  # SIGKILL by default
    assert c.wait() == 137
    with pytest.raises(ContainerStateError):
        c.kill()
    c.remove()
    assert_nothing_left(c.id)


def test_wait_blocks_until_exit(busybox):
    c = start(["sh", "-c", f"{GO}; exit 3"])
    with pytest.raises(TimeoutError):
        c.wait(timeout=0.2)  # it cannot exit before /go exists
    assert c.reload().status == "running"
    touch_go(c)
    assert c.wait() == 3
    assert c.wait() == 3  # again, on an exited container
    c.remove()


def test_monitor_forwards_signals_to_the_container(busybox):
    c = start(["sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done"])
    wait_for_log(c, "ready")
    os.kill(c.inspect()["MonitorPid"], signal.SIGTERM)
    assert c.wait() == 42
    c.remove()
    assert_nothing_left(c.id)


# ------------------------------------------------------------------ remove

def test_remove_running_needs_force(busybox):
    c = start(["sleep", "1000"])
    with pytest.raises(ContainerStateError, match="stop it first"):
        c.remove()
    assert c.reload().status == "running" and running(c.pid)
    c.remove(force=True)
    assert_nothing_left(c.id)


def test_remove_force_of_running_container_leaves_nothing(busybox, tmp_path):
    (tmp_path / "vol").mkdir()
    c = start(["sh", "-c", "echo data > /written; sleep 1000 & sleep 1000 & exec sleep 1000"],
              name="victim", memory="64m", pids_limit=50, volumes=[f"{tmp_path / 'vol'}:/vol"],
              tmpfs=["/t"])
    eventually(lambda: len(pids_in(c.attrs["cgroups"])) == 3, what="3 processes")
    pids = pids_in(c.attrs["cgroups"]) | {c.inspect()["MonitorPid"]}
    assert os.path.isdir(record_dir(c.id))
    c.remove(force=True)
    assert_nothing_left(c.id, pids=pids, name="victim")


def test_run_detached_rm_removes_everything_at_exit(busybox):
    c = start(["sh", "-c", f"{GO}; exit 5"], name="ephemeral", remove=True)
    assert c.status == "running"
    pids = {c.pid, c.inspect()["MonitorPid"]}
    assert os.path.exists(name_file("ephemeral"))
    touch_go(c)
    eventually(lambda: not os.path.exists(record_dir(c.id)), what="the record removed")
    eventually(lambda: monitors_of(c.id) == [], what="the monitor gone")
    assert_nothing_left(c.id, pids=pids, name="ephemeral")
    second = start(["true"], name="ephemeral", remove=True)  # the name is free
    eventually(lambda: not os.path.exists(name_file("ephemeral")), what="the second one gone")
    # its monitor drops the name before it exits: wait for it too, so `reap` collects it
    eventually(lambda: monitors_of(second.id) == [], what="the second monitor gone")


@pytest.mark.parametrize("operation", ["stop", "wait", "remove_force"])
def test_operations_on_a_detached_rm_container_succeed(busybox, operation):
    """A `--rm` container removes its record as it exits: stop/wait/remove(force) of it
    must still succeed (Docker: `docker stop`/`rm -f` of an --rm container, exit 0)."""
    c = start(["sh", "-c", f"trap 'exit 3' TERM; echo ready; {GO}; exit 9"], remove=True)
    wait_for_log(c, "ready")
    pids = {c.pid, c.inspect()["MonitorPid"]}
    try:
        if operation == "stop":
            assert c.stop(timeout=60) in (3, None)
        elif operation == "wait":
            touch_go(c)
            assert c.wait(timeout=60) in (9, None)
        else:
            c.remove(force=True)
    finally:
        if running(c.pid):
            c.kill()
    eventually(lambda: not os.path.exists(record_dir(c.id)), what="the record removed")
    assert_nothing_left(c.id, pids=pids)


def test_short_lived_detached_rm_containers_leave_nothing(busybox):
    """`run -d --rm` of a program that exits at once: the monitor removes the record
    while run() may still be recording the start; nothing may survive that race."""
    ids = [start(["true"], remove=True).id for _ in range(30)]
    for cid in ids:
        eventually(lambda: monitors_of(cid) == [], what=f"{cid[:12]}'s monitor gone")
    left = {cid[:12]: sorted(os.listdir(record_dir(cid))) for cid in ids
            if os.path.exists(record_dir(cid))}  # the monitors are gone: this is final
    assert not left, f"--rm containers left their record directories: {left}"
    assert containers.list_containers(all=True) == []
    assert session_cgroups() == []


# ------------------------------------------------------------------ monitor death

def test_killed_monitor_shows_exited_and_rm_cleans_everything(busybox):
    c = start(["sleep", "1000"])
    monitor, pid, cgroups = c.inspect()["MonitorPid"], c.pid, list(c.attrs["cgroups"])
    os.kill(monitor, signal.SIGKILL)
    eventually(lambda: not running(monitor), what="the monitor dead")
    reap_dead_children()
    try:
        # Reconciled: never "running forever".
        assert containers.list_containers() == []
        (listed,) = containers.list_containers(all=True)
        assert listed.status == "exited"
        assert c.reload().status == "exited"
        c.remove()
        # rm must not leave the container's processes or cgroups behind.
        assert not running(pid), \
            f"container process {pid} {proc_stat(pid)} still runs after its monitor died and rm"
        assert session_cgroups(c.id) == [], "cgroups left after rm"
        assert pids_in(cgroups) == set()
        assert_nothing_left(c.id, pids=[pid])
    finally:
        kill_leftovers(c.id)


# ------------------------------------------------------------------ names, ids, rename

def test_names_are_unique(busybox):
    c = start(["sleep", "1000"], name="only")
    try:
        with pytest.raises(ContainerStateError, match="already in use"):
            start(["sleep", "1000"], name="only")
        with pytest.raises(ContainerStateError, match="already in use"):
            containers.create("busybox", ["true"], name="only")
        assert [x.id for x in containers.list_containers(all=True)] == [c.id]
    finally:
        c.remove(force=True)
    d = start(["true"], name="only")
    d.wait()
    d.remove()


def test_id_prefixes_and_names_resolve_like_docker(busybox):
    made = [containers.create("busybox", ["true"]) for _ in range(17)]  # pigeonhole: a shared 1st digit
    try:
        for c in made:
            assert containers.get(c.id).id == c.id
            assert containers.get(c.id[:12]).id == c.id
        firsts = [c.id[0] for c in made]
        shared = next(ch for ch in firsts if firsts.count(ch) > 1)
        with pytest.raises(ContainerStateError, match="multiple"):
            containers.get(shared)
        with pytest.raises(ContainerStateError, match="no such container"):
            containers.get("nosuchname")
    finally:
        for c in made:
            c.remove()


def test_rename(busybox):
    c = start(["sleep", "1000"], name="before")
    try:
        c.rename("after")
        assert c.name == "after" and containers.get("after").id == c.id
        with pytest.raises(ContainerStateError):
            containers.get("before")
        other = containers.create("busybox", ["true"], name="before")  # the old name is free
        with pytest.raises(ContainerStateError, match="already in use"):
            c.rename("before")
        with pytest.raises(SpecError):
            c.rename("bad name!")
        assert containers.get("after").id == c.id
        other.remove()
    finally:
        c.remove(force=True)
    assert_nothing_left(c.id, name="after")


def test_rename_of_running_rm_container_keeps_names_consistent(busybox):
    """A `--rm` container renamed while it runs releases its *new* name at exit, and
    never the old one, which another container may hold by then."""
    a = start(["sh", "-c", f"{GO}; exit 0"], name="first", remove=True)
    a.rename("second")
    b = start(["sleep", "1000"], name="first")  # takes the freed name
    try:
        touch_go(a)
        eventually(lambda: not os.path.exists(record_dir(a.id)), what="a removed")
        assert containers.get("first").id == b.id, "b lost its name when a exited"
        with pytest.raises(ContainerStateError, match="already in use"):
            containers.create("busybox", ["true"], name="first")
        assert not os.path.exists(name_file("second")), "a's new name was left behind"
    finally:
        b.remove(force=True)
    eventually(lambda: monitors_of(a.id) == [], what="a's monitor gone")


# ------------------------------------------------------------------ inspect, prune

def test_inspect(busybox):
    c = start(["sh", "-c", f"{GO}; exit 2"], name="seen", env=["A=1"], workdir="/tmp",
              memory="64m", hostname="insp")
    try:
        info = c.inspect()
        json.dumps(info)  # JSON-serialisable
        assert info["Id"] == c.id and info["Name"] == "/seen"
        assert info["State"]["Status"] == "running" and info["State"]["Running"] is True
        assert info["State"]["Pid"] == c.pid and info["State"]["StartedAt"]
        assert info["Config"]["Cmd"] == ["sh", "-c", f"{GO}; exit 2"]
        assert "A=1" in info["Config"]["Env"] and info["Config"]["WorkingDir"] == "/tmp"
        assert info["Config"]["Hostname"] == "insp"
        assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
        assert proc_stat(info["MonitorPid"])[0] == "fastbox-monitor"
        # The monitor makes the log file as it starts, maybe just after run() returned.
        eventually(lambda: os.path.isfile(info["LogPath"]), what="the log file")
        touch_go(c)
        c.wait()
        state = c.inspect()["State"]
        assert (state["Status"], state["Running"], state["ExitCode"], state["Pid"]) == \
            ("exited", False, 2, 0)
        assert state["FinishedAt"]
    finally:
        c.remove(force=True)


def test_prune_removes_only_stopped_containers(busybox):
    live = start(["sleep", "1000"], name="live")
    done = start(["true"], name="done")
    done.wait()
    created = containers.create("busybox", ["true"], name="created")
    try:
        removed = containers.prune()
        assert sorted(removed) == sorted([done.id, created.id])
        assert [c.id for c in containers.list_containers(all=True)] == [live.id]
        assert containers.prune() == []
    finally:
        live.remove(force=True)
    assert_nothing_left(done.id, name="done")
    assert_nothing_left(created.id, name="created")


# ------------------------------------------------------------------ the monitor's size, bursts

def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_monitor_rss_is_at_most_2_mib(busybox):
    quiet = start(["sleep", "1000"])
    # A chatty one: 20 lines longer than the monitor's 16 KiB line buffer, on both streams.
    chatty = start(["sh", "-c", "i=0; while [ $i -lt 20 ]; do head -c 40000 /dev/zero | tr '\\0' x; "
                                "echo; head -c 40000 /dev/zero | tr '\\0' y >&2; echo >&2; "
                                "i=$((i+1)); done; echo ready; exec sleep 1000"])
    tty = start(["sh", "-c", "echo ready; exec sleep 1000"], tty=True)
    try:
        wait_for_log(chatty, "ready")
        wait_for_log(tty, "ready")
        sizes = {name: _rss_kb(c.inspect()["MonitorPid"])
                 for name, c in (("quiet", quiet), ("chatty", chatty), ("tty", tty))}
        print("monitor VmRSS kB:", sizes)
        for name, kb in sizes.items():
            assert kb <= MONITOR_RSS_LIMIT_KB, f"{name} monitor uses {kb} kB"
    finally:
        for c in (quiet, chatty, tty):
            c.remove(force=True)


@pytest.mark.slow
def test_200_detached_containers_leave_nothing_behind(busybox):
    made = []
    try:
        for _ in range(200):
            made.append(start(["sleep", "60"]))
        assert len(containers.list_containers()) == 200
        assert all(running(c.pid) for c in made)
        assert len({c.inspect()["MonitorPid"] for c in made}) == 200
    finally:
        pids = [c.pid for c in made]
        for c in made:
            c.remove(force=True)
    reap_dead_children()
    assert containers.list_containers(all=True) == []
    assert session_cgroups() == []
    assert [e for e in os.listdir(os.path.dirname(record_dir("x"))) if e != "names"] == []
    assert all(not running(p) for p in pids)
    assert [p for p in os.listdir("/proc") if p.isdigit() and proc_stat(p)
            and proc_stat(p)[0] == "fastbox-monitor" and proc_stat(p)[2] == os.getpid()] == []
