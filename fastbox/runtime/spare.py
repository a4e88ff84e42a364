"""The spare network namespace (csrc/fb_spare.c): the core's worker thread makes the next
container's namespace while the current one starts, so that creating one (~0.5 ms here)
leaves the start path. Each spare is new and serves exactly one container. Only from a
process's second container on: the CLI starts just one.
"""
from fastbox import _core

_started = []  # a container has started in this process


def started():
    """A container has started: from the next one on, a spare is kept ready."""
    if not _started:
        _started.append(True)


def netns(spec):
    """A network namespace made ahead of time for a container with its own network (an
    fd the caller closes once the container has entered it), or None."""
    if spec.network != "none" or not _started:
        return None
    fd = _core.take_spare_netns()
    return fd if fd >= 0 else None
