"""fastbox.runtime.cgroup: the host's layout and the plan for one container.

On this host (v1 controllers, maybe plus a cgroup2 that holds none of them) the plan is
checked for real; the v2 plan is checked against a fake cgroup2 root in a temp dir
(youki-style injectable root). plan() makes only the shared parent, never the container's
own cgroups (the core does that), so nothing here leaves a container cgroup behind.
"""
import os

import pytest

from fastbox.runtime import cgroup

CID = "ab" * 32


def _mountinfo_cgroups():
    v1, v2 = {}, []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                v2.append(fields[4])
            elif fields[sep + 1] == "cgroup":
                for opt in fields[sep + 3].split(","):
                    v1.setdefault(opt, fields[4])
    return v1, v2


def _own_cgroup_paths():
    """Our own (non-root) cgroup paths: a container must never be placed below them."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            path = line.rstrip("\n").split(":", 2)[2]
            if path != "/":
                out.append(path)
    return out


# ------------------------------------------------------------------ layout

def test_layout_matches_mountinfo():
    lay = cgroup.layout()
    v1, v2 = _mountinfo_cgroups()
    assert lay.v2 == (v2[0] if v2 else None)
    for ctrl in cgroup.V1_CONTROLLERS:
        assert lay.v1.get(ctrl) == v1.get(ctrl), ctrl
    assert set(lay.v1) <= set(cgroup.V1_CONTROLLERS)
    assert lay.mode == ("v2" if not lay.v1 else "hybrid" if lay.v2 else "v1")


def test_layout_is_cached():
    assert cgroup.layout() is cgroup.layout()


# ------------------------------------------------------------------ v1 plan on this host

needs_v1 = pytest.mark.skipif(not cgroup.layout().v1, reason="this host has no cgroup v1 controllers")


def _parent():
    from fastbox import config
    return config.cgroup_parent()


def _always_joined(lay):
    """The v1 hierarchies every container joins (cpuset only when asked for)."""
    return sorted(mp for mp in set(lay.v1.values())
                  if lay.v1_options[mp] not in cgroup.V1_ON_DEMAND)


@needs_v1
def test_v1_dirs_are_at_hierarchy_roots():
    lay = cgroup.layout()
    p = cgroup.plan(CID)
    mountpoints = _always_joined(lay)
    expected = [f"{mp}/{_parent()}/{CID}" for mp in mountpoints]
    assert p.dirs == expected
    assert p.mkdirs == expected
    assert p.join == [d + "/tasks" for d in expected]
    assert len(set(p.dirs)) == len(p.dirs)
    for d in p.dirs:
        assert d.startswith("/sys/fs/cgroup/") or any(d.startswith(mp + "/") for mp in mountpoints)
    assert p.into is None
    assert p.unshare_ns is True
    assert p.mount_cgroup2 is False


@needs_v1
def test_v1_dirs_never_below_our_own_cgroup():
    p = cgroup.plan(CID, memory=64 << 20, cpus=0.5, pids_limit=10)
    own = _own_cgroup_paths()
    for path in p.dirs + [f for f, _ in p.writes] + p.join:
        for mine in own:
            assert mine not in path, (path, mine)
        rel = path.split("/", 5)[-1]  # below /sys/fs/cgroup/<ctrl>/
        assert rel.startswith(_parent() + "/"), path


@needs_v1
def test_v1_every_controller_in_the_plan():
    lay = cgroup.layout()
    p = cgroup.plan(CID)
    for ctrl in ("memory", "cpu", "cpuacct", "pids", "devices", "blkio"):
        if ctrl in lay.v1:
            assert f"{lay.v1[ctrl]}/{_parent()}/{CID}" in p.dirs, ctrl
    if "cpuset" in lay.v1 and lay.v1_options[lay.v1["cpuset"]] == "cpuset":
        assert f"{lay.v1['cpuset']}/{_parent()}/{CID}" not in p.dirs


@needs_v1
def test_v1_limit_files_and_values():
    lay = cgroup.layout()
    p = cgroup.plan(CID, memory=64 << 20, cpus=1.5, pids_limit=100)
    writes = dict(p.writes)
    parent = _parent()
    assert writes[f"{lay.v1['memory']}/{parent}/{CID}/memory.limit_in_bytes"] == str(64 << 20)
    assert writes[f"{lay.v1['cpu']}/{parent}/{CID}/cpu.cfs_quota_us"] == "150000"
    assert writes[f"{lay.v1['pids']}/{parent}/{CID}/pids.max"] == "100"
    # the period is not written: a new v1 cgroup's is already the 100 ms the quota is
    # computed for (test_limits checks the value in a real container's cgroup)
    memsw = _memsw(lay)
    if memsw:  # --memory alone: as much swap as memory, so memory+swap is twice it
        assert writes[memsw] == str(128 << 20)
    assert len([f for f in writes if "/devices." not in f]) == 3 + bool(memsw)
    for f, _ in p.writes:
        assert os.path.dirname(f) in p.dirs


@needs_v1
@pytest.mark.parametrize("cpus, quota", [(0.01, "1000"), (0.5, "50000"), (1, "100000"), (0.333, "33300")])
def test_v1_cpu_quota(cpus, quota):
    p = cgroup.plan(CID, cpus=cpus)
    assert dict(p.writes)[f"{cgroup.layout().v1['cpu']}/{_parent()}/{CID}/cpu.cfs_quota_us"] == quota


@needs_v1
def test_v1_unlimited_pids():
    p = cgroup.plan(CID, pids_limit=-1)
    assert dict(p.writes)[f"{cgroup.layout().v1['pids']}/{_parent()}/{CID}/pids.max"] == "max"


@needs_v1
def test_v1_no_limits_no_writes():
    """Only the device policy of the container's own devices cgroup, if there is one."""
    assert [f for f, _ in cgroup.plan(CID).writes if "/devices." not in f] == []


