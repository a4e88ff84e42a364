"""Which cgroup hierarchies this host has, and the cgroup plan for one container.

Detected at runtime from /proc/self/mountinfo, never assumed: pure v2, pure v1, or
hybrid (v1 controllers plus a cgroup2 mount that holds none of them, as on this
project's CI machine). Every container cgroup is `<parent>/<id>` at the ROOT of each
hierarchy, never relative to the caller's own cgroup.
"""
import os

from fastbox import config
from fastbox.runtime import devices

# freezer: `fastbox pause` freezes the container's own cgroup, as runc does (v2 has
# cgroup.freeze in every cgroup).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices", "blkio", "cpuset", "freezer")
# A v1 hierarchy that a container joins only when it asks for it: a cpuset cgroup must be
# given CPUs and memory nodes before a task can join, and each join moves the task.
V1_ON_DEMAND = ("cpuset",)
# What the v2 parent enables for its children whenever the host has it (io: block I/O
# accounting for stats); cpuset only once a container asks for it.
V2_CONTROLLERS = ("cpu", "io", "memory", "pids")
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
                 "v1_mounts", "oom_file", "dev_prog")

    def __init__(self):
        self.dirs = []     # container cgroup dirs, removed after exit
        self.mkdirs = []   # made by the core before clone
        self.writes = []   # (file, value) limit writes, in order
        self.join = []     # v1 tasks files the child writes itself into
        self.into = None   # v2 dir for CLONE_INTO_CGROUP
        self.unshare_ns = False
        self.mount_cgroup2 = False
        self.v1_mounts = []  # (dir under /sys/fs/cgroup, mount options) inside the container
        self.oom_file = None  # memory.events (v2) or memory.oom_control (v1): oom_kill N
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
        nothing removed at its exit (nor an OOM count read: it spans every run)."""
        p = CgroupPlan()
        p.join, p.into, p.unshare_ns = self.join, self.into, self.unshare_ns
        p.mount_cgroup2, p.v1_mounts = self.mount_cgroup2, self.v1_mounts
        return p


# Which limits need which controller, and the flags that ask for them (for errors).
_NEEDS = (("memory", "memory", "--memory"),
          ("memory_reservation", "memory", "--memory-reservation"),
          ("cpus", "cpu", "--cpus"), ("cpu_shares", "cpu", "--cpu-shares"),
          ("cpu_period", "cpu", "--cpu-period"), ("cpu_quota", "cpu", "--cpu-quota"),
          ("pids_limit", "pids", "--pids-limit"), ("cpuset_cpus", "cpuset", "--cpuset-cpus"),
          ("cpuset_mems", "cpuset", "--cpuset-mems"))


def plan(cid, memory=None, cpus=None, pids_limit=None, device_rules=True, **more):
    """The cgroups of container cid and the limit writes that make Docker's limits.
    more: RunSpec.cgroup_limits (memory_swap, memory_reservation, cpu_shares,
    cpu_period, cpu_quota, cpuset_cpus, cpuset_mems); an unset limit writes nothing.
    device_rules: the devices the container may use (fastbox.runtime.devices), True
    for the standard ones. False (--privileged): no device controller; on v1, no
    devices cgroup of the container's own, so it keeps the device access of whoever
    starts it (Docker's privileged allows every device); only where devices has a
    hierarchy to itself."""
    lay = layout()
    lim = dict(more, memory=memory, cpus=cpus, pids_limit=pids_limit)
    p = CgroupPlan()
    if device_rules is True:
        device_rules = devices.DEFAULT_RULES
    if lay.v1:
        _plan_v1(p, lay, cid, lim, device_rules)
    else:
        _plan_v2(p, lay, cid, lim)
        if device_rules:
            p.dev_prog = devices.program(device_rules)
    return p


def swap_total(memory, memory_swap):
    """Docker's --memory-swap: memory plus swap; with only --memory, twice the memory
    (as much swap as memory); -1: unlimited swap. None: nothing to write."""
    if memory is None:
        return None
    if memory_swap is None:
        return 2 * memory
    return memory_swap


def cpu_weight(shares):
    """v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000], as runc and crun convert."""
    return 1 + ((shares - 2) * 9999) // 262142


def _cpu_max(lim):
    """(quota, period) in microseconds, quota None for unlimited; None: nothing set."""
    if lim.get("cpus") is not None:
        return int(lim["cpus"] * CPU_PERIOD_US), CPU_PERIOD_US
    period, quota = lim.get("cpu_period"), lim.get("cpu_quota")
    if period is None and quota is None:
        return None
    return (None if quota in (None, -1) else quota), period or CPU_PERIOD_US


def _plan_v1(p, lay, cid, lim, device_rules=True):
    parent = config.cgroup_parent()
    needed = {c for key, c, _ in _NEEDS if lim.get(key) is not None}
    for ctrl in sorted(needed - set(lay.v1)):
        _missing(ctrl, lim, "this host's cgroup v1 hierarchies")
    cpuset = "cpuset" in needed
    for mountpoint in sorted(set(lay.v1.values())):
        options = lay.v1_options[mountpoint]
        if not device_rules and options == "devices":
            continue
        if options in V1_ON_DEMAND and not cpuset:
            continue
        _ensure_v1_parent(lay, mountpoint, parent)
        d = f"{mountpoint}/{parent}/{cid}"
        p.dirs.append(d)
        p.mkdirs.append(d)
        p.join.append(d + "/tasks")
        p.v1_mounts.append((os.path.basename(mountpoint), options))
        if device_rules and lay.v1.get("devices") == mountpoint:
            p.writes.extend(devices.v1_writes(d, device_rules))
    w = p.writes

    def at(ctrl):
        return f"{lay.v1[ctrl]}/{parent}/{cid}/" if ctrl in lay.v1 else None

    mem = at("memory")
    if mem:
        p.oom_file = mem + "memory.oom_control"
        if lim["memory"] is not None:
            w.append((mem + "memory.limit_in_bytes", str(lim["memory"])))
            # after the memory limit: the kernel keeps memsw >= memory
            total = swap_total(lim["memory"], lim.get("memory_swap"))
            if _has_file(lay.v1["memory"] + "/memory.memsw.limit_in_bytes"):
                w.append((mem + "memory.memsw.limit_in_bytes", str(total)))
        if lim.get("memory_reservation") is not None:
            w.append((mem + "memory.soft_limit_in_bytes", str(lim["memory_reservation"])))
    cpu = at("cpu")
    if cpu:
        if lim.get("cpu_shares") is not None:
            w.append((cpu + "cpu.shares", str(lim["cpu_shares"])))
        cpu_max = _cpu_max(lim)
        if cpu_max:
            quota, period = cpu_max
            # A new v1 cgroup's period is already 100 ms: written only when another.
            if period != CPU_PERIOD_US:
                w.append((cpu + "cpu.cfs_period_us", str(period)))
            if quota is not None:
                w.append((cpu + "cpu.cfs_quota_us", str(quota)))
    if lim["pids_limit"] is not None:
        value = "max" if lim["pids_limit"] < 0 else str(lim["pids_limit"])
        w.append((at("pids") + "pids.max", value))
    # the new cpuset cgroup starts with the parent's CPUs and nodes (cgroup.clone_children)
    for key, name in (("cpuset_cpus", "cpuset.cpus"), ("cpuset_mems", "cpuset.mems")):
        if lim.get(key) is not None:
            w.append((at("cpuset") + name, lim[key]))
    p.unshare_ns = True


_ready_parents = set()
_files = {}


def _has_file(path):
    """Whether a cgroup interface file exists (swap accounting can be off), once."""
    if path not in _files:
        _files[path] = os.path.exists(path)
    return _files[path]


def _missing(ctrl, lim, where):
    from fastbox.errors import StartError
    flags = [flag for key, c, flag in _NEEDS if c == ctrl and lim.get(key) is not None]
    raise StartError(f"{', '.join(flags)} needs the cgroup {ctrl!r} controller, which "
                     f"{where} does not provide", "cgroup", 0)


def _ensure_v1_parent(lay, mountpoint, parent):
    """Make `<mountpoint>/<parent>` once per process. Each container's devices cgroup
    gets its own policy (a v1 cgroup can never allow more than its parent, and --device
    must be able to), so the parent's devices cgroup allows what the root does; on the
    cpuset hierarchy, each level gets its parent's CPUs and nodes."""
    key = (mountpoint, parent)
    if key in _ready_parents:
        return
    path = f"{mountpoint}/{parent}"
    _mkdir(path)
    if lay.v1.get("devices") == mountpoint:
        _lift_device_policy(path)
    if lay.v1.get("cpuset") == mountpoint:
        _init_cpuset(mountpoint, parent)
    _ready_parents.add(key)


