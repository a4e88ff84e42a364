"""--device and --device-cgroup-rule, parsed the way Docker takes them.

    --device HOST[:CONTAINER][:PERMISSIONS]   /dev/fuse, /dev/sdb:/dev/xvdb:r
    --device-cgroup-rule 'TYPE MAJOR:MINOR ACCESS'   'c 10:229 rwm', 'c 136:* rw'

Only the syntax is checked here (fastbox.spec calls in); what the host path names is
looked up when the container starts (fastbox.runtime.devices), as Docker's daemon does.
"""
import os

from fastbox.errors import SpecError
from fastbox.spec import Device

ACCESS_ORDER = "rwm"
MAX_MAJOR, MAX_MINOR = (1 << 12) - 1, (1 << 20) - 1  # what a dev_t holds
# What fastbox makes in every container's /dev (csrc/fb_mount.c): a --device may not
# replace or shadow them.
RESERVED = frozenset(("null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd",
                      "stdin", "stdout", "stderr", "core", "pts", "shm", "mqueue"))


def _access(text):
    """'rwm', 'mr', 'rw' -> the letters in r, w, m order; None if not such a set."""
    if not text or len(text) > 3 or any(c not in ACCESS_ORDER for c in text):
        return None
    return "".join(c for c in ACCESS_ORDER if c in text)


def parse_device(value):
    """'HOST[:CONTAINER][:PERMISSIONS]' -> Device. The container path defaults to the
    host's; it must be a new name under /dev (not /dev/pts, /dev/shm, /dev/mqueue, nor
    a node every container has)."""
    if isinstance(value, Device):
        return value
    text = str(value)
    parts = text.split(":")
    flag = f"invalid --device {text!r}"
    if len(parts) > 3 or not all(parts):
        raise SpecError(f"{flag}: expected HOST[:CONTAINER][:PERMISSIONS]")
    host, container, permissions = parts[0], parts[0], "rwm"
    if len(parts) == 3:
        container, permissions = parts[1], _access(parts[2])
        if permissions is None:
            raise SpecError(f"{flag}: permissions are any of r, w and m")
    elif len(parts) == 2:
        if _access(parts[1]) is not None:
            permissions = _access(parts[1])
        else:
            container = parts[1]
    if not host.startswith("/"):
        raise SpecError(f"{flag}: the host path must be absolute")
    container = os.path.normpath(container) if container.startswith("/") else container
    if not container.startswith("/dev/"):
        raise SpecError(f"{flag}: the container path must be under /dev")
    first = container[len("/dev/"):].split("/")[0]
    if first in RESERVED:
        raise SpecError(f"{flag}: /dev/{first} is made by fastbox in every container")
    return Device(os.path.normpath(host), container, permissions)


def parse_devices(values):
    """Each --device parsed; one given twice counts once, two for one container path
    (or one below another's) are an error."""
    out = []
    for value in values:
        d = parse_device(value)
        if any(str(o) == str(d) for o in out):
            continue
        for o in out:
            a, b = sorted((o.container, d.container))
            if a == b or b.startswith(a + "/"):
                raise SpecError(f"invalid --device {str(value)!r}: {a} is already given by "
                                f"--device {str(o)!r}")
        out.append(d)
    return tuple(out)


def parse_cgroup_rule(value):
    """Docker's 'TYPE MAJOR:MINOR ACCESS' (TYPE a, b or c; a number or * for MAJOR and
    MINOR; ACCESS any of r, w, m) -> the rule normalized, e.g. 'c 10:229 rwm'. 'a'
    (every device) is only 'a *:* rwm': v1's devices cgroup reads any rule of type a as
    every device, whatever numbers follow."""
    text = str(value)
    flag = f"invalid --device-cgroup-rule {text!r}"
    fields = text.split()
    if len(fields) != 3 or fields[0] not in ("a", "b", "c") or fields[1].count(":") != 1:
        raise SpecError(f"{flag}: expected TYPE MAJOR:MINOR ACCESS, e.g. 'c 10:229 rwm'")
    kind, numbers, access = fields
    major, minor = numbers.split(":")
    for number, top, what in ((major, MAX_MAJOR, "major"), (minor, MAX_MINOR, "minor")):
        if number != "*" and not (number.isdigit() and number.isascii() and int(number) <= top):
            raise SpecError(f"{flag}: the {what} number is * or 0 to {top}")
    normalized = _access(access)
    if normalized is None:
        raise SpecError(f"{flag}: the access is any of r, w and m")
    if kind == "a" and (major, minor, normalized) != ("*", "*", "rwm"):
        raise SpecError(f"{flag}: type a (every device) takes only '*:* rwm'")
    numbers = ":".join(n if n == "*" else str(int(n)) for n in (major, minor))
    return f"{kind} {numbers} {normalized}"
