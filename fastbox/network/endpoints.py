"""A container's endpoint: what its network holds (lease, host veth, port mappings, name
files), recorded in FASTBOX_RUN/net/endpoints/<id> BEFORE anything is applied, with its
owner (the starting process, then the container's init once it runs). Teardown reads only
this record and the host's namespace: it never needs the container's network namespace,
which may be gone (netavark#1451). A record whose owner is dead is swept by the next
command that touches the network (a start on a full network, `fastbox network`, `rm`,
the janitor of a dead `run`).

A container on more than one network (`fastbox network connect`) has one more record per
network, named <id>+<network id's first 12>: its lease holds that name, its veth is named
after both ids, and it goes with the container's own (release, owner, sweep).

The record is plain "key value" lines: no json import on the start path."""
import os

from fastbox import config
from fastbox.errors import ContainerStateError
from fastbox.network import files, ipam, store
from fastbox.state import process


OWNER_WIDTH = 32  # the owner's field is rewritten in place, at a fixed width


def endpoints_dir():
    return f"{config.run_dir()}/net/endpoints"


_me = []  # [pid, owner key] of this process (a fork has its own)


def my_owner():
    pid = os.getpid()
    if not _me or _me[0] != pid:
        _me[:] = [pid, f"{pid}-{process.start_time(pid)}"]
    return _me[1]


