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


@needs_v1
def test_v1_dirs_are_at_hierarchy_roots():
    lay = cgroup.layout()
    p = cgroup.plan(CID)
    mountpoints = sorted(set(lay.v1.values()))
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
    for ctrl in ("memory", "cpu", "pids", "devices"):
        if ctrl in lay.v1:
            assert f"{lay.v1[ctrl]}/{_parent()}/{CID}" in p.dirs, ctrl


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
    assert len([f for f in writes if "/devices." not in f]) == 3
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
    for mp in set(lay.v1.values()):
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
    assert dict(p.writes) == {
        d + "/memory.max": str(64 << 20),
        d + "/memory.swap.max": "0",
        d + "/cpu.max": "50000 100000",
        d + "/pids.max": "20",
    }
    # the controllers a container's limits need are enabled for the parent's children
    for sc in (fake_v2 / "cgroup.subtree_control", fake_v2 / _parent() / "cgroup.subtree_control"):
        assert set(sc.read_text().split()) == {"+cpu", "+memory", "+pids"}


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
