"""Addresses: one lease file per address in use, FASTBOX_RUN/net/leases/<network id>/<ip>,
holding the container's id. Taken under the network's flock, so no two live containers
ever share an address. A lease is freed when its container's endpoint is released (rm, a
foreground run's exit, a sweep), and reclaimed from a dead owner when the pool runs out.
FASTBOX_RUN is on tmpfs: a reboot, which also empties the kernel's network state, leaves
no lease behind."""
import fcntl
import os

from fastbox import config
from fastbox.errors import ContainerStateError, SpecError, StartError
from fastbox.network import options
from fastbox.network.store import int_to_ip, ip_to_int, network6_of, network_of


def leases_dir(net):
    return f"{config.run_dir()}/net/leases/{net.id[:12]}"


def lease_path(network_id, ip):
    """The lease of ip on the network with that id (an endpoint's record names both)."""
    return f"{config.run_dir()}/net/leases/{network_id[:12]}/{ip}"


class Locked:
    """The network's lease lock, held for the with block."""

    def __init__(self, net):
        self.dir = leases_dir(net)

    def __enter__(self):
        try:
            self.fd = os.open(f"{self.dir}/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            config.private_dir(self.dir)
            self.fd = os.open(f"{self.dir}/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing drops the flock


def pick(net, taken):
    """The lowest free host address of net that is not the gateway."""
    base = ip_to_int(net.subnet)
    size = 1 << (32 - net.prefix)
    gw = ip_to_int(net.gateway)
    for n in range(base + 1, base + size - 1):
        if n != gw and int_to_ip(n) not in taken:
            return int_to_ip(n)
    return None


_last = {}  # (network id, subnet, prefix, gateway) -> the address this process last leased


def allocate_locked(net, cid, reclaim, record):
    """Under net's lock (Locked): a lease for cid. record(ip) writes the endpoint's record
    before the lease exists; reclaim(net, leases) frees the leases of dead owners and is
    called only when the pool is exhausted. The address this process leased last comes
    first if it is free (one stat): its container has most likely exited (back-to-back
    runs), and the directory's listing costs five syscalls; else the lowest free one."""
    where = leases_dir(net)
    key = (net.id, net.subnet, net.prefix, net.gateway)
    ip = _last.get(key)
    if ip is None or os.path.exists(f"{where}/{ip}"):
        ip = _lowest_free(net, where, reclaim)
    record(ip)
    write_lease(where, ip, cid)
    _last[key] = ip
    return ip


def _lowest_free(net, where, reclaim):
    taken = set(os.listdir(where))
    ip = pick(net, taken)
    if ip is None:
        reclaim(net, [n for n in taken if n != ".lock"])
        ip = pick(net, set(os.listdir(where)))
    if ip is None:
        raise StartError(f"no free address left in network {net.name} "
                         f"({net.subnet}/{net.prefix})", "network", 28)
    return ip


def take_locked(net, key, ip, reclaim, record):
    """Under net's lock: the address asked for (`run --ip`, `connect --ip`) for key,
    reclaimed first from a dead owner. record(ip) as allocate_locked's."""
    if holder(net, ip) is not None:
        reclaim(net, [ip])
    if holder(net, ip) is not None:
        raise ContainerStateError(f"Address already in use: {ip} in network {net.name}")
    record(ip)
    write_lease(leases_dir(net), ip, key)
    return ip


def check_ip6(net, value, what="--ip6"):
    """value as an IPv6 address of net's for a container: net has IPv6, value is in its
    subnet and neither the subnet's own address nor the gateway, nor where another
    container's address follows from its IPv4 one (Network.ip6_of)."""
    ip6 = options.parse_ip6(value, what)
    if not net.subnet6:
        raise SpecError(f"invalid {what} {value}: network {net.name} has no IPv6 "
                        f"(fastbox network create --ipv6)")
    if network6_of(ip6, net.prefix6) != net.subnet6 or ip6 == net.subnet6:
        raise SpecError(f"invalid {what} {value}: it does not belong to the subnet of network "
                        f"{net.name} ({net.subnet6}/{net.prefix6})")
    if ip6 == net.gateway6:
        raise SpecError(f"invalid {what} {value}: it is the gateway of network {net.name}")
    if net.derived(ip6):
        raise SpecError(f"invalid {what} {value}: it is the IPv6 address fastbox gives the "
                        f"container with IPv4 address {net.ip4_of(ip6)} on network {net.name}")
    return ip6


def check_ip(net, value, what="--ip"):
    """value as an address of net's for a container: in its subnet, neither the subnet's
    own address nor its broadcast, nor the gateway."""
    ip = options.parse_ip(value, what)
    base, n = ip_to_int(net.subnet), ip_to_int(ip)
    if network_of(ip, net.prefix) != net.subnet or n in (base, base + (1 << (32 - net.prefix)) - 1):
        raise SpecError(f"invalid {what} {value}: it does not belong to the subnet of network "
                        f"{net.name} ({net.subnet}/{net.prefix})")
    if ip == net.gateway:
        raise SpecError(f"invalid {what} {value}: it is the gateway of network {net.name}")
    return ip


def write_lease(where, ip, cid):
    fd = os.open(f"{where}/{ip}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, cid.encode())
    finally:
        os.close(fd)


def holder(net, ip):
    try:
        with open(os.path.join(leases_dir(net), ip)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def free(net, ip, cid):
    """Under net's lock: frees ip if cid holds it (a lease reclaimed and taken by another
    is theirs), or if it is empty: its writer died between creating it and writing its
    name (no live writer is ever seen under the lock)."""
    path = os.path.join(leases_dir(net), ip)
    if holder(net, ip) in (cid, ""):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def held(net):
    try:
        return sorted(n for n in os.listdir(leases_dir(net)) if n != ".lock")
    except FileNotFoundError:
        return []
