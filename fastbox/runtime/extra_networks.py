"""Applying a connected network's endpoint (fastbox.network.connect decides and records)
with the C core: a veth whose container end (eth1, eth2, ...) is made directly inside the
container's namespace, up, with its address and no default route (the first network
keeps it, as in Docker). Undone from the host side alone by endpoints.release."""
from fastbox import _core
from fastbox.errors import StartError

NO_ROUTE = b"\0\0\0\0"


def _ip4(ip):
    return bytes(int(x) for x in ip.split("."))


def attach(ep, netns_fd):
    try:
        try:
            _attach(ep, netns_fd)
        except _core.CoreError as e:
            if e.errno != 17:  # EEXIST: this name's veth of a last run, going with its netns
                raise
            _core.net_link_del(ep.host_if)
            _attach(ep, netns_fd)
    except _core.CoreError as e:
        import os
        raise StartError(f"failed to connect to network {ep.network}: {e.what}: "
                         f"{os.strerror(e.errno)}", "network", e.errno) from None


def _attach(ep, netns_fd):
    from fastbox.runtime.network import link_args
    _core.net_attach(netns_fd, ep.host_if, ep.if_name, ep.bridge_index, ep.mtu, _ip4(ep.ip),
                     ep.prefix, NO_ROUTE, -1, False, **link_args(ep, route=False))
