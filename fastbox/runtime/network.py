"""Applying a container's network with the C core (fastbox/network decides and records):
the veth pair made into the container's namespace, its address and route, its port
mappings in one nf_tables transaction; and undoing them from the host side alone.

Nothing here imports pyroute2, socket or json: this is on the start path."""
import os

from fastbox import _core
from fastbox.errors import StartError

PEER_IF = "eth0"


def _ip4(ip):
    return bytes(int(x) for x in ip.split("."))


def link_args(ep, route=True):
    """net_attach's optional arguments for ep: its IPv6 ones (none off an --ipv6 network;
    route=False: no IPv6 default route, a connected network's, as its IPv4 one) and its
    --mac-address."""
    out = {"mac": bytes.fromhex(ep.mac.replace(":", ""))} if ep.mac else {}
    if ep.ip6:
        import _socket
        out.update(addr6=_socket.inet_pton(_socket.AF_INET6, ep.ip6), prefix6=ep.prefix6,
                   gateway6=_socket.inet_pton(_socket.AF_INET6, ep.gateway6) if route else b"")
    return out


def bridge_of(spec):
    """spec's network and its bridge's ifindex, or (None, 0) if either is missing (the
    start then reports it)."""
    from fastbox.network import store
    try:
        net = store.get(spec.network)
    except Exception:  # noqa: BLE001 - the start reports it
        return None, 0
    import _socket
    try:
        return net, _socket.if_nametoindex(net.bridge)
    except OSError:
        return net, 0


def fits(spare, found):
    """Whether a spare's veth is on the bridge (and has the MTU) of found, bridge_of's."""
    net, index = found
    return index != 0 and spare.bridge_index == index and spare.mtu == net.mtu


def setup(cid, spec, hostname, netns_fd, spare=None, exposed=(), found=None, unnamed=False,
          in_layer=False):
    """The network of a container that has an address of its own: returns its endpoint
    (ep.binds: the files to bind over /etc/hosts, resolv.conf, hostname). spare: the
    namespace's Spare (fastbox.runtime.spare), whose veth and inside socket are used.
    exposed: the image's EXPOSE ports, which -P publishes with --expose's, as Docker.
    found: bridge_of(spec), if the caller looked it up already. unnamed: cid is new and
    no record holds it (container.prepare's): no earlier endpoint of it is looked for.
    in_layer: its /etc files may go into its upper layer (endpoints.plan's)."""
    from fastbox.network import endpoints, ports
    from fastbox.runtime import spare as spares
    items = ports.wanted(spec.publish, spec.publish_all, tuple(exposed) + spec.expose) if (
        spec.publish or spec.publish_all) else []
    # the others' mappings, read once: what a chosen port avoids, and what one overlaps
    held = endpoints.held_mappings(cid) if any(map(ports.chosen, items)) else None
    mapped = ports.resolve(items, held or (), items and _has_ipv6(spec, found))
    if mapped:
        _refuse_overlaps(cid, mapped, held)
    made = spare is not None and spare.host_if is not None
    ep = endpoints.plan(cid, spec, hostname, mapped, host_if=spare.host_if if made else None,
                        found=found, restart=not unnamed, in_layer=in_layer)
    spares.remember_bridge(ep.bridge_index, ep.mtu)
    try:
        try:
            _core.net_attach(netns_fd, ep.host_if, PEER_IF, ep.bridge_index, ep.mtu, _ip4(ep.ip),
                             ep.prefix, _ip4(ep.gateway), spare.sock if spare is not None else -1,
                             made, **link_args(ep))
        except _core.CoreError as e:
            if made and e.errno == 19:  # ENODEV: the spare's veth was deleted meanwhile
                ep.host_if = "fbv" + cid[:12]
                endpoints.save(ep)
            elif made or e.errno != 17:
                raise
            else:
                # EEXIST: this container's own veth from its last run (a restart): the
                # kernel removes it with that run's netns, asynchronously. The name is this
                # container's, so the link is ours to delete.
                _core.net_link_del(ep.host_if)
            _core.net_attach(netns_fd, ep.host_if, PEER_IF, ep.bridge_index, ep.mtu, _ip4(ep.ip),
                             ep.prefix, _ip4(ep.gateway), spare.sock if spare is not None else -1,
                             False, **link_args(ep))
        if ep.ports:
            _publish(ep, items)
            udp = [hp for proto, _, hp, _ in ep.ports if proto == "udp"]
            if udp:
                from fastbox.network import conntrack
                conntrack.flush_udp(udp, v6=bool(ep.ip6))
    except _core.CoreError as e:
        endpoints.release(cid)
        raise StartError(f"failed to set up the container's network: {e.what}: "
                         f"{os.strerror(e.errno)}", "network", e.errno) from None
    except BaseException:
        endpoints.release(cid)
        raise
    return ep


