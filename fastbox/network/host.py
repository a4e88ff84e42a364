"""A network's host side, made once and then found with one ioctl per start: its bridge
(with the gateway address, the MTU, route_localnet for ports published on 127.0.0.1),
IPv4 forwarding (and IPv6's, for an --ipv6 network), fastbox's nft table and the
network's rules. Runs `ip` and `nft`: this is the long-lived part, never on the path of a
start that finds the bridge. Everything is made in the caller's network namespace (the
host's, or a test's that plays it)."""
import _socket as socket
import os

from fastbox import config
from fastbox.errors import StartError


def bridge_index(net):
    """The bridge's ifindex, or 0 if it is not there."""
    try:
        return socket.if_nametoindex(net.bridge)
    except OSError:
        return 0


_ready = set()  # ids of the networks this process found set up by this version


def _marker(net):
    """There once this version set up net's host side (FASTBOX_RUN: gone at a reboot, as
    the bridge is): a bridge an earlier fastbox made has none, and is brought up to date."""
    return os.path.join(config.run_dir(), "net", "ready", net.id[:12])


def ready(net):
    """Whether net's host side is this version's (one stat per network and process)."""
    if net.id in _ready or os.path.exists(_marker(net)):
        _ready.add(net.id)
        return True
    return False


def ensure(net):
    """The bridge's ifindex; makes the bridge, the table and the rules if the bridge is
    missing (first use, or after a reboot), or brings a bridge an earlier fastbox made up
    to date (its table, rules and sysctls)."""
    index = bridge_index(net)
    if index and ready(net):
        return index
    import fcntl
    from fastbox.network import nft
    lock_dir = os.path.join(config.run_dir(), "net")
    config.private_dir(lock_dir)
    fd = os.open(os.path.join(lock_dir, ".host.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        index = bridge_index(net)
        if index and ready(net):
            return index
        if not index:
            _make_bridge(net)
        else:  # an earlier fastbox's
            _bridge_ipv6(net)
        _forwarding(net)
        nft.ensure_table()
        nft.ensure_network(net)
        config.private_dir(os.path.dirname(_marker(net)))
        os.close(os.open(_marker(net), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        _ready.add(net.id)
        return bridge_index(net)
    finally:
        os.close(fd)


def _forwarding(net):
    """Forwarding (IPv6's too for an --ipv6 network); route_localnet for ports published
    on 127.0.0.1."""
    _sysctl("net/ipv4/ip_forward", "1")
    _sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
    if net.subnet6:
        _sysctl("net/ipv6/conf/all/forwarding", "1")


def _bridge_ipv6(net):
    """No router advertisements taken on the bridge: a container (NET_RAW is a default
    capability) could otherwise make itself the host's IPv6 default router and give the
    host an address (CVE-2020-13401, whose fix left Docker's bridges without IPv6 unless
    asked). An IPv4-only bridge has no IPv6 at all. Set before the bridge comes up."""
    if net.subnet6:
        _sysctl(f"net/ipv6/conf/{net.bridge}/disable_ipv6", "0")
        _sysctl(f"net/ipv6/conf/{net.bridge}/accept_ra", "0")
    else:
        _sysctl(f"net/ipv6/conf/{net.bridge}/disable_ipv6", "1")


def _ip(*args):
    import subprocess
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise StartError(f"cannot set up bridge: ip {' '.join(args)}: {r.stderr.strip()}", "network", 22)


def _make_bridge(net):
    # A MAC of its own (02:42 and the gateway's address, as the containers' follow from
    # theirs), set at creation: a bridge left with the kernel's random one takes the
    # lowest MAC among its ports instead, and changes it as containers come and go. The
    # containers' neighbour entries for the gateway then name a MAC nobody answers to
    # (their traffic stalls until ARP gives up on it), and each change is one more
    # round of notifier work at a container's start and exit.
    from fastbox.network.store import mac_of
    mac = mac_of(net.gateway)
    _ip("link", "add", net.bridge, "address", mac, "mtu", str(net.mtu), "type", "bridge")
    try:
        _ip("addr", "add", f"{net.gateway}/{net.prefix}", "dev", net.bridge)
        _bridge_ipv6(net)  # before it comes up: no RA taken at any instant
        if net.subnet6:  # usable at once (nodad): the containers' addresses are unique by IPAM
            _ip("-6", "addr", "add", f"{net.gateway6}/{net.prefix6}", "dev", net.bridge, "nodad")
        _ip("link", "set", net.bridge, "up")
    except StartError:
        remove(net)
        raise


def _sysctl(name, value):
    """Written through /proc/sys/net, which is the writer's network namespace's. An IPv6
    one on a kernel without IPv6: nothing to write (an --ipv6 network is refused there)."""
    path = "/proc/sys/" + name
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
    except FileNotFoundError:
        if name.startswith("net/ipv6/") and not os.path.exists("/proc/sys/net/ipv6"):
            return
        raise
    with open(path, "w") as f:
        f.write(value)


def remove(net):
    """The bridge and the network's rules (network rm; the default bridge stays)."""
    import subprocess
    from fastbox.network import dns, nft
    dns.stop(net.id[:12])
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
    _ready.discard(net.id)
    try:
        os.unlink(_marker(net))
    except FileNotFoundError:
        pass
    if nft.table_exists():
        nft.remove_network(net)
