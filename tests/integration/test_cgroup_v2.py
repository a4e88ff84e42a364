"""The cgroup v2 path, run for real on this hybrid host's cgroup2 mount (which holds no
resource controller, so no limits): the child is placed with CLONE_INTO_CGROUP, its
cgroup namespace starts there, and the cgroup is removed after exit."""
import os

import pytest

import fastbox
from fastbox.runtime import cgroup


def _cgroup2_mount():
    lay = cgroup.layout()
    return lay.v2 if lay.v2 and lay.v1 else None  # hybrid: a cgroup2 we can place into


@pytest.fixture
def forced_v2(monkeypatch):
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("needs a hybrid host (pure v2 hosts take this path by default)")
    monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(mount, {}))
    return mount


def test_clone_into_cgroup_places_the_container_and_cleans_up(forced_v2, busybox):
    parent = os.path.join(forced_v2, os.environ["FASTBOX_CGROUP_PARENT"])
    seen = {}
    hold_r, hold_w = os.pipe()  # the container waits on its stdin until we have looked

    def on_start(pid):
        with open(f"/proc/{pid}/cgroup") as f:
            seen["host_view"] = [line for line in f.read().splitlines() if line.startswith("0::")]
        seen["dirs"] = sorted(os.listdir(parent))
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
