"""Pausing a container: every process of its cgroup frozen at once (`fastbox pause`),
through the v1 freezer controller (freezer.state) or cgroup v2's cgroup.freeze. The
kernel freezes the whole cgroup, processes forked meanwhile included."""
import os
import time

from fastbox.errors import ContainerStateError
from fastbox.runtime import cgroup


def freeze(dirs):
    _set(dirs, True)


def thaw(dirs):
    _set(dirs, False)


def frozen(dirs):
    """Whether the container's cgroup is frozen now (False if it has none)."""
    target = _target(dirs)
    if target is None:
        return False
    kind, d = target
    if kind == "v1":
        return _read(d + "/freezer.state") == "FROZEN"
    return "frozen 1" in _read(d + "/cgroup.events").splitlines()


def _target(dirs):
    """("v1", the container's freezer cgroup) or ("v2", its cgroup), or None."""
    lay = cgroup.layout()
    mount = lay.v1.get("freezer")
    for d in dirs:
        if mount and d.startswith(mount + "/"):
            return "v1", d
        if not lay.v1 and os.path.exists(d + "/cgroup.freeze"):
            return "v2", d
    return None


def _set(dirs, on, timeout=10.0):
    target = _target(dirs)
    if target is None:
        raise ContainerStateError("this container has no freezer cgroup (started by an "
                                  "older fastbox, or the host has no freezer controller)")
    kind, d = target
    path, value = ((d + "/freezer.state", "FROZEN" if on else "THAWED") if kind == "v1"
                   else (d + "/cgroup.freeze", "1" if on else "0"))
    deadline = time.monotonic() + timeout
    while True:
        # v1: FREEZING until every task is frozen; writing again retries the laggards
        # (a task in an uninterruptible sleep), as runc does.
        with open(path, "w") as f:
            f.write(value)
        if frozen(dirs) == on:
            return
        if time.monotonic() > deadline:
            raise ContainerStateError(f"the container's cgroup did not {'freeze' if on else 'thaw'} "
                                      f"within {timeout:.0f}s")
        time.sleep(0.002)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
