"""Linux capabilities by name, and the set a container gets from --cap-add, --cap-drop
and --privileged, with Docker's rules. Light: on the path of every `fastbox run`."""
from fastbox.errors import SpecError

# linux/capability.h, by number
NAMES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
         "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
         "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
         "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
         "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
         "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
         "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
         "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
         "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
NUMBER = {name: i for i, name in enumerate(NAMES)}

# Docker's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
# NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
DEFAULT = sum(1 << c for c in (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31))
ALL = (1 << len(NAMES)) - 1  # the core drops whatever of it this kernel lacks


def normalize(values, flag):
    """'sys_admin', 'CAP_SYS_ADMIN', 'all' -> ('CAP_SYS_ADMIN',), ('ALL',): Docker's
    spelling, case-insensitive, CAP_ optional; unknown names are an error."""
    if isinstance(values, str):
        values = (values,)
    out = []
    for value in values or ():
        name = str(value).strip().upper()
        if name != "ALL" and not name.startswith("CAP_"):
            name = "CAP_" + name
        if name != "ALL" and name not in NUMBER:
            raise SpecError(f"invalid {flag} {value!r}: unknown capability")
        if name not in out:
            out.append(name)
    return tuple(out)


def effective(cap_add=(), cap_drop=(), privileged=False):
    """The container's capability set (bounding, and effective for root) as a bit mask,
    by Docker's rules: --privileged gets all; --cap-add ALL gets all but --cap-drop;
    --cap-drop ALL keeps only --cap-add; else the defaults less drops plus adds."""
    if privileged or "ALL" in cap_add:
        return ALL & ~(0 if privileged else _mask(cap_drop))
    if "ALL" in cap_drop:
        return _mask(cap_add)
    return (DEFAULT & ~_mask(cap_drop)) | _mask(cap_add)


def names(mask):
    return [n for i, n in enumerate(NAMES) if mask >> i & 1]


def _mask(names_):
    return sum(1 << NUMBER[n] for n in names_ if n != "ALL")