@needs_v1
def test_plan_makes_the_parent_not_the_container():
    lay = cgroup.layout()
    p = cgroup.plan(CID)
    for mp in _always_joined(lay):
        assert os.path.isdir(f"{mp}/{_parent()}")
    for d in p.dirs:
        assert not os.path.exists(d)


@needs_v1
def test_v1_devices_policy_is_the_containers_own():
    """The container's own devices cgroup gets deny-all then the standard devices, one
    rule per line (a v1 cgroup never allows more than its parent, so the parent allows
    what the root does, and --device can add to a container's list)."""
    lay = cgroup.layout()
    if "devices" not in lay.v1:
        pytest.skip("no v1 devices controller")
    d = f"{lay.v1['devices']}/{_parent()}/{CID}"
    writes = [(f, v) for f, v in cgroup.plan(CID).writes if "/devices." in f]
    assert writes[0] == (d + "/devices.deny", "a")
    assert writes[1][0] == d + "/devices.allow"
    rules = writes[1][1].split("\n")
    assert "c 1:3 rwm" in rules and "c *:* m" in rules  # /dev/null; mknod of anything
    assert "c 1:1 rwm" not in rules  # /dev/mem
    with open(f"{lay.v1['devices']}/{_parent()}/devices.list") as f:
        assert f.read() == "a *:* rwm\n"
    extra = cgroup.plan(CID, device_rules=("c 1:3 rwm", "c 10:229 rwm")).writes
    assert [v for f, v in extra if "/devices." in f] == ["a", "c 1:3 rwm\nc 10:229 rwm"]
    assert not [f for f, _ in cgroup.plan(CID, device_rules=False).writes if "/devices." in f]


def test_parent_from_environment(monkeypatch):
    monkeypatch.setenv("FASTBOX_CGROUP_PARENT", "/" + _parent() + "/")
    p = cgroup.plan(CID)
    for d in p.dirs:
        assert f"/{_parent()}/{CID}" in d and "//" not in d


def _memsw(lay):
    """The container's memory.memsw.limit_in_bytes, if this host accounts swap."""
    if os.path.exists(f"{lay.v1['memory']}/memory.memsw.limit_in_bytes"):
        return f"{lay.v1['memory']}/{_parent()}/{CID}/memory.memsw.limit_in_bytes"
    return None


@needs_v1
@pytest.mark.parametrize("swap, total", [(None, 2 * 32 << 20), ("64m", 64 << 20),
                                         ("32m", 32 << 20), (-1, -1)])
def test_v1_memory_swap_follows_docker(swap, total):
    """memory+swap (memsw): twice -m by default, the given total, or -1 (unlimited);
    written after memory.limit_in_bytes, which it may never be below."""
    lay = cgroup.layout()
    memsw = _memsw(lay)
    if memsw is None:
        pytest.skip("this host's v1 memory controller does not account swap (no memsw files)")
    more = {} if swap is None else {"memory_swap": swap if swap == -1 else int(swap[:-1]) << 20}
    p = cgroup.plan(CID, memory=32 << 20, **more)
    files = [f for f, _ in p.writes]
    limit = f"{lay.v1['memory']}/{_parent()}/{CID}/memory.limit_in_bytes"
    assert files.index(limit) < files.index(memsw)
    assert dict(p.writes)[memsw] == str(total)


