"""cgroup limits beyond the basics, on whichever cgroup mode the host has: each test reads
the v2 files on a pure-v2 host and the v1 files on a v1 or hybrid one, and checks that a
limit is enforced, not only written (OOM kill and State.OOMKilled, CPU quota, cpuset
pinning), that stats move, and that stop / rm -f leave nothing under the parent.

Written to run unchanged in a pure-v2 guest (no host-specific paths). On this project's
hybrid CI host the v1 path is the default; the v2 path is forced onto the cgroup2 mount
(which holds no controllers) for what needs none: placement, teardown with cgroup.kill,
and the one-line error for a limit whose controller is missing.
"""
import json
import os
import re
import time

import pytest

import fastbox
from fastbox import containers
from fastbox.errors import StartError
from fastbox.runtime import cgroup
from fastbox.runtime import stats as cg_stats
from fbtest import host_cgroup_dir, read
from test_limits import _run_holding
from test_lifecycle import cli, eventually, reap  # noqa: F401  (reap: an autouse fixture)
from test_cgroup_v2 import forced_v2  # noqa: F401  (a fixture)

MODE = cgroup.layout().mode
V2 = MODE == "v2"
MIB = 1 << 20


def _cg(pid, controller):
    """The container's cgroup dir holding controller (v2: its one dir)."""
    return host_cgroup_dir(pid, "" if V2 else controller)


def _parent_dirs(session_dirs):
    """<hierarchy>/<parent> wherever this session has one."""
    lay = cgroup.layout()
    mounts = [lay.v2] if V2 else sorted(set(lay.v1.values()))
    return [d for d in (f"{m}/{session_dirs.cgroup_parent}" for m in mounts) if os.path.isdir(d)]


def _left_under(session_dirs, cid):
    return [f"{d}/{cid}" for d in _parent_dirs(session_dirs) if os.path.exists(f"{d}/{cid}")]


# ------------------------------------------------------------------ memory, swap, OOM

def test_oom_kill_is_137_and_inspect_says_oom_killed(probe):
    """Detached: the monitor reads the OOM count before it removes the cgroup."""
    c = containers.run(probe.image, ["/probe", "memhog", "200"], memory="32m")
    try:
        assert c.wait(timeout=60) == 137
        state = c.inspect()["State"]
        assert state["OOMKilled"] is True, state
        assert state["ExitCode"] == 137
    finally:
        c.remove(force=True)


def test_no_oom_no_oom_killed(probe):
    c = containers.run(probe.image, ["/probe", "memhog", "8"], memory="64m")
    try:
        assert c.wait(timeout=60) == 0
        assert c.inspect()["State"]["OOMKilled"] is False
    finally:
        c.remove(force=True)


def test_killed_but_not_by_oom_is_not_oom_killed(busybox):
    c = containers.run("busybox", ["sleep", "1000"], memory="64m")
    try:
        c.kill(9)
        assert c.wait(timeout=30) == 137
        assert c.inspect()["State"]["OOMKilled"] is False
    finally:
        c.remove(force=True)


def test_foreground_oom_kill_is_reported(probe):
    """fastbox.run: the result says so, and so does a kept record's inspect."""
    r = probe.run("memhog", "200", memory="32m")
    assert (r.exit_code, r.oom_killed) == (137, True)
    r = probe.run("memhog", "200", memory="32m", remove=False, name="oomed")
    assert (r.exit_code, r.oom_killed) == (137, True)
    c = containers.get("oomed")
    try:
        assert c.inspect()["State"]["OOMKilled"] is True
    finally:
        c.remove()
    assert probe.run("memhog", "4", memory="32m").oom_killed is False


def test_oom_killed_on_the_cli(probe):
    r = cli("run", "-m", "32m", "--name", "oom-cli", probe.image, "/probe", "memhog", "200")
    assert r.returncode == 137, r.stderr
    r = cli("inspect", "oom-cli")
    assert json.loads(r.stdout)[0]["State"]["OOMKilled"] is True
    assert cli("rm", "oom-cli").returncode == 0


