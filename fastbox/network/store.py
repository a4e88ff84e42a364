"""Network definitions: the default bridge (from the config file) and user-defined
networks, one JSON file each in FASTBOX_ROOT/networks. A definition is what persists; its
bridge and nft entries are kernel state, made again on first use after a reboot."""
import os

from fastbox import config
from fastbox.errors import ContainerStateError, SpecError
from fastbox.network import options

DEFAULT_NAME = "bridge"
DEFAULT_BRIDGE = "fastbox0"
DEFAULT_BIP = "10.66.0.1/16"   # the gateway and prefix of fastbox0 ("bip", as in Docker)
USER_POOL = (10, 67)           # user networks get a free /24 of 10.67.0.0/16 by default
DEFAULT_MTU = 1500


class Network:
    """One network as the start path reads it."""

    __slots__ = ("name", "id", "bridge", "subnet", "prefix", "gateway", "internal", "mtu",
                 "dns", "created", "labels", "options", "subnet6", "prefix6", "gateway6")

    def __init__(self, d):
        self.name, self.id, self.bridge = d["Name"], d["Id"], d["Bridge"]
        net, _, prefix = d["Subnet"].partition("/")
        self.subnet, self.prefix, self.gateway = net, int(prefix), d["Gateway"]
        self.internal, self.mtu = bool(d.get("Internal")), int(d.get("MTU") or DEFAULT_MTU)
        self.dns, self.created = bool(d.get("DNS")), d.get("Created")
        self.labels, self.options = dict(d.get("Labels") or {}), dict(d.get("Options") or {})
        net6, _, prefix6 = (d.get("Subnet6") or "").partition("/")  # --ipv6's; else none
        self.subnet6, self.prefix6 = net6 or None, int(prefix6 or 0)
        self.gateway6 = d.get("Gateway6") or None

    def as_dict(self):
        d = {"Name": self.name, "Id": self.id, "Driver": "bridge", "Bridge": self.bridge,
             "Subnet": f"{self.subnet}/{self.prefix}", "Gateway": self.gateway,
             "Internal": self.internal, "MTU": self.mtu, "DNS": self.dns,
             "Created": self.created, "Labels": self.labels, "Options": self.options}
        if self.subnet6:
            d.update(Subnet6=f"{self.subnet6}/{self.prefix6}", Gateway6=self.gateway6)
        return d

    def ip6_of(self, ip):
        """A container's IPv6 address on an --ipv6 network: the network's IPv6 prefix and
        the container's IPv4 address as its last 32 bits (fd..::a43:2 for 10.67.0.2), as
        Docker once derived it from the MAC. Its IPv4 lease makes it unique, so it needs no
        lease of its own: nothing more to take or free, nothing more to leak. None off one."""
        if not self.subnet6:
            return None
        return int_to_ip6(ip6_to_int(self.subnet6) | ip_to_int(ip))

    def derived(self, ip6):
        """Whether ip6 is where ip6_of puts the address of a container with one of this
        network's IPv4 addresses, leased now or later: --ip6 may not take it."""
        n = ip6_to_int(ip6)
        return n & ~0xFFFFFFFF == ip6_to_int(self.subnet6) and network_of(
            self.ip4_of(ip6), self.prefix) == self.subnet

    @staticmethod
    def ip4_of(ip6):
        return int_to_ip(ip6_to_int(ip6) & 0xFFFFFFFF)


def networks_dir():
    return os.path.join(config.root(), "networks")


