"""Which cgroup hierarchies this host has, and the cgroup plan for one container.

Detected at runtime from /proc/self/mountinfo, never assumed: pure v2, pure v1, or
hybrid (v1 controllers plus a cgroup2 mount that holds none of them, as on this
project's CI machine). Every container cgroup is `<parent>/<id>` at the ROOT of each
hierarchy, never relative to the caller's own cgroup.
"""
import os

from fastbox import config
from fastbox.runtime import devices

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices")
CPU_PERIOD_US = 100000

_layout = None


class Layout:
    """The host's hierarchies: v2 mount point (or None) and v1 controller -> mount point."""

    __slots__ = ("v2", "v1", "v1_options")

    def __init__(self, v2, v1, v1_options=None):
        self.v2 = v2
        self.v1 = v1
        self.v1_options = v1_options or {}  # mount point -> its controllers, "cpu,cpuacct"

    @property
    def mode(self):
        if self.v1:
            return "hybrid" if self.v2 else "v1"
        return "v2"


def layout():
    global _layout
    if _layout is None:
        _layout = _detect()
    return _layout


def _detect():
    v2, v1, options_of = None, {}, {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, super_options = fields[sep + 1], fields[sep + 3]
            mountpoint = fields[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = mountpoint
            elif fstype == "cgroup":
                ours = [o for o in super_options.split(",") if o in V1_CONTROLLERS]
                for opt in ours:
                    v1.setdefault(opt, mountpoint)
                if ours:
                    options_of[mountpoint] = ",".join(ours)
    # Hybrid hosts keep the resource controllers on v1: limits go there.
    return Layout(v2, v1, options_of)


def _v2_controllers(root):
    try:
        with open(os.path.join(root, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


class CgroupPlan:
    """The directories, writes and joins the core performs for one container."""

    __slots__ = ("dirs", "mkdirs", "writes", "join", "into", "unshare_ns", "mount_cgroup2",
                 "v1_mounts", "dev_prog")

    def __init__(self):
        self.dirs = []     # container cgroup dirs, removed after exit
        self.mkdirs = []   # made by the core before clone
        self.writes = []   # (file, value) limit writes
        self.join = []     # v1 tasks files the child writes itself into
        self.into = None   # v2 dir for CLONE_INTO_CGROUP
        self.unshare_ns = False
        self.mount_cgroup2 = False
        self.v1_mounts = []  # (dir under /sys/fs/cgroup, mount options) inside the container
        self.dev_prog = None  # v2: the device program's fd, attached to `into` before clone

    def make(self):
        """Make the directories and write the limits now (what the core does per
        container), for a pool that reuses them."""
        for d in self.mkdirs:
            os.makedirs(d, exist_ok=True)
        for path, value in self.writes:
            with open(path, "w") as f:
                for line in value.split("\n"):  # one rule per write (v1 devices.allow)
                    f.write(line)
                    f.flush()
        if self.dev_prog is not None:
            devices.attach(self.into, self.dev_prog)

    def reused(self):
        """The plan for one more container in cgroups already made: join only, and
        nothing removed at its exit."""
        p = CgroupPlan()
        p.join, p.into, p.unshare_ns = self.join, self.into, self.unshare_ns
        p.mount_cgroup2, p.v1_mounts = self.mount_cgroup2, self.v1_mounts
        return p


def plan(cid, memory=None, cpus=None, pids_limit=None, device_rules=True):
    """device_rules: the devices the container may use (fastbox.runtime.devices), True
    for the standard ones. False (--privileged): no device controller; on v1, no
    devices cgroup of the container's own, so it keeps the device access of whoever
    starts it (Docker's privileged allows every device); only where devices has a
    hierarchy to itself."""
    lay = layout()
    p = CgroupPlan()
    if device_rules is True:
        device_rules = devices.DEFAULT_RULES
    if lay.v1:
        _plan_v1(p, lay, cid, memory, cpus, pids_limit, device_rules)
    else:
        _plan_v2(p, lay, cid, memory, cpus, pids_limit)
        if device_rules:
            p.dev_prog = devices.program(device_rules)
    return p


def _plan_v1(p, lay, cid, memory, cpus, pids_limit, device_rules=True):
    parent = config.cgroup_parent()
    for mountpoint in sorted(set(lay.v1.values())):
        if not device_rules and lay.v1_options[mountpoint] == "devices":
            continue
        _ensure_v1_parent(lay, mountpoint, parent)
        d = f"{mountpoint}/{parent}/{cid}"
        p.dirs.append(d)
        p.mkdirs.append(d)
        p.join.append(d + "/tasks")
        p.v1_mounts.append((os.path.basename(mountpoint), lay.v1_options[mountpoint]))
        if device_rules and lay.v1.get("devices") == mountpoint:
            p.writes.extend(devices.v1_writes(d, device_rules))
    if memory is not None and "memory" in lay.v1:
        p.writes.append((f"{lay.v1['memory']}/{parent}/{cid}/memory.limit_in_bytes", str(memory)))
    if cpus is not None and "cpu" in lay.v1:
        # A new v1 cgroup's period is already 100 ms, the one we use: only the quota.
        base = f"{lay.v1['cpu']}/{parent}/{cid}"
        p.writes.append((base + "/cpu.cfs_quota_us", str(int(cpus * CPU_PERIOD_US))))
    if pids_limit is not None and "pids" in lay.v1:
        value = "max" if pids_limit < 0 else str(pids_limit)
        p.writes.append((f"{lay.v1['pids']}/{parent}/{cid}/pids.max", value))
    p.unshare_ns = True


_ready_parents = set()


def _ensure_v1_parent(lay, mountpoint, parent):
    """Make `<mountpoint>/<parent>` once per process. Each container's devices cgroup
    gets its own policy (a v1 cgroup can never allow more than its parent, and --device
    must be able to), so the parent's devices cgroup allows what the root does."""
    key = (mountpoint, parent)
    if key in _ready_parents:
        return
    path = f"{mountpoint}/{parent}"
    _mkdir(path)
    if lay.v1.get("devices") == mountpoint:
        _lift_device_policy(path)
    _ready_parents.add(key)


def _mkdir(path):
    """os.makedirs(path, exist_ok=True) in one syscall when the parent exists (the CLI
    does this for every hierarchy on every start)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def _lift_device_policy(path):
    """fastbox before --device wrote its deny policy on the parent; lift it, which the
    kernel allows while no cgroup is below (else a --device beyond the standard devices
    fails until the parent is empty)."""
    with open(path + "/devices.list") as f:
        if f.read().startswith("a "):
            return
    try:
        with open(path + "/devices.allow", "w") as f:
            f.write("a")
    except OSError:
        pass


def _plan_v2(p, lay, cid, memory, cpus, pids_limit):
    parent = config.cgroup_parent()
    _ensure_v2_parent(lay.v2, parent)
    d = f"{lay.v2}/{parent}/{cid}"
    p.dirs.append(d)
    p.mkdirs.append(d)
    if memory is not None:
        p.writes.append((d + "/memory.max", str(memory)))
        p.writes.append((d + "/memory.swap.max", "0"))
    if cpus is not None:
        p.writes.append((d + "/cpu.max", f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}"))
    if pids_limit is not None:
        p.writes.append((d + "/pids.max", "max" if pids_limit < 0 else str(pids_limit)))
    p.into = d
    p.mount_cgroup2 = True


def _ensure_v2_parent(root, parent):
    """Enable memory, cpu and pids for the parent's children, from the root down."""
    key = (root, parent)
    if key in _ready_parents:
        return
    wanted = _v2_controllers(root) & {"memory", "cpu", "pids"}
    path = root
    for part in parent.split("/"):
        _enable_subtree(path, wanted)
        path = f"{path}/{part}"
        os.makedirs(path, exist_ok=True)
    _enable_subtree(path, wanted)
    _ready_parents.add(key)


def _enable_subtree(path, wanted):
    with open(path + "/cgroup.subtree_control") as f:
        missing = wanted - set(f.read().split())
    if missing:
        with open(path + "/cgroup.subtree_control", "w") as f:
            f.write(" ".join("+" + c for c in sorted(missing)))


def dirs_for(cid):
    """The directories plan(cid) makes, computed without making anything (the janitor's
    entry names them before the start)."""
    lay, parent = layout(), config.cgroup_parent()
    if lay.v1:
        return [f"{m}/{parent}/{cid}" for m in sorted(set(lay.v1.values()))]
    return [f"{lay.v2}/{parent}/{cid}"]


def kill_all(dirs, timeout=5.0):
    """Kill every process left in the container's cgroups (a container whose owner or
    monitor died runs on unwatched) and wait until they are gone; False if some are
    still there after timeout. v2 has cgroup.kill; on v1 each pid is pinned with a pidfd
    and signalled only if it is still in the cgroup, so a pid reused outside it is never
    hit."""
    import time
    deadline = time.monotonic() + timeout
    for d in dirs:
        try:
            with open(d + "/cgroup.kill", "w") as f:
                f.write("1")
        except OSError:  # v1, a kernel before 5.14, or no such cgroup
            pass
    while True:
        pids = _procs(dirs)
        if not pids or time.monotonic() > deadline:
            return not pids
        _kill_pinned(dirs, pids)
        time.sleep(0.01)


def _procs(dirs):
    pids = set()
    for d in dirs:
        try:
            with open(d + "/cgroup.procs") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return pids


def _kill_pinned(dirs, pids):
    import signal
    fds = {}
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid)
        except OSError:  # gone already
            pass
    try:
        still = _procs(dirs)  # read after the pidfds: each one names a member
        for pid, fd in fds.items():
            if pid in still:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    finally:
        for fd in fds.values():
            os.close(fd)


def remove(dirs):
    """rmdir the container's cgroups once its processes are gone; a cgroup still busy
    after a second is an error, never a silent leftover."""
    for d in dirs:
        for attempt in range(200):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:  # EBUSY: the last task is still being torn down
                if e.errno != 16:
                    raise
                if attempt == 199:
                    from fastbox.errors import ContainerStateError
                    raise ContainerStateError(f"cgroup {d} still has processes: not removed") from None
                import time
                time.sleep(0.005)
