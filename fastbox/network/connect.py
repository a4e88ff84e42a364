"""`fastbox network connect` and `disconnect`: a container on more networks than its
first, as Docker's. A running container gains an interface (eth1, eth2, ...) on the
network's bridge at once, a created or stopped one at its next start; either way the
connection is kept in the container's directory (`networks`, one line a network:
name, requested IPv4 address, aliases, requested IPv6 address), so it is made again at
every start, until `disconnect`.

An attached network is an endpoint of its own (fastbox.network.endpoints, record
<id>+<network>): recorded before anything is applied, owned by the connecting process
until the veth is made, then by the container's init, and released with the container's
own endpoint (stop, rm, a restart, the sweep of a dead owner). Its veth has no default
route: the first network keeps it, as in Docker."""
import os
from collections import namedtuple

from fastbox.errors import ContainerStateError, SpecError, StartError
from fastbox.network import endpoints, files, host, ipam, options, store

# one recorded connection: the network's name, the addresses asked for ("": none), aliases
Connection = namedtuple("Connection", "name ip aliases ip6")

SHARED = ("container sharing network namespace with another container or host cannot be "
          "connected to any other network")


def recorded(cid):
    """cid's Connections, in connection order."""
    try:
        with open(endpoints.connections_path(cid)) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        name, ip, aliases, ip6 = (line.split("\t") + ["", "", ""])[:4]
        out.append(Connection(name, ip, tuple(a for a in aliases.split(",") if a), ip6))
    return out


def save_recorded(cid, items):
    path = endpoints.connections_path(cid)
    if not items:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    with open(path + ".tmp", "w") as f:
        f.write("".join(f"{c.name}\t{c.ip}\t{','.join(c.aliases)}\t{c.ip6}\n" for c in items))
    os.rename(path + ".tmp", path)


def connect(net_ref, ref, aliases=(), ip=None, ip6=None):
    """Connect container ref to network net_ref (now if it runs, else at its start)."""
    from fastbox import containers
    c = containers.get(ref)
    if net_ref == "host":
        raise ContainerStateError("container cannot be disconnected from host network or "
                                  "connected to host network")
    if net_ref == "none":
        raise ContainerStateError("container cannot be connected to multiple networks with "
                                  "one of the networks in private (none) mode")
    net = store.get(net_ref)
    spec = c.attrs.get("spec") or {}
    first = _first_network(spec)
    if first is None:
        raise ContainerStateError(SHARED)
    if first == "none":
        raise ContainerStateError("container cannot be connected to multiple networks with "
                                  "one of the networks in private (none) mode")
    name = c.attrs.get("name") or c.id[:12]
    items = recorded(c.id)
    if first == net.id or any(i.name == net.name for i in items):
        raise ContainerStateError(f"endpoint with name {name} already exists in network {net.name}")
    aliases = tuple(options.parse_aliases(list(aliases or ())))
    if ip:
        ip = ipam.check_ip(net, ip)
    if ip6:
        ip6 = ipam.check_ip6(net, ip6)
    items.append(Connection(net.name, ip or "", aliases, ip6 or ""))
    save_recorded(c.id, items)
    if c.status != "running":
        return
    try:
        _attach_running(c, net, ip, aliases, spec, ip6)
    except BaseException:
        save_recorded(c.id, [i for i in recorded(c.id) if i[0] != net.name])
        raise


def disconnect(net_ref, ref, force=False):
    from fastbox import containers
    c = containers.get(ref)
    try:
        net = store.get(net_ref)
    except SpecError:  # removed while the container was stopped: forget it
        items = recorded(c.id)
        if not any(i.name == net_ref for i in items):
            raise
        save_recorded(c.id, [i for i in items if i[0] != net_ref])
        return
    spec = c.attrs.get("spec") or {}
    if _first_network(spec) == net.id:
        from fastbox.network import first_network
        first_network.disconnect(c, net, spec)
        return
    items = recorded(c.id)
    key = endpoints.extra_key(c.id, net)
    if not any(i.name == net.name for i in items) and endpoints.load(key) is None:
        if force:
            return
        raise ContainerStateError(f"container {c.id} is not connected to network {net.name}")
    save_recorded(c.id, [i for i in items if i[0] != net.name])
    endpoints.release(key)
    point_resolv(c.id)


def _first_network(spec):
    """The id of the container's first network; "none"; None when it shares another's
    namespace (host, container:NAME)."""
    mode = options.network_mode(spec.get("network"))
    if mode == "host" or mode.startswith("container:"):
        return None
    if mode == "none":
        return "none"
    try:
        return store.get(mode).id
    except SpecError:
        return mode


def _names(cid, name, aliases, hostname):
    names = [n for n in (name, *aliases, cid[:12]) if n]
    if hostname not in names:
        names.append(hostname)
    return names