def _init_cpuset(mountpoint, parent):
    """A v1 cpuset cgroup starts with no CPUs and no nodes, and takes no task until it
    has both: copy them down from the root to the parent, and have the parent's new
    children start with its own (cgroup.clone_children)."""
    above = mountpoint
    for part in parent.split("/"):
        here = f"{above}/{part}"
        for name in ("cpuset.cpus", "cpuset.mems"):
            with open(f"{here}/{name}") as f:
                if f.read().strip():
                    continue
            with open(f"{above}/{name}") as f:
                value = f.read().strip()
            with open(f"{here}/{name}", "w") as f:
                f.write(value)
        above = here
    with open(f"{above}/cgroup.clone_children", "r+") as f:
        if f.read().strip() != "1":
            f.write("1")


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


def _plan_v2(p, lay, cid, lim):
    parent = config.cgroup_parent()
    needed = {c for key, c, _ in _NEEDS if lim.get(key) is not None}
    enabled = _ensure_v2_parent(lay.v2, parent, needed & {"cpuset"})
    for ctrl in sorted(needed - enabled):
        _missing(ctrl, lim, f"{lay.v2} (cgroup v2)")
    d = f"{lay.v2}/{parent}/{cid}"
    p.dirs.append(d)
    p.mkdirs.append(d)
    w = p.writes
    if lim["memory"] is not None:
        w.append((d + "/memory.max", str(lim["memory"])))
        total = swap_total(lim["memory"], lim.get("memory_swap"))
        if _has_file(f"{lay.v2}/{parent}/memory.swap.max"):
            swap = "max" if total == -1 else str(total - lim["memory"])
            w.append((d + "/memory.swap.max", swap))
    if lim.get("memory_reservation") is not None:
        w.append((d + "/memory.low", str(lim["memory_reservation"])))
    if lim.get("cpu_shares") is not None:
        w.append((d + "/cpu.weight", str(cpu_weight(lim["cpu_shares"]))))
    cpu_max = _cpu_max(lim)
    if cpu_max:
        quota, period = cpu_max
        w.append((d + "/cpu.max", f"{'max' if quota is None else quota} {period}"))
    if lim["pids_limit"] is not None:
        w.append((d + "/pids.max", "max" if lim["pids_limit"] < 0 else str(lim["pids_limit"])))
    for key, name in (("cpuset_cpus", "cpuset.cpus"), ("cpuset_mems", "cpuset.mems")):
        if lim.get(key) is not None:
            w.append((d + "/" + name, lim[key]))
    if "memory" in enabled:
        p.oom_file = d + "/memory.events"
    p.into = d
    p.mount_cgroup2 = True