def _swap_file(pid):
    """(file, whether this host accounts swap there)."""
    if V2:
        f = f"{_cg(pid, '')}/memory.swap.max"
    else:
        f = f"{_cg(pid, 'memory')}/memory.memsw.limit_in_bytes"
    return f, os.path.exists(f)


@pytest.mark.parametrize("swap, v1_total, v2_swap", [
    (None, 64 * MIB, str(32 * MIB)),   # -m alone: as much swap as memory (Docker)
    ("96m", 96 * MIB, str(64 * MIB)),  # memory+swap
    ("32m", 32 * MIB, "0"),            # equal to -m: no swap
    ("-1", None, "max"),               # unlimited swap
])
def test_memory_swap_written(busybox, pipes, swap, v1_total, v2_swap):
    opts = {"memory": "32m"} if swap is None else {"memory": "32m", "memory_swap": swap}

    def check(pid):
        f, there = _swap_file(pid)
        return (read(f) if there else None), read(
            f"{_cg(pid, '')}/memory.max" if V2 else f"{_cg(pid, 'memory')}/memory.limit_in_bytes")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, **opts)
    value, limit = seen["result"]
    assert int(limit) == 32 * MIB
    if value is None:
        pytest.skip("this host's memory controller does not account swap")
    if V2:
        assert value == v2_swap
    elif v1_total is None:
        assert int(value) >= 1 << 62  # -1 reads back as the largest page-aligned value
    else:
        assert int(value) == v1_total


def test_memory_reservation_written(busybox, pipes):
    def check(pid):
        if V2:
            return read(f"{_cg(pid, '')}/memory.low")
        return read(f"{_cg(pid, 'memory')}/memory.soft_limit_in_bytes")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, memory="64m",
                           memory_reservation="16m")
    assert int(seen["result"]) == 16 * MIB


# ------------------------------------------------------------------ CPU

def test_cpu_shares_written(busybox, pipes):
    def check(pid):
        return read(f"{_cg(pid, '')}/cpu.weight" if V2 else f"{_cg(pid, 'cpu')}/cpu.shares")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, cpu_shares=512)
    assert seen["result"] == ("20" if V2 else "512")  # v2: runc's conversion of 512


def test_cpu_period_and_quota_written(busybox, pipes):
    def check(pid):
        if V2:
            return read(f"{_cg(pid, '')}/cpu.max")
        d = _cg(pid, "cpu")
        return read(f"{d}/cpu.cfs_quota_us") + " " + read(f"{d}/cpu.cfs_period_us")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, cpu_period=50000, cpu_quota=20000)
    assert seen["result"] == "20000 50000"


def _cpu_usage_ns(pid):
    if V2:
        stat = dict(line.split() for line in read(f"{_cg(pid, '')}/cpu.stat").splitlines())
        return int(stat["usage_usec"]) * 1000
    return int(read(f"{_cg(pid, 'cpuacct')}/cpuacct.usage"))


def _throttled(pid):
    d = _cg(pid, "" if V2 else "cpu")
    stat = dict(line.split() for line in read(f"{d}/cpu.stat").splitlines())
    return int(stat["nr_throttled"])


def test_cpus_quota_is_enforced(busybox, pipes):
    """A busy loop under --cpus 0.2 gets about a fifth of a CPU: measured over a second,
    well under half of one, and the kernel says it throttled it (loose on purpose: this
    host is shared)."""
    def check(pid):
        time.sleep(0.3)  # the loop is running
        t0, u0 = time.monotonic(), _cpu_usage_ns(pid)
        time.sleep(1.0)
        t1, u1 = time.monotonic(), _cpu_usage_ns(pid)
        return (u1 - u0) / ((t1 - t0) * 1e9), _throttled(pid)

    _, seen = _run_holding(["sh", "-c", "while :; do :; done & read x"], check, pipes, cpus="0.2")
    share, throttled = seen["result"]
    assert 0 < share < 0.5, share
    assert throttled > 0


# ------------------------------------------------------------------ cpuset