class Endpoint:
    __slots__ = ("id", "owner", "network", "network_id", "bridge", "ip", "prefix", "gateway",
                 "mtu", "host_if", "ports", "names", "bridge_index", "binds", "if_name",
                 "extra_keys", "dns", "dns_search", "dns_option", "etc_texts", "ip6", "prefix6",
                 "gateway6", "mac")

    def __init__(self, **fields):
        self.ports, self.names, self.binds, self.bridge_index, self.if_name = [], [], [], 0, "eth0"
        self.ip6, self.prefix6, self.gateway6 = None, 0, None  # on an --ipv6 network
        self.mac = None  # --mac-address; else Docker's, from the IPv4 address (mac_address)
        # [(name, text)]: /etc files the core writes into the container's upper layer
        # instead of binding files (plan's in_layer); not recorded: set by its starter only
        self.etc_texts = None
        self.extra_keys = ()  # the records of the other networks attached at this start
        self.dns = []  # --dns: the servers its network's name server forwards to
        self.dns_search, self.dns_option = [], []  # --dns-search, --dns-option
        for k, v in fields.items():
            setattr(self, k, v)

    def text(self):
        lines = [f"owner {self.owner:<{OWNER_WIDTH}}", f"network {self.network}", f"network_id {self.network_id}",
                 f"bridge {self.bridge}", f"ip {self.ip}", f"prefix {self.prefix}",
                 f"gateway {self.gateway}", f"mtu {self.mtu}", f"host_if {self.host_if}"]
        if self.ip6:
            lines += [f"ip6 {self.ip6}", f"prefix6 {self.prefix6}", f"gateway6 {self.gateway6}"]
        lines += [f"port {p} {ip} {hp} {cp}" for p, ip, hp, cp in self.ports]
        lines += [f"name {n}" for n in self.names]
        lines += [f"dns {d}" for d in self.dns]
        lines += [f"dns_search {d}" for d in self.dns_search]
        lines += [f"dns_option {d}" for d in self.dns_option]
        if self.if_name != "eth0":
            lines.append(f"if_name {self.if_name}")
        if self.mac:
            lines.append(f"mac {self.mac}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, cid, text):
        ep = cls(id=cid)
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "port":
                p, ip, hp, cp = value.split()
                ep.ports.append((p, ip, int(hp), int(cp)))
            elif key == "name":
                ep.names.append(value)
            elif key in ("dns", "dns_search", "dns_option"):
                getattr(ep, key).append(value)
            elif key in ("prefix", "mtu", "prefix6"):
                setattr(ep, key, int(value))
            elif key in cls.__slots__:
                setattr(ep, key, value.strip())
        return ep

    @property
    def mac_address(self):
        return self.mac or store.mac_of(self.ip)

    @property
    def container(self):
        """The container's id (an extra network's record is named <id>+<network>)."""
        return self.id.partition("+")[0]


def connections_path(cid):
    """The networks `fastbox network connect` added to cid (fastbox/network/connect.py)."""
    return f"{config.containers_dir()}/{cid}/networks"


def has_connections(cid):
    """One stat when there are none."""
    return os.path.exists(connections_path(cid))


def extra_key(cid, net):
    return f"{cid}+{net.id[:12]}"


def extras(cid):
    """The records of the networks cid was connected to besides its first."""
    return [ep for ep in (load(k) for k in all_ids() if k.startswith(cid + "+")) if ep is not None]


def _path(cid):
    return f"{endpoints_dir()}/{cid}"


def _tmp_path(key):
    """Where key's record is written before its rename into place: named after its
    writer, so a sweep knows whether the writer lives without reading a file that may be
    empty for an instant (deleting one being written made the writer's rename fail)."""
    return f"{_path(key)}.{my_owner()}.tmp"


def save(ep):
    path = _path(ep.id)
    tmp = _tmp_path(ep.id)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        config.private_dir(endpoints_dir())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, ep.text().encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def load(cid):
    try:
        with open(_path(cid)) as f:
            return Endpoint.parse(cid, f.read())
    except FileNotFoundError:
        return None


def all_ids():
    try:
        return [n for n in os.listdir(endpoints_dir()) if not n.endswith(".tmp")]
    except FileNotFoundError:
        return []


def owner_alive(owner):
    pid, _, started = (owner or "").partition("-")
    return pid.isdigit() and started.isdigit() and process.alive(int(pid), int(started))


def plan(cid, spec, hostname, ports, host_if=None, found=None, restart=True, in_layer=False):
    """Choose the network and an address for cid and record its endpoint (owned by us)
    before anything is made. ports: the resolved host port mappings; host_if: the host
    end of a veth made ahead of time in the container's namespace (a spare's); found:
    (network, its bridge's ifindex or 0), if the caller looked them up already.
    restart=False: cid is new, it has no record of an earlier run to look for.
    in_layer: its /etc files may go into its own upper layer (ep.etc_texts): an ephemeral
    container that no command can reach (no record names it, so no `network connect`
    rewrites them); nothing to bind, nothing on the host to remove. Not on a network with
    names whose name server is not running: members' hosts files then list each other,
    rewritten as members come and go (files.refresh_hosts)."""
    if restart and os.path.exists(_path(cid)):  # a restart: what its last run held goes first
        release(cid)
    net, index = found if found and found[0] is not None else (store.get(spec.network), 0)
    from fastbox.network import host
    if not index or not host.ready(net):  # no bridge, or one an earlier fastbox made
        index = host.ensure(net)
    names = []
    if net.dns:
        names = [n for n in (spec.name, *spec.network_alias, cid[:12]) if n]
        if hostname not in names:
            names.append(hostname)
    ep = Endpoint(id=cid, owner=my_owner(), network=net.name, network_id=net.id,
                  bridge=net.bridge, prefix=net.prefix, gateway=net.gateway, mtu=net.mtu,
                  host_if=host_if or "fbv" + cid[:12], ports=list(ports), names=names, bridge_index=index,
                  dns=list(spec.dns), dns_search=list(spec.dns_search),
                  dns_option=list(spec.dns_option), mac=spec.mac_address)

    want = ipam.check_ip(net, spec.ip) if spec.ip else None
    want6 = ipam.check_ip6(net, spec.ip6) if spec.ip6 else None

    def record(ip):
        save_with_address(ep, net, ip, want6)

    with ipam.Locked(net):
        if want6:
            take_ip6(net, cid, want6)
        if want:  # run --ip: that one or none
            ip = ipam.take_locked(net, cid, want, reclaim, record)
        else:
            ip = ipam.allocate_locked(net, cid, reclaim, record)
        if names:
            from fastbox.network import dns
            # a name server running now stays while we hold the lock (it decides to
            # exit under it), and then sees our names: our files never change
            in_layer = in_layer and dns.running(net)
        if in_layer:
            ep.etc_texts = files.texts(ip, hostname, spec, dns_at=net.gateway if names else None,
                                       gateway=net.gateway, ip6=ep.ip6)
        else:
            ep.binds = files.write(cid, ip, hostname, spec, names=bool(names),
                                   dns_at=net.gateway if names else None, gateway=net.gateway,
                                   ip6=ep.ip6)
        if names:
            files.join_names(net, cid, ip, names, ip6=ep.ip6)
            if not in_layer and not dns.ensure(net):  # no name server: the host's resolvers
                files.write_resolv(cid, spec)
    return ep


def set_owner(ep, pid):
    """The container runs: it owns its endpoint from now on (its init's pid and start).
    One write in place: "owner " and a fixed-width field open the record."""
    ep.owner = f"{pid}-{process.start_time(pid)}"
    for key in (ep.id, *ep.extra_keys):
        _write_owner(key, ep.owner)


def hand_over(key, owner):
    """A connected network's record, owned from now on by owner (the container's init)."""
    _write_owner(key, owner)


def release_dead_extras(cid):
    """The connected networks of a container that has stopped, if its monitor did not
    release them (it died too, or it started before they were recorded)."""
    for ep in extras(cid):
        if not owner_alive(ep.owner):
            release(ep.id)


def _write_owner(key, owner):
    try:
        fd = os.open(_path(key), os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # it exited already, and its monitor released it
        return
    try:
        os.pwrite(fd, f"owner {owner:<{OWNER_WIDTH}}".encode(), 0)
    finally:
        os.close(fd)


def save_with_address(ep, net, ip, ip6=None):
    """ep's record, with ip on net and its IPv6 address: ip6 (--ip6), or the one that
    follows from ip on an --ipv6 network (ipam's record(ip), before the lease exists)."""
    ep.ip, ep.ip6 = ip, ip6 or net.ip6_of(ip)
    if ep.ip6:
        ep.prefix6, ep.gateway6 = net.prefix6, net.gateway6
    save(ep)


def take_ip6(net, key, ip6):
    """Under net's lock: --ip6's address for key, unless a live container holds it on
    net; a dead one's endpoint is released. An --ip6 address has no lease of its own:
    the records name it, and they are read only when one is asked for (the addresses
    that follow from IPv4 ones are never asked for: ipam.check_ip6)."""
    for other in all_ids():
        ep = load(other) if other != key else None
        if ep is None or ep.network_id != net.id or ep.ip6 != ip6:
            continue
        if owner_alive(ep.owner):
            raise ContainerStateError(f"Address already in use: {ip6} in network {net.name}")
        release(other, locked=True)


def reclaim(net, leases):
    """Under net's lock: free the leases whose owners are dead."""
    for ip in leases:
        cid = ipam.holder(net, ip)
        ep = load(cid) if cid else None
        if ep is None:
            ipam.free(net, ip, cid)
        elif not owner_alive(ep.owner):
            release(cid, locked=True)


def release(cid, locked=False, unplug=True, ep=None, alone=False):
    """Undo cid's endpoint from its record alone: port mappings, host veth, lease, names,
    files, then the record. Each step tolerates what is already gone. unplug=False: the
    container's namespace is gone or going with its last process, and the kernel removes
    the veth with it, batched, off our path (deleting it ourselves waits ~25 ms for an
    RCU grace period under the rtnl lock). ep: the endpoint as its starter planned it (a
    foreground run's teardown): the same as its record, which then need not be read back,
    only be there (gone: someone released it, and its ports may be another's now).
    alone: this record only, of a container that keeps running on its other networks
    (`network disconnect` from its first): they and its /etc files stay."""
    extra = "+" in cid
    if not extra and not alone and has_connections(cid):
        for other in extras(cid):  # `network connect` recorded there (one stat if not)
            release(other.id, locked=False, unplug=unplug)
    if ep is None or not os.path.exists(_path(cid)):
        ep = load(cid)
    if ep is None:
        if not extra:
            files.remove(cid)
        return False
    from fastbox.runtime import network as applied
    if ep.ports and getattr(ep, "ip", None):
        applied.unpublish(ep)
    if unplug:
        applied.unplug(ep.host_if)
    try:
        net = store.get(ep.network)
    except Exception:  # noqa: BLE001 - the network was removed: nothing more to free in it
        net = None
    if net is not None and net.id == ep.network_id and getattr(ep, "ip", None):
        if locked:
            _free(net, ep, alone)
        else:
            with ipam.Locked(net):
                _free(net, ep, alone)
    if not extra and not alone:
        files.remove(cid)
    try:
        os.unlink(_path(cid))
    except FileNotFoundError:
        pass
    return True


def _free(net, ep, alone=False):
    ipam.free(net, ep.ip, ep.id)
    if ep.names:
        if "+" in ep.id or alone:  # it stays on its other networks
            files.drop_own(ep.container, ep.ip, ep.ip6)
            files.leave_names(net, ep.container, also=(ep.container,))
        else:
            files.leave_names(net, ep.container)


def sweep():
    """Release every endpoint whose owner is dead; returns how many. A record its writer
    died writing (its .tmp, named after the writer) names nothing applied yet: it goes."""
    n = 0
    try:
        for name in os.listdir(endpoints_dir()):
            writer = _tmp_writer(name)
            if writer is not None and not owner_alive(writer):
                try:
                    os.unlink(os.path.join(endpoints_dir(), name))
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        return 0
    for cid in all_ids():
        ep = load(cid)
        if ep is not None and not owner_alive(ep.owner) and not _adopted_by_container(ep):
            n += release(cid)
    n += _sweep_unrecorded_leases() + _sweep_unrecorded_names()
    from fastbox.network import dns
    dns.sweep()
    return n


def _tmp_writer(name):
    """The writer of a record being written (KEY.WRITER.tmp), "" for one in the old
    KEY.tmp form (no writer named: gone with it), None for a record."""
    if not name.endswith(".tmp"):
        return None
    return name[:-len(".tmp")].partition(".")[2]


def _being_written():
    """The keys whose records are being written (or were, by a writer that died)."""
    try:
        return {n.partition(".")[0] for n in os.listdir(endpoints_dir()) if n.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _sweep_unrecorded_leases():
    """Leases no record names. A record is saved before its lease is written and removed
    after its lease is freed, each under the network's lock: under that lock, a lease
    without a record (or a record being written, .tmp) was left by a process that died.
    Seen once in CI after an engine was SIGKILLed among five `run -d` starts."""
    n = 0
    for net in store.list_all():
        if not ipam.held(net):
            continue
        with ipam.Locked(net):
            writing = _being_written()
            for ip in ipam.held(net):
                cid = ipam.holder(net, ip)
                if cid == "" or (cid and load(cid) is None and cid not in writing):
                    ipam.free(net, ip, cid)  # "": its writer died before naming it
                    n += 1
    return n


def _sweep_unrecorded_names():
    """Names (what a network's name server answers) that no record holds: as with
    leases, a record precedes its names and outlives them, under the network's lock."""
    n = 0
    for net in store.list_all():
        try:
            members = os.listdir(files.names_dir(net))
        except FileNotFoundError:
            continue
        with ipam.Locked(net):
            writing = _being_written()
            for cid in members:
                if not _holds_names(cid, net, writing):
                    files.leave_names(net, cid)
                    n += 1
    return n


def _holds_names(cid, net, writing):
    ep = load(cid)
    if ep is not None and ep.network_id == net.id:
        return True
    key = extra_key(cid, net)
    return load(key) is not None or key in writing or cid in writing


def _adopted_by_container(ep):
    """A detached start whose starter died between the start and handing the endpoint to
    the container: if the container runs (its monitor wrote started.json), it is the
    owner now, and its endpoint stays."""
    import json
    try:
        with open(os.path.join(config.containers_dir(), ep.container, "started.json")) as f:
            started = json.load(f)
        pid, start = int(started["pid"]), int(started["pid_start"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not process.alive(pid, start):
        return False
    ep.owner = f"{pid}-{start}"
    _write_owner(ep.id, ep.owner)
    return True


def on_network(net):
    out = []
    for cid in all_ids():
        ep = load(cid)
        if ep is not None and ep.network_id == net.id:
            out.append(ep)
    return out


def rename(cid, old, new):
    """A running container renamed: on each network with names it is on, its record and
    its names file (what the network's name server answers, and every member's hosts
    lists) name it new instead of old, under that network's lock."""
    for ep in (load(cid), *extras(cid)):
        if ep is None or old not in ep.names:
            continue
        try:
            net = store.get(ep.network)
        except Exception:  # noqa: BLE001 - the network is gone: nothing answers its names
            continue
        with ipam.Locked(net):
            ep = load(ep.id)
            if ep is None or old not in ep.names:
                continue
            ep.names = list(dict.fromkeys(new if n == old else n for n in ep.names))
            save(ep)
            files.join_names(net, ep.container, ep.ip, ep.names, ip6=ep.ip6)


def held_mappings(but=None):
    """{(proto, host port): {host addresses}} of every recorded mapping but `but`'s."""
    out = {}
    for key in all_ids():
        ep = load(key) if key != but else None
        for proto, ip, hp, _ in ep.ports if ep is not None else ():
            out.setdefault((proto, hp), set()).add(ip)
    return out


def one_address_marker():
    """There while some container may publish a port on one host address (made by its
    start; FASTBOX_RUN is a tmpfs): until then, a start has no overlap to look for."""
    return f"{config.run_dir()}/net/one-address-ports"


def ports_text(cid):
    """Docker's PORTS column for cid: 127.0.0.1:8080->80/tcp, ..."""
    ep = load(cid)
    if ep is None or not ep.ports:
        return ""
    from fastbox.network.ports import describe
    return describe(shown_ports(ep))


def shown_ports(ep):
    """ep's mappings as Docker shows them: one on every address, by a container with an
    IPv6 address, twice (0.0.0.0 and ::)."""
    if not ep.ip6:
        return ep.ports
    return ep.ports + [(p, "::", hp, cp) for p, ip, hp, cp in ep.ports if ip == "0.0.0.0"]


def ipv6_settings(ep):
    """inspect's IPv6 fields of an endpoint (empty off an --ipv6 network, as Docker's)."""
    return {"GlobalIPv6Address": ep.ip6 or "", "GlobalIPv6PrefixLen": ep.prefix6,
            "IPv6Gateway": ep.gateway6 or ""}