@needs_v1
def test_v1_more_limits():
    lay = cgroup.layout()
    p = cgroup.plan(CID, memory=64 << 20, memory_reservation=32 << 20, cpu_shares=512,
                    cpu_period=50000, cpu_quota=25000, pids_limit=None)
    writes, parent = dict(p.writes), _parent()
    assert writes[f"{lay.v1['memory']}/{parent}/{CID}/memory.soft_limit_in_bytes"] == str(32 << 20)
    cpu = f"{lay.v1['cpu']}/{parent}/{CID}"
    assert writes[cpu + "/cpu.shares"] == "512"
    files = [f for f, _ in p.writes]
    assert files.index(cpu + "/cpu.cfs_period_us") < files.index(cpu + "/cpu.cfs_quota_us")
    assert writes[cpu + "/cpu.cfs_period_us"] == "50000"
    assert writes[cpu + "/cpu.cfs_quota_us"] == "25000"


def _limit_writes(p):
    """The plan's writes but the container's own device policy (test_devices covers it)."""
    return {f: v for f, v in p.writes if "/devices." not in f}


@needs_v1
def test_v1_unlimited_quota_writes_nothing():
    assert _limit_writes(cgroup.plan(CID, cpu_quota=-1)) == {}


@needs_v1
def test_v1_oom_file():
    lay = cgroup.layout()
    p = cgroup.plan(CID)
    assert p.oom_file == f"{lay.v1['memory']}/{_parent()}/{CID}/memory.oom_control"


@needs_v1
def test_v1_cpuset_joined_only_when_asked_and_parent_initialised():
    lay = cgroup.layout()
    if "cpuset" not in lay.v1:
        pytest.skip("no v1 cpuset hierarchy")
    mount = lay.v1["cpuset"]
    d = f"{mount}/{_parent()}/{CID}"
    p = cgroup.plan(CID, cpuset_cpus="0")
    assert d in p.dirs and d + "/tasks" in p.join
    assert _limit_writes(p) == {d + "/cpuset.cpus": "0"}
    assert (os.path.basename(mount), "cpuset") in p.v1_mounts
    # the parent has CPUs and nodes (a task can join only then), and hands them down
    parent = f"{mount}/{_parent()}"
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(f"{mount}/{name}") as f:
            root_value = f.read().strip()
        with open(f"{parent}/{name}") as f:
            assert f.read().strip() == root_value, name
    with open(f"{parent}/cgroup.clone_children") as f:
        assert f.read().strip() == "1"
    p = cgroup.plan(CID, cpuset_mems="0")
    assert _limit_writes(p) == {d + "/cpuset.mems": "0"}


# ------------------------------------------------------------------ v2 plan on a fake root

@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    parent = root / _parent()
    parent.mkdir()
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "memory.swap.max").write_text("max\n")  # swap accounting on
    monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(str(root), {}))
    return root


def test_v2_plan(fake_v2):
    p = cgroup.plan(CID, memory=64 << 20, cpus=0.5, pids_limit=20)
    d = f"{fake_v2}/{_parent()}/{CID}"
    assert p.dirs == [d] and p.mkdirs == [d]
    assert p.into == d
    assert p.join == []
    assert p.unshare_ns is False
    assert p.mount_cgroup2 is True
    assert p.writes == [
        (d + "/memory.max", str(64 << 20)),
        (d + "/memory.swap.max", str(64 << 20)),  # Docker: -m alone gives as much swap
        (d + "/cpu.max", "50000 100000"),
        (d + "/pids.max", "20"),
    ]
    assert p.oom_file == d + "/memory.events"
    # the controllers a container's limits (and stats: io) need are enabled for the
    # parent's children, from the root down; cpuset only once a container asks for it
    for sc in (fake_v2 / "cgroup.subtree_control", fake_v2 / _parent() / "cgroup.subtree_control"):
        assert set(sc.read_text().split()) == {"+cpu", "+io", "+memory", "+pids"}


def test_v2_no_limits(fake_v2):
    p = cgroup.plan(CID)
    assert p.writes == []


def test_v2_device_program(fake_v2):
    """The standard rules' program, loaded once and shared; none for --privileged; a
    pool's reused plan attaches nothing again."""
    p = cgroup.plan(CID)
    assert isinstance(p.dev_prog, int) and p.dev_prog >= 0
    assert cgroup.plan(CID).dev_prog == p.dev_prog
    assert cgroup.plan(CID, device_rules=False).dev_prog is None
    assert p.reused().dev_prog is None


def test_v2_unlimited_pids(fake_v2):
    p = cgroup.plan(CID, pids_limit=-1)
    assert dict(p.writes)[f"{fake_v2}/{_parent()}/{CID}/pids.max"] == "max"


# ------------------------------------------------------------------ remove

def test_remove_missing_dirs_is_fine(tmp_path):
    cgroup.remove([str(tmp_path / "never-made"), str(tmp_path / "also-not")])


def test_remove_empty_dirs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    cgroup.remove([str(a), str(b)])
    assert not a.exists() and not b.exists()


