"""The network flags of `run` and `create`, parsed once into plain, JSON-able values.
Kept light (no imports beyond the errors): this is on the path of every `fastbox run`."""
from fastbox.errors import SpecError

MODES = ("bridge", "none", "host")
DEFAULT = "bridge"
_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def network_mode(value):
    """bridge (Docker's default), none, host, container:NAME|ID, or a user network's
    name. "default" is bridge, as in Docker."""
    if value in (None, "", "default"):
        return DEFAULT
    if not isinstance(value, str):
        raise SpecError(f"invalid --network {value!r}")
    if value in MODES:
        return value
    if value.startswith("container:"):
        if not value[len("container:"):]:
            raise SpecError("invalid --network 'container:': name the container")
        return value
    check_name(value, "--network")
    return value


def check_name(name, what="network name"):
    if not name or not name[0].isalnum() or not all(c in _NAME for c in name) or len(name) > 64:
        raise SpecError(f"invalid {what} {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64")
    return name


def own_endpoint(mode):
    """Whether a container in this mode gets an address of its own (a veth on a bridge)."""
    return mode not in ("none", "host") and not mode.startswith("container:")


def parse_ip(value, what):
    parts = value.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 and len(p) <= 3 for p in parts):
        raise SpecError(f"invalid {what} {value!r}: expected an IPv4 address such as 10.0.0.1")
    return ".".join(str(int(p)) for p in parts)


def parse_ip6(value, what):
    import _socket
    try:
        return _socket.inet_ntop(_socket.AF_INET6, _socket.inet_pton(_socket.AF_INET6, value))
    except (OSError, ValueError):
        raise SpecError(f"invalid {what} {value!r}: expected an IPv6 address such as fd00:1::1") from None


def parse_mac(value, what="--mac-address"):
    """A unicast MAC address, as the kernel takes it for an interface (not all zero)."""
    parts = str(value).split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise SpecError(f"invalid {what} {value!r}: expected a MAC address such as 92:d0:c6:0a:29:33")
    if int(parts[0], 16) & 1 or value.replace(":", "").strip("0") == "":
        raise SpecError(f"invalid {what} {value!r}: a multicast or all-zero address cannot be "
                        f"an interface's")
    return ":".join(parts).lower()


def _port_range(text, what, whole):
    lo, dash, hi = text.partition("-")
    if not lo.isdigit() or (dash and not hi.isdigit()):
        raise SpecError(f"invalid {what} {whole!r}: expected a port or a range such as 8000-8010")
    lo, hi = int(lo), int(hi) if dash else int(lo)
    if not 1 <= lo <= hi <= 65535:
        raise SpecError(f"invalid {what} {whole!r}: ports are 1-65535, a range low-high")
    return lo, hi


def parse_publish(values):
    """-p [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], ranges allowed. Returns normalized
    strings "HOSTIP:HOSTPORT:CONTAINERPORT/PROTO", one per container port: HOSTIP
    0.0.0.0 for all, HOSTPORT empty for a random one, or a range "LO-HI" of which one
    free port is taken (a range of host ports for a single container port)."""
    out = []
    for value in values or ():
        text, _, proto = str(value).partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise SpecError(f"invalid -p {value!r}: the protocol is tcp or udp")
        parts = text.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise SpecError(f"invalid -p {value!r}: expected [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]")
        ip = parse_ip(parts[0], "-p host address") if len(parts) == 3 and parts[0] else "0.0.0.0"
        host = parts[-2] if len(parts) >= 2 else ""
        c_lo, c_hi = _port_range(parts[-1], "-p container port", value)
        if not host:
            out += [f"{ip}::{p}/{proto}" for p in range(c_lo, c_hi + 1)]
            continue
        h_lo, h_hi = _port_range(host, "-p host port", value)
        if c_lo == c_hi and h_lo != h_hi:
            out.append(f"{ip}:{h_lo}-{h_hi}:{c_lo}/{proto}")
        elif h_hi - h_lo != c_hi - c_lo:
            raise SpecError(f"invalid -p {value!r}: the host and container ranges differ in size")
        else:
            out += [f"{ip}:{h_lo + i}:{c_lo + i}/{proto}" for i in range(c_hi - c_lo + 1)]
    return tuple(out)


def parse_expose(values):
    """Ports an image or --expose names: 80, 80/udp, 8000-8002 -> ("80/tcp", ...)."""
    out = []
    for value in values or ():
        text, _, proto = str(value).partition("/")
        proto = proto or "tcp"
        lo, hi = _port_range(text, "exposed port", value)
        out += [f"{p}/{proto}" for p in range(lo, hi + 1)]
    return tuple(out)


HOST_GATEWAY = "host-gateway"  # Docker's: the address of the container's gateway, the host


def parse_add_host(values):
    """--add-host NAME:IP (or NAME=IP; IP host-gateway: the host, at the network's
    gateway) -> ("NAME:IP", ...)."""
    out = []
    for value in values or ():
        name, sep, ip = str(value).partition("=") if "=" in str(value) else str(value).partition(":")
        if not sep or not name or not all(c.isalnum() or c in "-._" for c in name):
            raise SpecError(f"invalid --add-host {value!r}: expected NAME:IP")
        out.append(f"{name}:{ip if ip == HOST_GATEWAY else parse_ip(ip, '--add-host address')}")
    return tuple(out)


def parse_dns(values):
    return tuple(parse_ip(str(v), "--dns") for v in values or ())


def parse_dns_search(values):
    """--dns-search DOMAIN ("." alone: no search domain)."""
    out = []
    for v in values or ():
        v = str(v)
        if not v or (v != "." and (len(v) > 253 or not all(c.isalnum() or c in "-._" for c in v))):
            raise SpecError(f"invalid --dns-search {v!r}: expected a domain name (or .)")
        out.append(v)
    return tuple(out)


def parse_dns_option(values):
    """--dns-option OPTION, as resolv.conf's options line takes it (ndots:2, rotate)."""
    out = []
    for v in values or ():
        v = str(v)
        if not v or any(c.isspace() for c in v) or not v.isprintable():
            raise SpecError(f"invalid --dns-option {v!r}: one resolv.conf option, such as ndots:2")
        out.append(v)
    return tuple(out)


# Docker's namespaced sysctls: the IPC namespace's, the UTS one's, the network's (net.*)
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def parse_sysctls(values):
    """--sysctl KEY=VALUE (a dict too) -> sorted ((key, value), ...). Only what the
    container's own namespaces hold (its IPC's, UTS's kernel.domainname, its network's
    net.*), which its init writes before /proc/sys is made read-only."""
    items = list(values.items()) if isinstance(values, dict) else [
        tuple(str(v).partition("=")[::2]) for v in values or ()]
    out = {}
    for key, value in items:
        key, value = str(key), str(value)
        parts = key.split(".")
        shaped = all(p and all(c.isalnum() or c in "_-" for c in p) for p in parts)
        if not shaped or not (key in IPC_SYSCTLS or key == "kernel.domainname"
                              or key.startswith(("net.", "fs.mqueue."))):
            raise SpecError(f"invalid --sysctl {key!r}: not a namespaced sysctl (net.*, "
                            f"fs.mqueue.*, kernel.shm*, kernel.msg*, kernel.sem, kernel.domainname)")
        if not value or "\n" in value or "\0" in value:
            raise SpecError(f"invalid --sysctl {key}={value!r}: expected KEY=VALUE")
        out[key] = value
    return tuple(sorted(out.items()))


def parse_aliases(values):
    return tuple(check_name(str(v), "--network-alias") for v in values or ())
