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
                 "dns", "created", "labels", "options")

    def __init__(self, d):
        self.name, self.id, self.bridge = d["Name"], d["Id"], d["Bridge"]
        net, _, prefix = d["Subnet"].partition("/")
        self.subnet, self.prefix, self.gateway = net, int(prefix), d["Gateway"]
        self.internal, self.mtu = bool(d.get("Internal")), int(d.get("MTU") or DEFAULT_MTU)
        self.dns, self.created = bool(d.get("DNS")), d.get("Created")
        self.labels, self.options = dict(d.get("Labels") or {}), dict(d.get("Options") or {})

    def as_dict(self):
        return {"Name": self.name, "Id": self.id, "Driver": "bridge", "Bridge": self.bridge,
                "Subnet": f"{self.subnet}/{self.prefix}", "Gateway": self.gateway,
                "Internal": self.internal, "MTU": self.mtu, "DNS": self.dns,
                "Created": self.created, "Labels": self.labels, "Options": self.options}


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
    """fastbox0, with "bip" (GATEWAY/PREFIX) and "mtu" from the config file."""
    s = config.settings()
    key = (s.get("bip"), s.get("mtu"))
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
    return Network({"Name": DEFAULT_NAME, "Id": "0" * 64, "Bridge": DEFAULT_BRIDGE,
                    "Subnet": f"{network_of(gw, prefix)}/{prefix}", "Gateway": gw,
                    "Internal": False, "MTU": mtu, "DNS": False, "Created": None})


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


def create(name, subnet=None, gateway=None, internal=False, labels=(), opts=()):
    """A user-defined network's definition (its bridge is made on first use). labels:
    (key, value) pairs; opts: Docker's driver options, of which the bridge's MTU is
    known (-o com.docker.network.driver.mtu=1400)."""
    import datetime
    import json
    options.check_name(name)
    if name in (DEFAULT_NAME, "none", "host", "default") or name.startswith("container"):
        raise SpecError(f"network name {name!r} is reserved")
    taken = list_all()
    if any(n.name == name for n in taken):
        raise ContainerStateError(f"network with name {name} already exists")
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
         "Labels": dict(labels), "Options": {MTU_OPTION: str(mtu)} if mtu else {}}
    config.private_dir(networks_dir())
    path = os.path.join(networks_dir(), name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(d, f)
    os.rename(tmp, path)
    return Network(d)


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
