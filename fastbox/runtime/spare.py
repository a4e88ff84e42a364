"""The spare network namespace (csrc/fb_spare.c): the core's worker thread makes the next
container's namespace while the current one starts, so that creating one (~0.5 ms here)
leaves the start path. Each spare is new and serves exactly one container. A library
process keeps one ready from its second container on; the CLI, which starts just one,
asks for it first thing and gets it made while Python imports and plans.
"""
from fastbox import _core

_more = []  # a container has started in this process: keep a spare for the next


def started():
    """A container has started: from the next one on, a spare is kept ready."""
    if not _more:
        _more.append(True)


def netns(spec):
    """A network namespace made ahead of time for a container with its own network (an
    fd the caller closes once the container has entered it), or None. Asks for the next
    one when this process starts more than one container."""
    if spec.network == "host" or spec.network.startswith("container:"):
        return None
    fd = _core.take_spare_netns()
    if _more:
        _core.request_spare_netns()
    return fd if fd >= 0 else None


def make_early():
    """Start making the namespace now, for the one container this process (the CLI) is
    about to start: it is made on another CPU while the rest of the start runs."""
    _core.request_spare_netns()
