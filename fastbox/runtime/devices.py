"""Which devices a container may use, and the device nodes it gets.

The allow list is decided here, once per container: the standard devices (runc's
default list), then each --device, then each --device-cgroup-rule; everything else is
denied. The device controller then enforces it:
  - cgroup v1: written into the container's own devices cgroup before the container
    joins it (`devices.deny a`, then one `devices.allow` line per rule);
  - cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE, csrc/fb_devices.c), loaded
    once per rule set in this process and reused by its fd; the core attaches it to the
    container's cgroup before the clone that puts the container there.
A v2 host that cannot load the program (no CONFIG_CGROUP_BPF, a seccomp or LSM policy
that refuses bpf(2)) gets no container at all, unless the user opts out with
`--security-opt devices=unconfined`: with MKNOD among the default capabilities, a
container without a device controller can open the host's disks and /dev/mem.

Rules are Docker's strings ('c 10:229 rwm', 'c 136:* rwm', 'b *:* m').
"""
import os
import stat

from fastbox.errors import SpecError, StartError

DEFAULT_RULES = ("c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",  # null zero full
                 "c 1:8 rwm", "c 1:9 rwm",  # random urandom
                 "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",  # tty console ptmx
                 "c 136:* rwm",  # the container's own pseudo-terminals (devpts)
                 "c 10:200 rwm",  # tun
                 "c *:* m", "b *:* m")  # mknod of any node (opening it is another matter)
OPT_OUT = "--security-opt devices=unconfined"

# csrc/fb_devices.h
_TYPES = {"a": 0, "b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}
WILDCARD = -1

_programs = {}  # rule tuple -> loaded program fd, for the life of this process


def rules_for(spec, nodes=None):
    """The container's allow list, or False when it has no device controller
    (--privileged, --security-opt devices=unconfined). nodes: nodes_for(spec), when the
    caller has it: each host node is looked at once, so the node made in the container
    and the rule that lets it be opened have the same numbers."""
    if not spec.devices_confined:
        return False
    if nodes is None:
        nodes = nodes_for(spec)
    extra = tuple(f"{'b' if stat.S_ISBLK(mode) else 'c'} {major}:{minor} {d.permissions}"
                  for (_, mode, major, minor, _, _), d in zip(nodes, spec.devices))
    if not extra and not spec.device_cgroup_rules:
        return DEFAULT_RULES
    seen, rules = set(), []
    for rule in DEFAULT_RULES + extra + spec.device_cgroup_rules:
        if rule not in seen:
            seen.add(rule)
            rules.append(rule)
    return tuple(rules)


def nodes_for(spec):
    """The --device nodes the core makes in the container's /dev: (path under /dev,
    mode with its type, major, minor, uid, gid), each like the host's node."""
    out = []
    for d in spec.devices:
        st = _stat(d)
        out.append((d.container[len("/dev/"):], stat.S_IFMT(st.st_mode) | stat.S_IMODE(st.st_mode),
                    os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_gid))
    return out


def _stat(device):
    try:
        st = os.stat(device.host)
    except OSError as e:
        raise SpecError(f"invalid --device {str(device)!r}: {device.host}: {e.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise SpecError(f"invalid --device {str(device)!r}: {device.host} is not a device node")
    return st


def v1_writes(cgroup_dir, rules):
    """The writes that give a new v1 devices cgroup exactly rules: deny everything, then
    allow each (the core writes a value of several lines one line at a time)."""
    lines = ["a" if r == "a *:* rwm" else r for r in rules]
    return [(cgroup_dir + "/devices.deny", "a"), (cgroup_dir + "/devices.allow", "\n".join(lines))]


def flatten(rules):
    """Docker's rule strings -> (type, major, minor, access) for csrc/fb_devices.c."""
    out = []
    for rule in rules:
        kind, numbers, access = rule.split()
        major, minor = (WILDCARD if n == "*" else int(n) for n in numbers.split(":"))
        out.append((_TYPES[kind], major, minor, sum(_ACCESS[c] for c in access)))
    return out


def program(rules):
    """The fd of the loaded cgroup v2 program for rules: loaded on first use, then
    reused by every container with the same rules (the engine or API process pays once).
    Kept open for the life of the process: a container being started may hold it."""
    key = tuple(rules)
    fd = _programs.get(key)
    if fd is not None:
        return fd
    from fastbox import _core
    try:
        new = _core.load_device_program(flatten(key))
    except _core.CoreError as e:
        raise StartError(f"cannot load the cgroup v2 device program ({os.strerror(e.errno)}): "
                         f"without it a container could open any host device; {OPT_OUT} runs "
                         "it without device control", "cgroup setup", e.errno) from None
    fd = _programs.setdefault(key, new)  # another thread may have loaded it meanwhile
    if fd != new:
        os.close(new)
    return fd


def preload():
    """Load the standard rules' program now, on a v2 host (the engine's warm-up): every
    run then finds it loaded. A host that cannot load it is told at its first run."""
    from fastbox.runtime import cgroup
    if cgroup.layout().v1:
        return
    try:
        program(DEFAULT_RULES)
    except StartError:
        pass


def attach(cgroup_dir, prog_fd):
    """Attach the program to a v2 cgroup made ahead of time (a pool's)."""
    from fastbox import _core
    try:
        _core.attach_device_program(cgroup_dir, prog_fd)
    except _core.CoreError as e:
        raise StartError(f"cannot attach the device program to {cgroup_dir}: "
                         f"{os.strerror(e.errno)}",
                         "cgroup setup", e.errno) from None