def test_cpuset_pins_the_container(busybox):
    last = os.cpu_count() - 1
    r = fastbox.run("busybox", ["grep", "-E", "^(Cpus|Mems)_allowed_list", "/proc/self/status"],
                    capture_output=True, cpuset_cpus=str(last), cpuset_mems="0")
    assert r.exit_code == 0, r.stderr
    lines = dict(line.split(":\t") for line in r.stdout.decode().splitlines())
    assert lines["Cpus_allowed_list"] == str(last)
    assert lines["Mems_allowed_list"] == "0"


def test_cpuset_written_and_exec_joins_it(busybox):
    """The host sees the cpuset in the container's cgroup; an exec'd process runs pinned
    too (it joins the same cgroups)."""
    last = os.cpu_count() - 1
    c = containers.run("busybox", ["sleep", "1000"], cpuset_cpus=str(last))
    try:
        d = _cg(c.pid, "" if V2 else "cpuset")
        assert read(f"{d}/cpuset.cpus") == str(last)
        r = c.exec_run(["grep", "^Cpus_allowed_list", "/proc/self/status"])
        assert r.stdout.decode().split()[-1] == str(last)
        info = c.inspect()["HostConfig"]
        assert info["CpusetCpus"] == str(last) and info["CpusetMems"] == ""
    finally:
        c.remove(force=True)


def test_no_cpuset_no_cpuset_cgroup_on_v1(busybox, pipes):
    """v1: the cpuset hierarchy is joined only when asked for (a join costs a task move)."""
    if V2 or "cpuset" not in cgroup.layout().v1:
        pytest.skip("v1 cpuset hierarchy only")

    _, seen = _run_holding(["sh", "-c", "read x"], lambda pid: _cg(pid, "cpuset"), pipes)
    assert seen["result"].rstrip("/") == cgroup.layout().v1["cpuset"]


# ------------------------------------------------------------------ stats

def _on_block_device(path):
    return os.major(os.stat(path).st_dev) != 0


def test_stats_memory_and_block_io_move(probe, tmp_path):
    """After the container writes 8 MiB with O_DIRECT (so the I/O is its own, not the
    host's writeback) and holds 24 MiB, BLOCK I/O and MEM USAGE have moved, in the API
    and in `fastbox stats`, whose columns are Docker's."""
    data = tmp_path / "data"
    data.mkdir()
    if not _on_block_device(str(data)):
        pytest.skip("the test's temp dir is not on a block device: no block I/O to count")
    go = "while [ ! -e /data/go ]; do sleep 0.02; done"
    c = containers.run(probe.image, ["sh", "-c", f"echo ready; {go}; dd if=/dev/zero of=/data/f "
                                     "bs=1M count=8 oflag=direct 2>/dev/null; echo written; "
                                     "sleep 1000 | /probe memhog 24 hold"],
                       volumes=[f"{data}:/data"], name="mover")
    try:
        eventually(lambda: b"ready" in c.logs(), what="ready")
        before = c.stats()
        (data / "go").touch()
        eventually(lambda: b"done" in c.logs(), what="written and memory held")
        after = c.stats()
        assert cg_stats.memory_used(after) - cg_stats.memory_used(before) >= 20 * MIB, (before, after)
        assert after["memory_limit"] > 0 and 0 < cg_stats.memory_percent(after) < 100
        if after["blkio_write"] is None:
            pytest.skip("no block I/O accounting here (v2: the host offers no io controller)")
        written = after["blkio_write"] - before["blkio_write"]
        if not V2 and written == 0:
            pytest.skip("v1 blkio counted nothing: blk-throttle is not active on this disk's "
                        "queue (kernel 6.10+ activates it only once a throttle rule exists)")
        assert written >= 8 * MIB, (before, after)
        r = cli("stats", "--no-stream", "mover")
        assert r.returncode == 0, r.stderr
        header, row = r.stdout.splitlines()[:2]
        assert re.split(r"\s{2,}", header) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
                                               "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
        cells = re.split(r"\s{2,}", row)
        assert cells[0] == c.id[:12] and cells[1] == "mover"
        assert re.fullmatch(r"[\d.]+%", cells[4]), cells
        block_read, block_written = cells[6].split(" / ")
        assert re.fullmatch(r"[\d.]+(MB|GB)", block_written), cells  # 8 MiB and more
    finally:
        c.remove(force=True)