def test_v2_memory_swap_follows_docker(fake_v2):
    d = f"{fake_v2}/{_parent()}/{CID}"

    def swap(**more):
        return dict(cgroup.plan(CID, memory=64 << 20, **more).writes).get(d + "/memory.swap.max")

    assert swap() == str(64 << 20)                          # -m alone: as much swap again
    assert swap(memory_swap=96 << 20) == str(32 << 20)      # memory+swap minus memory
    assert swap(memory_swap=64 << 20) == "0"                # equal to -m: no swap
    assert swap(memory_swap=-1) == "max"                    # unlimited swap
    assert cgroup.plan(CID, memory_swap=-1).writes == []    # nothing without -m


def test_v2_memory_swap_skipped_without_swap_accounting(fake_v2):
    (fake_v2 / _parent() / "memory.swap.max").unlink()
    d = f"{fake_v2}/{_parent()}/{CID}"
    assert cgroup.plan(CID, memory=64 << 20).writes == [(d + "/memory.max", str(64 << 20))]


def test_v2_more_limits(fake_v2):
    d = f"{fake_v2}/{_parent()}/{CID}"
    p = cgroup.plan(CID, memory_reservation=32 << 20, cpu_shares=1024, cpu_period=200000,
                    cpu_quota=50000)
    assert p.writes == [(d + "/memory.low", str(32 << 20)), (d + "/cpu.weight", "39"),
                        (d + "/cpu.max", "50000 200000")]
    assert dict(cgroup.plan(CID, cpu_quota=50000).writes) == {d + "/cpu.max": "50000 100000"}
    assert dict(cgroup.plan(CID, cpu_period=200000).writes) == {d + "/cpu.max": "max 200000"}
    assert dict(cgroup.plan(CID, cpu_period=200000, cpu_quota=-1).writes) == {
        d + "/cpu.max": "max 200000"}


@pytest.mark.parametrize("shares, weight", [(2, 1), (512, 20), (1024, 39), (262144, 10000)])
def test_cpu_weight_is_runcs_conversion(shares, weight):
    assert cgroup.cpu_weight(shares) == weight


def test_v2_cpuset_enabled_only_when_asked(fake_v2):
    d = f"{fake_v2}/{_parent()}/{CID}"
    sc = fake_v2 / _parent() / "cgroup.subtree_control"
    cgroup.plan(CID)
    assert "+cpuset" not in sc.read_text().split()
    p = cgroup.plan(CID, cpuset_cpus="0-1", cpuset_mems="0")
    assert p.writes == [(d + "/cpuset.cpus", "0-1"), (d + "/cpuset.mems", "0")]
    for f in (fake_v2 / "cgroup.subtree_control", sc):
        assert f.read_text().split() == ["+cpuset"]  # added to what was enabled before


def test_v2_missing_controller_is_one_clear_error(tmp_path, monkeypatch):
    """A limit whose controller the host does not offer fails the start, naming the
    flag; without limits the container still runs (no controller needed)."""
    from fastbox.errors import StartError
    root = tmp_path / "cgroup2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu pids\n")  # no memory, io, cpuset
    (root / "cgroup.subtree_control").write_text("")
    (root / _parent()).mkdir()
    (root / _parent() / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(str(root), {}))
    p = cgroup.plan(CID, cpus=0.5, pids_limit=5)
    assert p.oom_file is None  # no memory controller: nothing to read an OOM count from
    with pytest.raises(StartError) as e:
        cgroup.plan(CID, memory=64 << 20, memory_reservation=16 << 20)
    message = str(e.value)
    assert "\n" not in message and "--memory, --memory-reservation" in message
    assert "'memory'" in message and str(root) in message
    assert e.value.exit_code == 125
    with pytest.raises(StartError, match="--cpuset-cpus"):
        cgroup.plan(CID, cpuset_cpus="0")


def test_swap_total():
    assert cgroup.swap_total(None, None) is None
    assert cgroup.swap_total(None, -1) is None
    assert cgroup.swap_total(10, None) == 20
    assert cgroup.swap_total(10, 15) == 15
    assert cgroup.swap_total(10, -1) == -1


def test_oom_killed_reads_the_count(tmp_path):
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert cgroup.oom_killed(str(events)) is True
    control = tmp_path / "memory.oom_control"
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert cgroup.oom_killed(str(control)) is False
    assert cgroup.oom_killed(str(tmp_path / "gone")) is False
    assert cgroup.oom_killed(None) is False


def test_v1_missing_controller_is_one_clear_error(tmp_path, monkeypatch):
    """A v1 host without a memory hierarchy: -m fails the start (never a silent no-op)."""
    from fastbox.errors import StartError
    pids = str(tmp_path / "pids")
    monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(None, {"pids": pids}, {pids: "pids"}))
    with pytest.raises(StartError) as e:
        cgroup.plan(CID, memory=64 << 20, cpu_shares=512)
    assert "\n" not in str(e.value) and "--cpu-shares" in str(e.value)  # the first missing: cpu
    assert not os.path.exists(pids)  # failed before anything was made