_v2_enabled = {}


def _ensure_v2_parent(root, parent, extra=()):
    """Enable what containers need (V2_CONTROLLERS, plus extra: cpuset when asked for)
    in cgroup.subtree_control from the root down to the parent, once per process;
    returns the controllers the parent's children have. Only controllers the root
    offers (cgroup.controllers) are asked for; no process is ever put in the parent (a
    cgroup with controllers enabled for its children may hold none)."""
    key = (root, parent)
    have = _v2_enabled.get(key)
    if have is not None and set(extra) <= have:
        return have
    available = _v2_controllers(root)
    wanted = available & (set(V2_CONTROLLERS) | set(extra) | (have or set()))
    path = root
    for part in parent.split("/"):
        _enable_subtree(path, wanted)
        path = f"{path}/{part}"
        _mkdir(path)
    _enable_subtree(path, wanted)
    _v2_enabled[key] = wanted
    return wanted


def _enable_subtree(path, wanted):
    with open(path + "/cgroup.subtree_control") as f:
        missing = wanted - {c.lstrip("+") for c in f.read().split()}
    if missing:
        try:
            with open(path + "/cgroup.subtree_control", "w") as f:
                f.write(" ".join("+" + c for c in sorted(missing)))
        except OSError as e:
            from fastbox.errors import StartError
            raise StartError(f"cannot enable the cgroup controllers {' '.join(sorted(missing))} "
                             f"in {path}: {e.strerror}", "cgroup", e.errno) from None


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
    kill(dirs)
    _thaw(dirs)  # a paused container's tasks die only once thawed (v1 freezer)
    while True:
        pids = _procs(dirs)
        if not pids or time.monotonic() > deadline:
            return not pids
        _kill_pinned(dirs, pids)
        time.sleep(0.01)


def _thaw(dirs):
    for d in dirs:
        for path, value in ((d + "/freezer.state", "THAWED"), (d + "/cgroup.freeze", "0")):
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError:  # not a freezer cgroup, or gone
                pass


def kill(dirs):
    """SIGKILL every process in the container's cgroups at once through cgroup.kill
    (v2, kernel 5.14+); False where there is none (v1), so the caller signals instead."""
    done = False
    for d in dirs:
        try:
            with open(d + "/cgroup.kill", "w") as f:
                f.write("1")
            done = True
        except OSError:  # v1, a kernel before 5.14, or no such cgroup
            pass
    return done


def oom_killed(path):
    """Whether the OOM killer killed a process of the container: the oom_kill count of
    memory.events (v2) or memory.oom_control (v1), read before the cgroup goes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1]) > 0
    except (OSError, TypeError, ValueError):
        pass
    return False


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