def _has_ipv6(spec, found):
    """Whether spec's network is an --ipv6 one (its containers' ports are IPv6's too)."""
    net = found[0] if found and found[0] is not None else None
    if net is None:
        from fastbox.network import store
        try:
            net = store.get(spec.network)
        except Exception:  # noqa: BLE001 - endpoints.plan reports it
            return False
    return bool(net.subnet6)


def _refuse_overlaps(cid, mapped, held=None):
    """Docker's rule that the maps alone do not keep (a port on every address and on one
    address are keys of two maps): a port published on 0.0.0.0 and the same port on one
    address are one port, and the second start is refused. Looked for only once some
    start has published on one address (one stat until then)."""
    from fastbox.network import endpoints
    from fastbox.network.ports import PortInUse
    marker = endpoints.one_address_marker()
    if any(ip != "0.0.0.0" for _, ip, _, _ in mapped):
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except FileNotFoundError:  # the first start on this FASTBOX_RUN
            from fastbox import config
            config.private_dir(os.path.dirname(marker))
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    elif not os.path.exists(marker):
        return
    if held is None:
        held = endpoints.held_mappings(cid)
    for proto, ip, hp, _ in mapped:
        others = held.get((proto, hp), ())
        if others and (ip == "0.0.0.0" or "0.0.0.0" in others):
            raise PortInUse(f"Bind for {ip}:{hp} failed: port is already allocated")


def _publish(ep, items):
    """The mappings in one transaction. A key someone holds (EEXIST): sweep the
    endpoints of dead owners and try again; then choose again the host ports that were
    ours to choose (a random one, one of a range), which another start may have taken
    meanwhile. A missing table (someone flushed it): make it again."""
    from fastbox.network import endpoints, nft
    swept = False
    for attempt in range(5):
        try:
            _core.nft_elems(True, nft.TABLE, nft.port_elements(ep.ports, ep.ip, ep.ip6))
            return
        except _core.CoreError as e:
            if e.errno == 2 and attempt == 0:  # ENOENT: no table or map
                nft.ensure_table()
                continue
            if e.errno != 17:  # EEXIST
                raise
            if attempt == 4 or (swept and not _choose_again(ep, items)):
                from fastbox.network.ports import PortInUse
                where = ", ".join(f"{ip}:{hp}" for _, ip, hp, _ in ep.ports)
                raise PortInUse(f"Bind for {where} failed: port is already allocated") from None
            if not swept:
                endpoints.sweep()
                swept = True


def _choose_again(ep, items):
    """Other host ports for ep's chosen ones, none that a container maps or that ep just
    tried; recorded before they are applied. False: none of ep's ports was ours to choose."""
    from fastbox.network import endpoints, ports
    again = [i for i, item in enumerate(items) if ports.chosen(item)]
    if not again:
        return False
    avoid = set(endpoints.held_mappings(ep.id)) | {(proto, hp) for proto, _, hp, _ in ep.ports}
    for i in again:
        ep.ports[i] = ports.resolve_item(items[i], avoid, bool(ep.ip6))
    endpoints.save(ep)
    return True


def unpublish(ep):
    """Delete ep's mappings; if the batch fails (one is gone already), one by one."""
    from fastbox.network import nft
    elems = nft.port_elements(ep.ports, ep.ip, ep.ip6)
    try:
        _core.nft_elems(False, nft.TABLE, elems)
    except _core.CoreError:
        for el in elems:
            try:
                _core.nft_elems(False, nft.TABLE, [el])
            except _core.CoreError:
                pass


def unplug(host_if):
    """Delete the host end of a veth (its peer goes with it), by name, in our namespace."""
    try:
        _core.net_link_del(host_if)
    except _core.CoreError:
        pass


def release(cid, unplug=True, ep=None, prepared=None, connected=True):
    """Undo cid's endpoint (fastbox.network.endpoints.release). ep: as its starter planned
    it (a foreground run's teardown). prepared: prepared_release(ep), made while the
    container ran: one on a network without names, whose veth goes with its namespace,
    holds only ports, a lease and files, and the core releases it, as its monitor
    releases a detached one; unless another network was connected to it meanwhile.
    connected=False: no command could connect cid (no record names it): not looked for."""
    from fastbox.network import endpoints
    if prepared is None or unplug or (connected and endpoints.has_connections(cid)):
        endpoints.release(cid, unplug=unplug, ep=ep)
        return
    prepared()


