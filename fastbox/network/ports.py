"""Host ports: each is checked by binding it on the host address (as Docker and podman
do) before a mapping is added, so that a port a host program listens on is refused with
one line; a random one is the kernel's choice of a free ephemeral port. A mapping holds
no socket, so a port that is ours to choose (random, or one of a range) also skips the
ports other containers map, and is chosen again if another start takes it first."""
import _socket as socket  # the C module: `socket` imports enum and selectors

from fastbox.errors import StartError


class PortInUse(StartError):
    def __init__(self, message):
        super().__init__(message, "network", 98)


def _probe(proto, host_ip, port, v6=False):
    """The port bound (0: the kernel picks), or None if someone holds it. v6: on every
    address, IPv6's too (a container with an IPv6 address is published there as well)."""
    port = _bind(socket.AF_INET, proto, host_ip, port)
    return port if port and (not v6 or _bind(socket.AF_INET6, proto, "::", port)) else None


def _bind(family, proto, host_ip, port):
    s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:  # IPv6's own port, whatever holds IPv4's
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        return s.getsockname()[1] if port == 0 else port
    except OSError:
        return None
    finally:
        s.close()


def wanted(publish, publish_all=False, expose=()):
    """The normalized -p items (options.parse_publish's), with -P's exposed ports."""
    items = list(publish)
    if publish_all:  # each exposed port once (the image's and --expose's may repeat)
        have = {w.rsplit(":", 1)[1] for w in items}
        items += [f"0.0.0.0::{e}" for e in dict.fromkeys(expose) if e not in have]
    return items


def chosen(item):
    """Whether the host port of item is ours to choose: a random one, or one of a range."""
    host = item.split(":")[1]
    return not host or "-" in host


def resolve(items, avoid=(), v6=False):
    """[(proto, host_ip, host_port, container_port)] for wanted()'s items: every host port
    fixed and found free. avoid: (proto, port) pairs (or a mapping keyed by them) not to
    choose: other containers' mappings, which hold no socket for a bind to meet. v6: the
    container has an IPv6 address (a port on every address is then IPv6's too)."""
    return [resolve_item(item, avoid, v6) for item in items]


def resolve_item(item, avoid=(), v6=False):
    host_ip, host, rest = item.split(":")
    cport, _, proto = rest.partition("/")
    v6 = v6 and host_ip == "0.0.0.0"
    return proto, host_ip, _host_port(proto, host_ip, host, item, avoid, v6), int(cport)


def _host_port(proto, host_ip, host, item, avoid, v6):
    where = "" if host_ip == "0.0.0.0" else host_ip + ":"
    if not host:
        port = _probe(proto, host_ip, 0, v6)
        if port and (proto, port) not in avoid:
            return port
        # the kernel's pick is mapped already (a mapping holds no socket): the next free
        # one up from it, around the ephemeral range
        lo, hi = _ephemeral_range()
        start = port if port and lo <= port <= hi else lo
        for i in range(1, hi - lo + 2):
            port = lo + (start - lo + i) % (hi - lo + 1)
            if (proto, port) not in avoid and _probe(proto, host_ip, port, v6):
                return port
        raise PortInUse(f"no free host port found for -p {item}")
    lo, _, hi = host.partition("-")
    for port in range(int(lo), int(hi or lo) + 1):
        if (not hi or (proto, port) not in avoid) and _probe(proto, host_ip, port, v6):
            return port
    if hi:
        raise PortInUse(f"Bind for {host_ip}:{lo}-{hi} failed: every port in the range is in use")
    raise PortInUse(f"Bind for {where or '0.0.0.0:'}{lo} failed: port is already allocated")


def _ephemeral_range():
    """The kernel's range for random ports (this network namespace's)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def describe(ports):
    """Docker's PORTS column: 127.0.0.1:8080->80/tcp, 0.0.0.0:32768->53/udp, and a run of
    consecutive ports as one range, 0.0.0.0:9000-9002->9000-9002/tcp."""
    runs = []  # [proto, ip, first host port, first container port, length]
    for proto, ip, hp, cp in ports:
        last = runs[-1] if runs else None
        if last and last[:2] == [proto, ip] and (hp, cp) == (last[2] + last[4], last[3] + last[4]):
            last[4] += 1
        else:
            runs.append([proto, ip, hp, cp, 1])
    return ", ".join(f"{host_address(ip)}:{hp}->{cp}/{proto}" if n == 1 else
                     f"{host_address(ip)}:{hp}-{hp + n - 1}->{cp}-{cp + n - 1}/{proto}"
                     for proto, ip, hp, cp, n in runs)


def host_address(ip):
    """An address as it leads ":PORT": an IPv6 one in brackets ([::]:8080)."""
    return f"[{ip}]" if ":" in ip else ip
