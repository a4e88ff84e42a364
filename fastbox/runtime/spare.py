"""The spare network namespace (csrc/fb_spare.c): the core's worker thread makes the next
container's namespace while the current one starts, so that creating one (~0.5 ms here)
leaves the start path. Each spare is new and serves exactly one container. A library
process keeps one ready from its second container on; the CLI, which starts just one,
asks for it first thing and gets it made while Python imports and plans.
"""
import os

from fastbox import _core

_more = []  # a container has started in this process: keep a spare for the next


def started(spec=None, foreground=False):
    """A container has started: from the next one on, a spare is kept ready. A bridge
    container's next spare is asked for once the start is over (made during the start,
    its rtnl work would hold up the container's own address and route); a foreground
    one's in two halves: its namespace as this one's network is set up (network_ready),
    its veth once this one has exited (exited()). Made during the short run, the veth's
    kernel work held the run up by as much as it saved, and so did the namespace's; the
    next start takes it only just before its own network is set up (container.prepare's
    late_spare). A `none` one's was asked for as the start began (netns())."""
    if not _more:
        _more.append(True)
    elif spec is not None and _bridged(spec):
        if foreground:
            _deferred[:] = [True]
        else:
            _core.request_spare(*_bridge)


def network_ready():
    """A foreground bridge container's network is set up: the next one's namespace is
    made now, beside this one's clone and mounts (unless one with its veth is ready)."""
    if _more:
        _core.request_spare_plain_first(*_bridge)


_deferred = []  # a foreground bridge container's next veth, asked for at its exit


def exited():
    if _deferred:
        _deferred.clear()
        _core.request_spare(*_bridge)


def _bridged(spec):
    return spec.network not in ("none", "host") and not spec.network.startswith("container:")


class Spare:
    """A namespace made ahead of time: its fd, a netlink socket inside it (-1: none),
    and the veth the worker made in it for a bridge (host_if None: none)."""

    __slots__ = ("fd", "sock", "host_if", "bridge_index", "mtu")

    def __init__(self, fd, sock, host_if, bridge_index, mtu):
        self.fd, self.sock, self.host_if, self.bridge_index, self.mtu = (
            fd, sock, host_if, bridge_index, mtu)

    def close(self):
        for fd in (self.fd, self.sock):
            if fd >= 0:
                os.close(fd)
        self.fd = self.sock = -1


_bridge = [0, 0]  # (ifindex, mtu) of the bridge of this process's last bridge start


def netns(spec):
    """A network namespace made ahead of time for a container with its own network (a
    Spare the caller closes once the container has entered it), or None. Asks for the
    next one when this process starts more than one container: with a veth on the bridge
    its last bridge container used."""
    if spec.network == "host" or spec.network.startswith("container:"):
        return None
    # one being made is waited for: making another beside it only races it
    fd, sock, host_if, index, mtu = _core.take_spare(0 if spec.network == "none" else 1)
    sp = Spare(fd, sock, host_if, index, mtu) if fd >= 0 else None
    if sp is not None and host_if and spec.network == "none":
        sp.close()  # it has a veth: not a `none` container's
        sp = None
    if _more and (spec.network == "none" or sp is None):
        # the next one is made on the worker's CPU while this container starts (a
        # bridge container's is asked for once it has started, if one was ready: started())
        _core.request_spare(*(_bridge if spec.network != "none" else (0, 0)))
    return sp


def remember_bridge(index, mtu):
    """A container started on this bridge: the next spares get their veth on it."""
    _bridge[0], _bridge[1] = index, mtu


def make_early(network="none"):
    """Start making the namespace now, for the one container this process (the CLI) is
    about to start: it is made on another CPU while the rest of the start runs. For the
    default bridge, with its veth (if the bridge exists; the MTU is checked at use)."""
    index = 0
    if network == "bridge":
        import _socket
        try:
            index = _socket.if_nametoindex("fastbox0")
        except OSError:
            index = 0
    _core.request_spare(index, 1500 if index else 0)