def plan(cid, net, name, aliases, hostname, if_name, want_ip=None, want_ip6=None):
    """Record cid's endpoint on net (owned by us), then take its address and names."""
    key = endpoints.extra_key(cid, net)
    if endpoints.load(key) is not None:
        endpoints.release(key)
    index = host.ensure(net)
    ep = endpoints.Endpoint(id=key, owner=endpoints.my_owner(), network=net.name,
                            network_id=net.id, bridge=net.bridge, prefix=net.prefix,
                            gateway=net.gateway, mtu=net.mtu, host_if=f"fbv{cid[:7]}x{net.id[:4]}",
                            names=_names(cid, name, aliases, hostname), bridge_index=index,
                            if_name=if_name)

    def record(ip):
        endpoints.save_with_address(ep, net, ip, want_ip6)

    with ipam.Locked(net):
        if want_ip6:
            endpoints.take_ip6(net, key, want_ip6)
        if want_ip:
            ipam.take_locked(net, key, want_ip, endpoints.reclaim, record)
        else:
            ipam.allocate_locked(net, key, endpoints.reclaim, record)
        files.add_own(cid, ep.ip, hostname, ep.ip6)
        files.join_names(net, cid, ep.ip, ep.names, changed=(cid,), ip6=ep.ip6)
        from fastbox.network import dns
        dns.ensure(net)
    return ep


def _attach_running(c, net, ip, aliases, spec, ip6=None):
    from fastbox.runtime import extra_networks
    from fastbox.state import process
    pid, start = c.attrs.get("pid"), c.attrs.get("pid_start")
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        raise ContainerStateError(f"container {c.id[:12]} is not running") from None
    try:
        if not process.alive(pid, start):
            raise ContainerStateError(f"container {c.id[:12]} is not running")
        hostname = spec.get("hostname") or c.id[:12]
        ep = plan(c.id, net, c.attrs.get("name"), aliases, hostname, _free_if_name(pid), ip, ip6)
        try:
            extra_networks.attach(ep, fd)
        except BaseException:
            endpoints.release(ep.id)
            raise
        endpoints.hand_over(ep.id, f"{pid}-{start}")
        point_resolv(c.id)
    finally:
        os.close(fd)


def _free_if_name(pid):
    """The lowest ethN (N >= 1) not in the container's namespace."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            taken = {line.split(":")[0].strip() for line in f.read().splitlines()[2:]}
    except OSError:
        taken = set()
    n = 1
    while f"eth{n}" in taken:
        n += 1
    return f"eth{n}"


def attach_recorded(cid, spec, hostname, netns_fd, first):
    """At a start, after its first network: every network cid was connected to, as
    eth1, eth2, ... in connection order. first: the first network's endpoint, which
    hands these over to the container's init with its own."""
    from fastbox.runtime import extra_networks
    keys = []
    for n, c in enumerate(recorded(cid), 1):
        try:
            net = store.get(c.name)
        except SpecError:
            raise StartError(f"network {c.name} not found: the container was connected to it "
                             f"(fastbox network disconnect {c.name} {cid[:12]})", "network", 2) from None
        ep = plan(cid, net, spec.name, c.aliases, hostname, f"eth{n}", c.ip or None, c.ip6 or None)
        keys.append(ep.id)
        first.extra_keys = tuple(keys)
        extra_networks.attach(ep, netns_fd)
    point_resolv(cid)


def point_resolv(cid, spec=None):
    """A container whose first network has no names (the default bridge) asks the name
    server of the first network it is connected to, as Docker switches a container to
    its embedded DNS when it joins a user network; the host's resolvers again once it
    has none. Its --dns servers are what that name server forwards to. spec: the spec (a
    dict) of a container disconnected from its first network (no record of it left)."""
    from fastbox.network import dns
    first = endpoints.load(cid)
    if first is None and spec is not None:
        first = endpoints.Endpoint(id=cid, dns=list(spec.get("dns") or ()),
                                   dns_search=list(spec.get("dns_search") or ()),
                                   dns_option=list(spec.get("dns_option") or ()))
    if first is None or first.names:
        return
    attached = {ep.network: ep for ep in endpoints.extras(cid)}
    listed = [c.name for c in recorded(cid)]
    # first, one attached but no longer listed: the network that took over from the first
    for name in [n for n in attached if n not in listed] + listed:
        ep = attached.get(name)
        if ep is not None and ep.names:
            try:
                net = store.get(name)
            except SpecError:
                continue
            if dns.running(net):
                files.write_resolv(cid, first, ep.gateway)
                return
    files.write_resolv(cid, first)


def settings(cid):
    """inspect's NetworkSettings.Networks entries of the connected networks: with the
    address while attached, empty while the container does not run. One attached but no
    longer listed is the network that took over from a disconnected first one."""
    out = {}
    attached = {ep.network: ep for ep in endpoints.extras(cid)}
    listed = [(c.name, c.aliases) for c in recorded(cid)]
    listed += [(name, ()) for name in attached if name not in {n for n, _ in listed}]
    for name, aliases in listed:
        ep = attached.get(name)
        try:
            nid = store.get(name).id
        except SpecError:
            nid = ""
        out[name] = {"NetworkID": nid, "IPAddress": ep.ip if ep else "",
                     "Gateway": ep.gateway if ep else "", "IPPrefixLen": ep.prefix if ep else 0,
                     **(endpoints.ipv6_settings(ep) if ep else {}),
                     "MacAddress": ep.mac_address if ep else "",
                     "Aliases": list(aliases) if ep is None else ep.names}
    return out
