"""Host ports: each is checked by binding it on the host address (as Docker and podman
do) before a mapping is added, so that a port a host program listens on is refused with
one line; a random one is the kernel's choice of a free ephemeral port."""
import _socket as socket  # the C module: `socket` imports enum and selectors

from fastbox.errors import StartError

RANDOM_TRIES = 8


class PortInUse(StartError):
    def __init__(self, message):
        super().__init__(message, "network", 98)


def _probe(proto, host_ip, port):
    """The port bound (0: the kernel picks), or None if someone holds it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
        return s.getsockname()[1]
    except OSError:
        return None
    finally:
        s.close()


def resolve(publish, publish_all=False, expose=(), avoid=()):
    """[(proto, host_ip, host_port, container_port)] from RunSpec.publish (and -P with the
    exposed ports): every host port fixed and found free. avoid: ports to skip when one is
    chosen (those that just failed to be added)."""
    wanted = list(publish)
    if publish_all:  # each exposed port once (the image's and --expose's may repeat)
        have = {w.rsplit(":", 1)[1] for w in wanted}
        wanted += [f"0.0.0.0::{e}" for e in dict.fromkeys(expose) if e not in have]
    out = []
    for item in wanted:
        host_ip, host, rest = item.split(":")
        cport, _, proto = rest.partition("/")
        out.append((proto, host_ip, _host_port(proto, host_ip, host, item, avoid), int(cport)))
    return out


def _host_port(proto, host_ip, host, item, avoid):
    where = "" if host_ip == "0.0.0.0" else host_ip + ":"
    if not host:
        for _ in range(RANDOM_TRIES):
            port = _probe(proto, host_ip, 0)
            if port and port not in avoid:
                return port
        raise PortInUse(f"no free host port found for -p {item}")
    lo, _, hi = host.partition("-")
    for port in range(int(lo), int(hi or lo) + 1):
        if port not in avoid and _probe(proto, host_ip, port):
            return port
    if hi:
        raise PortInUse(f"Bind for {host_ip}:{lo}-{hi} failed: every port in the range is in use")
    raise PortInUse(f"Bind for {where or '0.0.0.0:'}{lo} failed: port is already allocated")


def describe(ports):
    """Docker's PORTS column: 127.0.0.1:8080->80/tcp, 0.0.0.0:32768->53/udp."""
    return ", ".join(f"{ip}:{hp}->{cp}/{proto}" for proto, ip, hp, cp in ports)