def prepared_release(ep):
    """The core's release of ep (release's case without names or other networks), its
    arguments made now: a foreground run makes it while its container runs, off the
    exit's path (~0.07 ms). None for another endpoint."""
    if ep.names or ep.extra_keys:
        return None
    from fastbox.network import nft
    record, lease, files, d = _release_paths(ep)
    return _core.NetRelease(ep.id, record, nft.port_elements(ep.ports, ep.ip, ep.ip6) if ep.ports else (),
                            lease, files, d)


def _release_paths(ep):
    """What releasing ep from the host's side touches: its record, its lease, the files
    unlinked (its /etc files, its names on a network with names, its record last) and
    their directory."""
    from fastbox.network import endpoints, files, ipam
    record = f"{endpoints.endpoints_dir()}/{ep.id}"
    if ep.etc_texts is not None:  # its /etc files were in its upper layer
        return record, ipam.lease_path(ep.network_id, ep.ip), [record], None
    d = files.files_dir(ep.id)
    unlinked = [f"{d}/{n}" for n in ("hosts", "hosts.base", "resolv.conf", "hostname")]
    if ep.names:
        unlinked.append(f"{files.names_dir_of(ep.network_id)}/{ep.id}")
    return record, ipam.lease_path(ep.network_id, ep.ip), unlinked + [record], d


def owned_by(ep, pid):
    from fastbox.network import endpoints
    endpoints.set_owner(ep, pid)


def new_netns():
    return _core.new_netns()


def container_netns(ref):
    """--network container:NAME: an fd of that running container's network namespace,
    and its /etc/hosts, resolv.conf and hostname to bind (shared, as Docker does)."""
    from fastbox import containers
    from fastbox.errors import ContainerStateError
    c = containers.get(ref)
    if c.status != "running" or not c.pid:
        raise ContainerStateError(f"cannot join the network of container {ref}: it is not running")
    try:
        fd = os.open(f"/proc/{c.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ContainerStateError(f"cannot join the network of container {ref}: {e.strerror}") from None
    from fastbox.network import files
    return fd, files.shared(c.id)


# ---------------------------------------------------------------- pools

_pooled = {}  # a pool's namespace fd -> the endpoint made in it once


def pools_endpoints(spec):
    """Whether a pool of spec's containers gets a veth and an address per namespace."""
    from fastbox.network import options
    if not options.own_endpoint(spec.network):
        return False
    if spec.publish or spec.publish_all:
        from fastbox.errors import SpecError
        raise SpecError("a pool's containers cannot publish ports: each host port maps to one container")
    if spec.ip or spec.ip6 or spec.mac_address:
        from fastbox.errors import SpecError
        flag = "--ip" if spec.ip else "--ip6" if spec.ip6 else "--mac-address"
        raise SpecError(f"a pool's containers cannot share one {flag}: each namespace has its own address")
    return True


def pool_endpoint(slot_id, spec, netns_fd):
    """A pooled namespace's veth, address, route and /etc files, made once: every
    container run in the namespace then finds its network ready (no per-start work)."""
    ep = setup(slot_id, spec, slot_id[:12], netns_fd)
    _pooled[netns_fd] = ep
    return ep


def pooled(netns_fd):
    return _pooled.get(netns_fd)


def pool_endpoint_close(ep):
    """The pool is closing: its namespaces (and their veths) go when their fds close."""
    for fd, e in list(_pooled.items()):
        if e is ep:
            del _pooled[fd]
    release(ep.id, unplug=False)


NFT_DEL_CHUNK = 4096  # keys per --nft-del: "tcp_ip=" and 16 hex digits each, < 128 KiB


def monitor_release_args(ep):
    """fastbox-monitor's options that release ep at the container's exit, from the host's
    side (csrc/monitor/fb_monitor.c, with the core's csrc/fb_net_release.c): its port
    mappings and lease, only while its record is there (a disconnect may have released
    them, and they may be another's now), its files and record."""
    from fastbox.network import nft
    record, lease, files, d = _release_paths(ep)
    args = ["--id", ep.id, "--net-record", record, "--lease", lease]
    keys = [f"{name}={key.hex()}" for name, key, _ in nft.port_elements(ep.ports, ep.ip, ep.ip6)]
    for i in range(0, len(keys), NFT_DEL_CHUNK):  # one argument may not pass 128 KiB
        args += ["--nft-del", ",".join(keys[i:i + NFT_DEL_CHUNK])]
    for f in files:
        args += ["--net-file", f]
    return args + ["--net-dir", d]
