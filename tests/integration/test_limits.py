"""cgroup limits: written where they belong, accounted, and enforced.

The container's cgroups are read from the host while it runs: the on_start callback
finds them through /proc/<pid>/cgroup (as the host's cgroup namespace sees it) while the
container waits on a pipe that only the test closes. Nothing here depends on timing.
"""
import os

import pytest

import fastbox
from fastbox.runtime import cgroup
from fbtest import host_cgroup_dir, read

V2 = not cgroup.layout().v1


def _cg(pid, controller):
    return host_cgroup_dir(pid, "" if V2 else controller)


def _run_holding(command, check, pipes, until=None, **opts):
    """Run `command`, whose stdout is ours and which waits for stdin's EOF; once it has
    printed the line `until` (if given), call check(pid) while it still runs."""
    stdin, stdout = pipes(), pipes()
    seen = {"lines": []}

    def on_start(pid):
        try:
            while until is not None:
                line = stdout.readline()
                seen["lines"].append(line)
                if line in ("", until + "\n"):
                    break
            seen["result"] = check(pid)
        finally:
            stdin.close_w()

    r = fastbox.run(opts.pop("image", "busybox"), command, stdin=stdin.r, stdout=stdout.w,
                    on_start=on_start, **opts)
    stdout.close_w()
    seen["rest"] = stdout.read_all()
    return r, seen


def test_cgroup_is_parent_slash_id_in_every_hierarchy(busybox, pipes, session_dirs):
    def check(pid):
        paths = {}
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                paths[ctrls] = path
        return paths

    r, seen = _run_holding(["sh", "-c", "read x"], check, pipes)
    paths = seen["result"]
    expected = f"/{session_dirs.cgroup_parent}/{r.id}"
    wanted = [""] if V2 else ["memory", "pids", "cpu", "cpuacct", "devices", "blkio"]
    for ctrl in wanted:
        if ctrl and ctrl not in cgroup.layout().v1:
            continue
        key = next(k for k in paths if ctrl in k.split(",")) if ctrl else ""
        assert paths[key] == expected, (ctrl, paths)


def test_memory_limit_written_and_usage_accounted(probe, pipes):
    def check(pid):
        d = _cg(pid, "memory")
        if V2:
            return int(read(f"{d}/memory.max")), int(read(f"{d}/memory.current"))
        return int(read(f"{d}/memory.limit_in_bytes")), int(read(f"{d}/memory.usage_in_bytes"))

    r, seen = _run_holding(["/probe", "memhog", "20", "hold"], check, pipes, until="done",
                           image=probe.image, memory="64m")
    assert r.exit_code == 0
    assert seen["lines"][-1] == "done\n"
    limit, usage = seen["result"]
    assert limit == 64 << 20
    assert usage >= 20 << 20  # the 20 MiB the probe holds are charged to the container


def test_memory_limit_enforced_oom_kill_is_137(probe):
    r = probe.run("memhog", "200", memory="32m")
    assert r.exit_code == 137, (r.exit_code, r.stdout[-200:])
    progress = [int(x) for x in r.stdout.split() if x.isdigit()]
    assert b"done" not in r.stdout
    # -m alone allows as much swap again (Docker's default): never past memory + swap
    assert progress and max(progress) < 64


def test_memory_within_limit_is_fine(probe):
    r = probe.run("memhog", "16", memory="64m")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[-1] == b"done"


def test_pids_limit_written(busybox, pipes):
    def check(pid):
        return read(f"{_cg(pid, 'pids')}/pids.max")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, pids_limit=42)
    assert seen["result"] == "42"


def test_pids_limit_stops_a_fork_bomb(probe):
    r = probe.run("forkbomb", "500", pids_limit=20)
    assert r.exit_code == 0
    out = dict(line.split(" ", 1) for line in r.stdout.decode().splitlines())
    assert out["errno"] == "EAGAIN"
    assert 1 <= int(out["forks"]) <= 19  # the probe itself is one of the 20


def test_no_pids_limit_by_default_allows_forks(probe):
    r = probe.run("forkbomb", "50")
    out = dict(line.split(" ", 1) for line in r.stdout.decode().splitlines())
    assert out == {"forks": "50", "errno": "0"}


def test_unlimited_pids(busybox, pipes):
    _, seen = _run_holding(["sh", "-c", "read x"],
                           lambda pid: read(f"{_cg(pid, 'pids')}/pids.max"), pipes, pids_limit=-1)
    assert seen["result"] == "max"


@pytest.mark.parametrize("cpus, quota", [("0.5", 50000), ("1", 100000), ("1.25", 125000)])
def test_cpu_quota_written(busybox, pipes, cpus, quota):
    if float(cpus) > (os.cpu_count() or 1):
        pytest.skip("more CPUs than this host has")

    def check(pid):
        d = _cg(pid, "cpu")
        if V2:
            return read(f"{d}/cpu.max")
        return read(f"{d}/cpu.cfs_quota_us"), read(f"{d}/cpu.cfs_period_us")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, cpus=cpus)
    if V2:
        assert seen["result"] == f"{quota} 100000"
    else:
        assert seen["result"] == (str(quota), "100000")


def test_no_limits_by_default(busybox, pipes):
    def check(pid):
        if V2:
            d = _cg(pid, "")
            return read(f"{d}/memory.max"), read(f"{d}/pids.max"), read(f"{d}/cpu.max").split()[0]
        mem = int(read(f"{_cg(pid, 'memory')}/memory.limit_in_bytes"))
        return ("max" if mem >= 1 << 62 else mem, read(f"{_cg(pid, 'pids')}/pids.max"),
                "max" if read(f"{_cg(pid, 'cpu')}/cpu.cfs_quota_us") == "-1" else "set")

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes)
    assert seen["result"] == ("max", "max", "max")


def test_cgroups_removed_after_exit(busybox, pipes, session_dirs):
    """The conftest leak check covers this too; here the container's dirs are named."""
    dirs = []

    def check(pid):
        for ctrl in ([""] if V2 else sorted(set(cgroup.layout().v1) - set(cgroup.V1_ON_DEMAND))):
            dirs.append(_cg(pid, ctrl))
        return all(os.path.isdir(d) for d in dirs)

    _, seen = _run_holding(["sh", "-c", "read x"], check, pipes, memory="64m")
    assert seen["result"] is True
    assert dirs and not any(os.path.exists(d) for d in dirs)


def test_cgroup_files_not_writable_inside(sh):
    """On v1 the container sees no cgroupfs; on v2 a read-only one."""
    r = sh("ls /sys/fs/cgroup 2>/dev/null | head -n 50; echo x > /sys/fs/cgroup/x 2>/dev/null; echo rc=$?")
    assert r.stdout.decode().splitlines()[-1] != "rc=0"
