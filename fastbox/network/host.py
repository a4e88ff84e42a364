"""A network's host side, made once and then found with one ioctl per start: its bridge
(with the gateway address, the MTU, route_localnet for ports published on 127.0.0.1),
IPv4 forwarding (and IPv6's, for an --ipv6 network), fastbox's nft table and the
network's rules. Runs `ip` and `nft`: this is the long-lived part, never on the path of a
start that finds the bridge. Everything is made in the caller's network namespace (the
host's, or a test's that plays it)."""
import fcntl
import _socket as socket
import os

from fastbox import config
from fastbox.errors import StartError
from fastbox.network import nft


def bridge_index(net):
    """The bridge's ifindex, or 0 if it is not there."""
    try:
        return socket.if_nametoindex(net.bridge)
    except OSError:
        return 0


def ensure(net):
    """The bridge's ifindex; makes the bridge, the table and the rules if the bridge is
    missing (first use, or after a reboot)."""
    index = bridge_index(net)
    if index:
        return index
    lock_dir = os.path.join(config.run_dir(), "net")
    config.private_dir(lock_dir)
    fd = os.open(os.path.join(lock_dir, ".host.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        index = bridge_index(net)
        if index:
            return index
        _make_bridge(net)
        _sysctl("net/ipv4/ip_forward", "1")
        _sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
        if net.subnet6:
            _sysctl("net/ipv6/conf/all/forwarding", "1")
        nft.ensure_table()
        nft.ensure_network(net)
        return bridge_index(net)
    finally:
        os.close(fd)


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
        if net.subnet6:  # usable at once (nodad): the containers' addresses are unique by IPAM
            _sysctl(f"net/ipv6/conf/{net.bridge}/disable_ipv6", "0")
            _ip("-6", "addr", "add", f"{net.gateway6}/{net.prefix6}", "dev", net.bridge, "nodad")
        _ip("link", "set", net.bridge, "up")
    except StartError:
        remove(net)
        raise


def _sysctl(name, value):
    """Written through /proc/sys/net, which is the writer's network namespace's."""
    path = "/proc/sys/" + name
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)


def remove(net):
    """The bridge and the network's rules (network rm; the default bridge stays)."""
    import subprocess
    from fastbox.network import dns
    dns.stop(net.id[:12])
    subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
    if nft.table_exists():
        nft.remove_network(net)