def ip_to_int(ip):
    a, b, c, d = (int(x) for x in ip.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def mac_of(ip):
    """Docker's MAC for an address: 02:42 and its four bytes (csrc/fb_net.c gives a
    container's eth0 the same)."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def int_to_ip(n):
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def ip6_to_int(ip):
    import _socket
    return int.from_bytes(_socket.inet_pton(_socket.AF_INET6, ip), "big")


def int_to_ip6(n):
    import _socket
    return _socket.inet_ntop(_socket.AF_INET6, n.to_bytes(16, "big"))


def network6_of(ip, prefix):
    mask = ((1 << 128) - 1) ^ ((1 << (128 - prefix)) - 1)
    return int_to_ip6(ip6_to_int(ip) & mask)


def parse_cidr6(value, what="--subnet"):
    """An --ipv6 network's subnet: /48 to /96, so that the last 32 bits hold a container's
    IPv4 address (Network.ip6_of); unicast, not link-local or loopback."""
    ip, slash, prefix = str(value).partition("/")
    if not slash or not prefix.isdigit() or not 48 <= int(prefix) <= 96:
        raise SpecError(f"invalid {what} {value!r}: expected an IPv6 CIDR such as fd00:1::/64 (/48 to /96)")
    net = network6_of(options.parse_ip6(ip, what), int(prefix))
    first = ip6_to_int(net) >> 112
    if first >> 8 == 0xff or first >> 6 == 0x3fa or first == 0:
        raise SpecError(f"invalid {what} {value!r}: multicast, link-local and reserved addresses "
                        f"cannot be a network's")
    return net, int(prefix)


def parse_cidr(value, what="--subnet"):
    ip, slash, prefix = str(value).partition("/")
    if not slash or not prefix.isdigit() or not 8 <= int(prefix) <= 30:
        raise SpecError(f"invalid {what} {value!r}: expected a CIDR such as 10.70.0.0/24 (/8 to /30)")
    ip, prefix = options.parse_ip(ip, what), int(prefix)
    first = ip_to_int(network_of(ip, prefix)) >> 24
    bits = min(prefix, 16)
    link_local = network_of(ip, bits) == network_of("169.254.0.0", bits)
    for lo, hi, kind in _NOT_UNICAST + ((first, first, "link-local"),) * link_local:
        if lo <= first <= hi:
            raise SpecError(f"invalid {what} {value!r}: {kind} addresses cannot be a network's")
    return ip, prefix


# ranges a bridge's subnet may not take: they are not for one link's hosts, and a
# gateway address in 127/8 on a bridge would shadow the host's loopback
_NOT_UNICAST = ((0, 0, "\"this network\" (0.0.0.0/8)"), (127, 127, "loopback"),
                (224, 239, "multicast"), (240, 255, "reserved"))


def network_of(ip, prefix):
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return int_to_ip(ip_to_int(ip) & mask)


_default = []  # [(bip, mtu), Network]: made again when the config file changes them


def default():
    """fastbox0, with "bip" (GATEWAY/PREFIX) and "mtu" from the config file, and IPv6 if
    it says "ipv6": true with "fixed-cidr-v6", as Docker's daemon.json."""
    s = config.settings()
    key = (s.get("bip"), s.get("mtu"), s.get("ipv6"), s.get("fixed-cidr-v6"))
    if _default and _default[0] == key:
        return _default[1]
    net = _make_default(s)
    _default[:] = [key, net]
    return net


def _make_default(s):
    gw, prefix = parse_cidr(s.get("bip", DEFAULT_BIP), "bip in the config file")
    mtu = s.get("mtu", DEFAULT_MTU)
    if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise SpecError(f"invalid mtu {mtu!r} in the config file: 68 to 65535")
    v6 = {}
    if s.get("ipv6") is True:
        if not s.get("fixed-cidr-v6"):
            raise SpecError('"ipv6": true in the config file needs "fixed-cidr-v6" (e.g. "fd00:66::/64")')
        net6, prefix6 = parse_cidr6(s["fixed-cidr-v6"], "fixed-cidr-v6 in the config file")
        v6 = {"Subnet6": f"{net6}/{prefix6}", "Gateway6": int_to_ip6(ip6_to_int(net6) + 1)}
    elif s.get("ipv6") not in (None, False):
        raise SpecError(f'invalid "ipv6" {s.get("ipv6")!r} in the config file: true or false')
    return Network({"Name": DEFAULT_NAME, "Id": "0" * 64, "Bridge": DEFAULT_BRIDGE,
                    "Subnet": f"{network_of(gw, prefix)}/{prefix}", "Gateway": gw,
                    "Internal": False, "MTU": mtu, "DNS": False, "Created": None, **v6})


def get(name):
    """The network named name (or by id prefix); a one-line error if there is none."""
    if name == DEFAULT_NAME:
        return default()
    options.check_name(name)
    import json
    try:
        with open(os.path.join(networks_dir(), name + ".json"), "rb") as f:
            return Network(json.load(f))
    except FileNotFoundError:
        pass
    for net in list_all():
        if len(name) >= 3 and net.id.startswith(name):
            return net
    raise SpecError(f"network {name} not found")


def list_all():
    import json
    out = [default()]
    try:
        names = sorted(os.listdir(networks_dir()))
    except FileNotFoundError:
        return out
    for n in names:
        if n.endswith(".json"):
            try:
                with open(os.path.join(networks_dir(), n), "rb") as f:
                    out.append(Network(json.load(f)))
            except (OSError, ValueError, KeyError):
                continue
    return out


MTU_OPTION = "com.docker.network.driver.mtu"


def _by_family(values, what):
    """--subnet or --gateway, given once per family (Docker's): (IPv4's, IPv6's)."""
    v4, v6 = [], []
    for v in ([values] if isinstance(values, str) else values or ()):
        (v6 if ":" in v else v4).append(v)
    if len(v4) > 1 or len(v6) > 1:
        raise SpecError(f"invalid {what}: give at most one IPv4 and one IPv6 {what}")
    return (v4 or [None])[0], (v6 or [None])[0]


def create(name, subnet=None, gateway=None, internal=False, labels=(), opts=(), ipv6=False):
    """A user-defined network's definition (its bridge is made on first use). labels:
    (key, value) pairs; opts: Docker's driver options, of which the bridge's MTU is
    known (-o com.docker.network.driver.mtu=1400). subnet and gateway: a value or a list
    (one per family); ipv6: an IPv6 subnet too, a random unique-local /64 unless given."""
    import datetime
    import json
    options.check_name(name)
    if name in (DEFAULT_NAME, "none", "host", "default") or name.startswith("container"):
        raise SpecError(f"network name {name!r} is reserved")
    (subnet, subnet6), (gateway, gateway6) = _by_family(subnet, "--subnet"), _by_family(gateway, "--gateway")
    if (subnet6 or gateway6) and not ipv6:
        raise SpecError("an IPv6 --subnet or --gateway needs --ipv6")
    taken = list_all()
    if any(n.name == name for n in taken):
        raise ContainerStateError(f"network with name {name} already exists")
    v6 = _subnet6(subnet6, gateway6, taken) if ipv6 else {}
    if subnet:
        net, prefix = parse_cidr(subnet)
        net = network_of(net, prefix)
    else:
        net, prefix = _free_subnet(taken), 24
    if any(_overlap(net, prefix, n.subnet, n.prefix) for n in taken):
        raise SpecError(f"invalid --subnet {subnet}: it overlaps another fastbox network")
    size = 1 << (32 - prefix)
    if gateway:
        gw = options.parse_ip(gateway, "--gateway")
        if network_of(gw, prefix) != net or ip_to_int(gw) in (ip_to_int(net), ip_to_int(net) + size - 1):
            raise SpecError(f"invalid --gateway {gateway}: not a host address of {net}/{prefix}")
    else:
        gw = int_to_ip(ip_to_int(net) + 1)
    opts = dict(opts)
    mtu = _mtu(opts.pop(MTU_OPTION, None))
    if opts:
        raise SpecError(f"invalid option {sorted(opts)[0]!r}: the bridge driver of fastbox knows "
                        f"only {MTU_OPTION}")
    nid = os.urandom(32).hex()
    d = {"Name": name, "Id": nid, "Bridge": "fb-" + nid[:12], "Subnet": f"{net}/{prefix}",
         "Gateway": gw, "Internal": bool(internal), "MTU": mtu or default().mtu, "DNS": True,
         "Created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
         "Labels": dict(labels), "Options": {MTU_OPTION: str(mtu)} if mtu else {}, **v6}
    config.private_dir(networks_dir())
    path = os.path.join(networks_dir(), name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(d, f)
    os.rename(tmp, path)
    return Network(d)


def _subnet6(subnet6, gateway6, taken):
    """{"Subnet6", "Gateway6"} of an --ipv6 network (a random unique-local /64 when no
    subnet is given, as RFC 4193 and Docker's default pool make one)."""
    if not os.path.exists("/proc/sys/net/ipv6"):
        raise SpecError("--ipv6: IPv6 is disabled in this kernel (or this network namespace)")
    if subnet6:
        net6, prefix6 = parse_cidr6(subnet6)
    else:
        net6, prefix6 = int_to_ip6((0xfd << 120) | (int.from_bytes(os.urandom(5), "big") << 80)), 64
    for n in taken:
        if n.subnet6 and network6_of(n.subnet6, min(prefix6, n.prefix6)) == network6_of(net6, min(prefix6, n.prefix6)):
            raise SpecError(f"invalid --subnet {net6}/{prefix6}: it overlaps another fastbox network")
    base = ip6_to_int(net6)
    if gateway6:
        gw = options.parse_ip6(gateway6, "--gateway")
        if network6_of(gw, prefix6) != net6 or ip6_to_int(gw) == base:
            raise SpecError(f"invalid --gateway {gateway6}: not a host address of {net6}/{prefix6}")
        if ip6_to_int(gw) - base < 1 << 32 and (ip6_to_int(gw) - base) >> 24 not in (0, 127):
            # the containers' addresses are the prefix and their IPv4 ones (ip6_of)
            raise SpecError(f"invalid --gateway {gateway6}: it may be a container's address "
                            f"(the last 32 bits of theirs are their IPv4 addresses)")
    else:
        gw = int_to_ip6(base + 1)
    return {"Subnet6": f"{net6}/{prefix6}", "Gateway6": gw}


def _mtu(value):
    if value is None:
        return None
    if not str(value).isdigit() or not 68 <= int(value) <= 65535:
        raise SpecError(f"invalid {MTU_OPTION}={value}: 68 to 65535")
    return int(value)


def delete(net):
    try:
        os.unlink(os.path.join(networks_dir(), net.name + ".json"))
    except FileNotFoundError:
        pass


def _overlap(a, ap, b, bp):
    p = min(ap, bp)
    return network_of(a, p) == network_of(b, p)


def _free_subnet(taken):
    for third in range(256):
        net = f"{USER_POOL[0]}.{USER_POOL[1]}.{third}.0"
        if not any(_overlap(net, 24, n.subnet, n.prefix) for n in taken):
            return net
    raise SpecError("no free subnet left in 10.67.0.0/16: give --subnet")
