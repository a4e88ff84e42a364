"""pause/unpause and update through the API (fastbox.containers), on whichever cgroups
the host has: written for the VM lane's pure cgroup v2 guest (cgroup.freeze, memory.max,
pids.max, cpu.max), where each CLI call is too slow; the CLI tests are in
test_docker_commands.py."""
import os
import time

from waiting import eventually

from fastbox import containers
from fbtest import host_cgroup_dir, read
from test_lifecycle import reap  # noqa: F401


def _dir(pid, controller):
    from fastbox.runtime import cgroup
    return host_cgroup_dir(pid, controller if cgroup.layout().v1 else "")


def _frozen(pid):
    from fastbox.runtime import cgroup
    if cgroup.layout().v1:
        return read(_dir(pid, "freezer") + "/freezer.state") == "FROZEN"
    return "frozen 1" in read(_dir(pid, "") + "/cgroup.events").splitlines()


def _ticks(c):
    out = c.logs().split()
    return int(out[-1]) if out else -1


def test_pause_and_unpause(busybox):
    c = containers.run("busybox", ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; "
                                               "sleep 0.02; done"])
    try:
        eventually(lambda: _ticks(c) > 1, timeout=120, what="ticking")
        c.pause()
        assert _frozen(c.pid) and c.inspect()["State"]["Status"] == "paused"
        at = _ticks(c)
        time.sleep(0.3)  # not a timing assertion: a frozen counter must not move at all
        assert _ticks(c) == at
        c.unpause()
        assert not _frozen(c.pid)
        eventually(lambda: _ticks(c) > at, timeout=120, what="ticking again")
    finally:
        c.remove(force=True)


def test_update_limits_of_a_running_container(busybox):
    c = containers.run("busybox", ["sleep", "1000"], memory="256m")
    try:
        c.update(memory="64m", pids_limit=40, cpus=0.5)
        from fastbox.runtime import cgroup
        if cgroup.layout().v1:
            assert read(_dir(c.pid, "memory") + "/memory.limit_in_bytes") == str(64 << 20)
            assert read(_dir(c.pid, "pids") + "/pids.max") == "40"
            assert read(_dir(c.pid, "cpu") + "/cpu.cfs_quota_us") == "50000"
        else:
            d = _dir(c.pid, "")
            assert read(d + "/memory.max") == str(64 << 20)
            assert read(d + "/pids.max") == "40"
            assert read(d + "/cpu.max") == "50000 100000"
            if os.path.exists(d + "/memory.swap.max"):
                assert read(d + "/memory.swap.max") == str(64 << 20)
        assert c.inspect()["HostConfig"]["PidsLimit"] == 40
    finally:
        c.remove(force=True)