def test_stats_unlimited_memory_limit_is_the_hosts(busybox):
    c = containers.run("busybox", ["sleep", "1000"])
    try:
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1]) * 1024
        assert c.stats()["memory_limit"] == total
    finally:
        c.remove(force=True)


# ------------------------------------------------------------------ teardown

def test_stop_kills_what_ignores_sigterm_and_removes_the_cgroups(busybox, session_dirs):
    c = containers.run("busybox", ["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & wait"],
                       memory="64m", pids_limit=20)
    eventually(lambda: (c.stats()["pids"] or 0) == 3, what="3 processes")
    try:
        assert c.stop(timeout=0.5) == 137
        assert _left_under(session_dirs, c.id) == []
    finally:
        c.remove(force=True)
    assert _left_under(session_dirs, c.id) == []


def test_rm_force_leaves_nothing(busybox, session_dirs):
    c = containers.run("busybox", ["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    eventually(lambda: (c.stats()["pids"] or 0) == 3, what="3 processes")
    c.remove(force=True)
    assert _left_under(session_dirs, c.id) == []


def test_v2_teardown_with_cgroup_kill(forced_v2, busybox, session_dirs):  # noqa: F811
    """The v2 path on a cgroup2 mount (forced on a hybrid host): stop and rm -f kill
    through cgroup.kill and remove the cgroup."""
    parent = f"{forced_v2}/{session_dirs.cgroup_parent}"
    c = containers.run("busybox", ["sh", "-c", "trap '' TERM; sleep 1000 & wait"])
    try:
        assert os.path.exists(f"{parent}/{c.id}/cgroup.kill")
        assert c.stop(timeout=0.5) == 137
        assert not os.path.exists(f"{parent}/{c.id}")
    finally:
        c.remove(force=True)
    c = containers.run("busybox", ["sh", "-c", "sleep 1000 & wait"])
    c.remove(force=True)
    assert not os.path.exists(f"{parent}/{c.id}")


# ------------------------------------------------------------------ v2 controllers

def test_v2_limit_without_its_controller_is_one_line(forced_v2, busybox):  # noqa: F811
    """A cgroup2 whose root does not offer memory: -m fails the start with one line naming
    the flag (125), and nothing is left; with no limit the container runs."""
    with open(f"{forced_v2}/cgroup.controllers") as f:
        if "memory" in f.read().split():
            pytest.skip("this cgroup2 offers the memory controller")
    with pytest.raises(StartError) as e:
        fastbox.run("busybox", ["true"], memory="64m")
    assert "\n" not in str(e.value) and "--memory" in str(e.value) and "'memory'" in str(e.value)
    assert e.value.exit_code == 125
    assert fastbox.run("busybox", ["true"]).exit_code == 0


def test_v2_parent_enables_what_containers_need(busybox, session_dirs):
    """Pure v2: memory, cpu, pids and io are enabled for the parent's children (from the
    root down), and the container's cgroup has their files."""
    if not V2:
        pytest.skip("pure cgroup v2 hosts only (this one is " + MODE + ")")
    lay = cgroup.layout()
    with open(f"{lay.v2}/cgroup.controllers") as f:
        offered = set(f.read().split())
    c = containers.run("busybox", ["sleep", "1000"], memory="64m")
    try:
        with open(f"{lay.v2}/{session_dirs.cgroup_parent}/cgroup.subtree_control") as f:
            enabled = set(f.read().split())
        assert offered & {"memory", "cpu", "pids", "io"} <= enabled
        d = _cg(c.pid, "")
        for name in ("memory.max", "memory.events", "cpu.max", "pids.max"):
            assert os.path.exists(f"{d}/{name}"), name
        assert "io" not in offered or os.path.exists(f"{d}/io.stat")
        with open(f"{lay.v2}/{session_dirs.cgroup_parent}/cgroup.procs") as f:
            assert f.read().split() == []  # no process in the parent, ever
    finally:
        c.remove(force=True)


# ------------------------------------------------------------------ inspect

def test_inspect_host_config_names_docker_uses(busybox):
    c = containers.create("busybox", ["true"], memory="64m", memory_reservation="32m",
                          cpu_shares=512, cpu_period=50000, cpu_quota=25000, cpuset_cpus="0",
                          cpuset_mems="0", pids_limit=50)
    try:
        h = c.inspect()["HostConfig"]
        assert (h["Memory"], h["MemorySwap"], h["MemoryReservation"]) == (64 * MIB, 128 * MIB, 32 * MIB)
        assert (h["CpuShares"], h["CpuPeriod"], h["CpuQuota"]) == (512, 50000, 25000)
        assert (h["CpusetCpus"], h["CpusetMems"], h["PidsLimit"], h["NanoCpus"]) == ("0", "0", 50, 0)
        assert c.inspect()["State"]["OOMKilled"] is False
    finally:
        c.remove()
    c = containers.create("busybox", ["true"], memory="64m", memory_swap=-1, cpus="0.5")
    try:
        h = c.inspect()["HostConfig"]
        assert (h["MemorySwap"], h["NanoCpus"], h["CpuShares"], h["CpusetCpus"]) == (-1, 500000000, 0, "")
    finally:
        c.remove()


def test_memory_swap_equal_to_memory_means_no_swap(probe):
    """--memory-swap equal to -m: the hog is killed before it passes -m, swap or not."""
    r = probe.run("memhog", "200", memory="32m", memory_swap="32m")
    assert (r.exit_code, r.oom_killed) == (137, True)
    progress = [int(x) for x in r.stdout.split() if x.isdigit()]
    assert progress and max(progress) < 32


def test_limits_from_the_cli(busybox):
    """The flags reach the cgroup: the container reads its own limits (its cgroup
    namespace makes its cgroup the root of what it sees)."""
    if V2:
        script = "cat /sys/fs/cgroup/cpuset.cpus /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/memory.max"
    else:
        script = ("cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpu/cpu.shares "
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    r = cli("run", "--rm", "-m", "48m", "--memory-swap", "96m", "-c", "512", "--cpuset-cpus", "0",
            "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "20" if V2 else "512", str(48 * MIB)]
    r = cli("run", "--rm", "--cpus", "0.5", "--cpu-quota", "20000", "busybox", "true")
    assert r.returncode == 125 and r.stderr.startswith("fastbox: conflicting options")
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("text, killed", [
    ("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n", True),   # v2 memory.events
    ("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", False),
    ("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", True),                 # v1 memory.oom_control
    ("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", False),
    (None, False),                                                          # no such file
])
def test_monitor_records_oom_kill_of_either_format(tmp_path, text, killed):
    """fastbox-monitor reads the oom_kill line of the file it is given (v1 or v2 format)
    into exit.json. Its child here is a shell's background job: the shell execs the
    monitor, so the job is the monitor's child, as a container is."""
    from fastbox.runtime.monitor import MONITOR
    oom = tmp_path / "oom"
    if text is not None:
        oom.write_text(text)
    exit_file, log = tmp_path / "exit.json", tmp_path / "log"
    import subprocess
    subprocess.run(["/bin/sh", "-c", 'true & exec "$0" --pid $! --log "$1" --exit "$2" '
                    '--oom-file "$3"', MONITOR, str(log), str(exit_file), str(oom)],
                   check=True, timeout=30)
    record = json.loads(exit_file.read_text())
    assert record["exit_code"] == 0 and record["oom_killed"] is killed


def test_restart_clears_oom_killed(probe, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    c = containers.run(probe.image, ["sh", "-c", "[ -e /data/again ] && exit 0; touch /data/again; "
                                     "exec /probe memhog 200"],
                       memory="32m", volumes=[f"{data}:/data"])
    try:
        assert c.wait(timeout=60) == 137 and c.inspect()["State"]["OOMKilled"] is True
        c.start()
        assert c.wait(timeout=60) == 0
        assert c.inspect()["State"]["OOMKilled"] is False
    finally:
        c.remove(force=True)
