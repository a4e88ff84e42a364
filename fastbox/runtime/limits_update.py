"""`fastbox update`: new limits written into a running container's cgroups, the same
writes a start makes (fastbox.runtime.cgroup.plan), on v1 or v2."""
import errno
import os

from fastbox import config
from fastbox.errors import ContainerStateError
from fastbox.runtime import cgroup


def apply(cid, dirs, spec):
    """Write spec's limits (a RunSpec, already merged with the container's own) into
    dirs, the container's cgroups."""
    saved = os.environ.get("FASTBOX_CGROUP_PARENT")
    # The plan names <hierarchy>/<parent>/<cid>: the parent the container was started
    # under, whatever ours is now.
    os.environ["FASTBOX_CGROUP_PARENT"] = _parent_of(cid, dirs) or config.cgroup_parent()
    try:
        p = cgroup.plan(cid, memory=spec.memory, cpus=spec.cpus, pids_limit=spec.pids_limit,
                        device_rules=False, **spec.cgroup_limits)
    finally:
        if saved is None:
            os.environ.pop("FASTBOX_CGROUP_PARENT", None)
        else:
            os.environ["FASTBOX_CGROUP_PARENT"] = saved
    if p.dev_prog is not None:
        os.close(p.dev_prog)
    _write_all([(path, value) for path, value in p.writes if not path.endswith(
        ("devices.allow", "devices.deny"))])


def _parent_of(cid, dirs):
    lay = cgroup.layout()
    mounts = list(lay.v1.values()) + ([lay.v2] if lay.v2 else [])
    for d in dirs:
        for m in mounts:
            if d.startswith(m + "/") and d.endswith("/" + cid):
                return d[len(m) + 1:-len(cid) - 1]
    return None


def _write_all(writes):
    """Each write in order; one the kernel refuses for now (v1: a memory limit above the
    current memory+swap limit, or the reverse) is retried after the others."""
    retry = []
    for path, value in writes:
        err = _write(path, value)
        if err == errno.EINVAL:
            retry.append((path, value))
        elif err:
            raise _error(path, value, err)
    for path, value in retry:
        err = _write(path, value)
        if err:
            raise _error(path, value, err)


def _write(path, value):
    try:
        with open(path, "w") as f:
            f.write(value)
        return 0
    except OSError as e:
        return e.errno


def _error(path, value, err):
    name = os.path.basename(path)
    if err == errno.ENOENT and "cpuset" in name:
        return ContainerStateError("cannot update the cpuset of a container started without "
                                   "--cpuset-cpus or --cpuset-mems on this host's cgroup v1")
    if err == errno.ENOENT:
        return ContainerStateError(f"cannot update {name}: the container's cgroup is gone "
                                   "(it is not running)")
    return ContainerStateError(f"cannot set {name} to {value}: {os.strerror(err)}")
