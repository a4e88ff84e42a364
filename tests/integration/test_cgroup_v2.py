"""The cgroup v2 path: the child is placed with CLONE_INTO_CGROUP, its cgroup namespace
starts there, and the cgroup is removed after exit. On a pure v2 host (the VM lane's
guest) it is fastbox's own path, with the memory, cpu and pids controllers; on a hybrid
host it is forced onto the cgroup2 mount, which holds no resource controller (no
limits); a pure v1 host has no v2 path to test."""
import os

import pytest

import fastbox
from fastbox.runtime import cgroup

PURE_V2 = cgroup.layout().mode == "v2"  # read before any test forces the layout


@pytest.fixture
def forced_v2(monkeypatch):
    """The v2 mount fastbox places containers in: its own on pure v2, forced on hybrid."""
    lay = cgroup.layout()
    if lay.mode == "v2":
        return lay.v2
    if lay.mode == "v1":
        pytest.skip("a pure v1 host has no cgroup2 mount")
    monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(lay.v2, {}))
    return lay.v2


def test_clone_into_cgroup_places_the_container_and_cleans_up(forced_v2, busybox):
    parent = os.path.join(forced_v2, os.environ["FASTBOX_CGROUP_PARENT"])
    seen = {}
    hold_r, hold_w = os.pipe()  # the container waits on its stdin until we have looked

    def on_start(pid):
        with open(f"/proc/{pid}/cgroup") as f:
            seen["host_view"] = [line for line in f.read().splitlines() if line.startswith("0::")]
        seen["dirs"] = sorted(os.listdir(parent))
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            seen["enabled"] = set(f.read().split())
        os.close(hold_w)

    try:
        r = fastbox.run("busybox", ["sh", "-c", "grep '^0::' /proc/self/cgroup; cat >/dev/null"],
                        capture_output=True, stdin=hold_r, on_start=on_start)
    finally:
        os.close(hold_r)
    assert r.exit_code == 0, r.stderr
    # Seen from the host: in <cgroup2>/<parent>/<container id> from its first instruction.
    [line] = seen["host_view"]
    assert line == f"0::/{os.environ['FASTBOX_CGROUP_PARENT']}/{r.id}"
    assert r.id in seen["dirs"]
    # Seen from inside: the cgroup namespace is rooted there.
    assert r.stdout.decode().strip() == "0::/"
    # Removed after exit.
    assert not os.path.exists(os.path.join(parent, r.id))
    if PURE_V2:
        # Pure v2: the parent hands its children the controllers the limits need.
        wanted = {"memory", "cpu", "pids"} & set(_read(os.path.join(forced_v2, "cgroup.controllers")).split())
        assert wanted == {"memory", "cpu", "pids"} and wanted <= seen["enabled"], seen["enabled"]


def _read(path):
    with open(path) as f:
        return f.read()
