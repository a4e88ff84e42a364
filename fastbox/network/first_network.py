"""`fastbox network disconnect` from a container's first network (the one it was created
on), as Docker's: the network it was connected to next takes its place, or, with none
left, the container has only `lo` (--network none) from then on.

The container's record changes first: its spec names the network that takes over (with
the aliases it was connected with), which leaves the list of connected networks, so every
later start is made that way. A running container then loses the first network's
endpoint at once: its port mappings, its veth (eth0 goes with it), its address, its names
and its line in /etc/hosts; the default route goes to the gateway of the network that
took over, and /etc/resolv.conf to that network's name server if it has one. Its /etc
files stay: they are bind-mounted in it. Its monitor, which was told at the start to
release that endpoint at the exit, deletes its port mappings only if the endpoint's
record is still there (csrc/monitor/fb_monitor.c, --net-record): the ports may be
another container's by then.

Published ports go with a container that is left with no network (a `none` container
cannot publish). The addresses asked for with `connect --ip` and `--ip6` become the
container's `--ip` and `--ip6` on the network that takes over."""
import os
import subprocess

from fastbox.errors import ContainerStateError
from fastbox.network import connect, endpoints, files, store
from fastbox.state import status
from fastbox.state.store import StateStore


def disconnect(c, net, spec):
    """c: the container (fastbox.containers.Container), net: its first network."""
    items = connect.recorded(c.id)
    new = dict(spec)
    if items:
        nxt = items[0]
        user = nxt.name != store.DEFAULT_NAME  # aliases and --ip are for user networks only
        new.update(network=nxt.name, network_alias=list(nxt.aliases) if user else [],
                   ip=(nxt.ip or None) if user else None, ip6=(nxt.ip6 or None) if user else None)
    else:
        new.update(network="none", network_alias=[], ip=None, ip6=None, publish=[],
                   publish_all=False)
    StateStore().update(c.id, spec=new)
    connect.save_recorded(c.id, items[1:])
    if c.status == status.RUNNING:
        _detach_running(c, new)


def _detach_running(c, spec):
    ep = endpoints.load(c.id)
    if ep is None:  # its endpoint was released already (it is exiting)
        return
    endpoints.release(c.id, alone=True)
    files.forget_address(c.id, ep.ip, ep.ip6)
    extras = endpoints.extras(c.id)
    for other in extras:  # its hosts again, from what is left of its own part
        if other.names:
            try:
                files.refresh_hosts(store.get(other.network), changed=(c.id,))
            except Exception:  # noqa: BLE001 - that network was removed meanwhile
                pass
    if not any(other.names for other in extras):
        files.rewrite_own(c.id)
    taking_over = [e for e in extras if e.network == spec["network"]]
    if taking_over:
        _default_route(c, taking_over[0])
    connect.point_resolv(c.id, spec)


def _default_route(c, ep):
    """The default route through ep's gateway (and its IPv6 one), in the container's
    namespace (`ip`, run with the namespace's fd: a pid reused meanwhile is never
    entered)."""
    from fastbox.state import process
    pid, start = c.attrs.get("pid"), c.attrs.get("pid_start")
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # it exited meanwhile
    try:
        if not process.alive(pid, start):
            return
        routes = [["ip", "route", "replace", "default", "via", ep.gateway, "dev", ep.if_name]]
        if ep.ip6:  # an --ipv6 network's IPv6 default route too
            routes.append(["ip", "-6", "route", "replace", "default", "via", ep.gateway6,
                           "dev", ep.if_name])
        for route in routes:
            r = subprocess.run(["nsenter", f"--net=/proc/self/fd/{fd}", *route],
                               pass_fds=(fd,), capture_output=True, text=True)
            if r.returncode != 0:
                raise ContainerStateError(f"disconnected, but no default route through network "
                                          f"{ep.network}: {r.stderr.strip()}")
    finally:
        os.close(fd)
