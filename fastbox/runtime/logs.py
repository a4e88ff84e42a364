"""Reading the JSON-lines log the monitor writes (Docker's json-file format:
{"log": "...", "stream": "stdout"|"stderr", "time": RFC 3339})."""
import json
import os
import time

FOLLOW_POLL_S = 0.05


def read(path, follow=False, tail=None, running=lambda: False, offset=0):
    """Yields entries (from byte offset on: a restarted container's new output);
    with follow, keeps yielding until the container has stopped and the log has
    nothing more."""
    f = _open(path, follow, running)
    if f is None:
        return
    with f:
        f.seek(offset)
        lines = f.readlines()
        if lines and not lines[-1].endswith(b"\n"):
            f.seek(-len(lines.pop()), 1)  # a line still being written: read it later
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield json.loads(line)
        while follow:
            pos = f.tell()
            line = f.readline()
            if line.endswith(b"\n"):
                yield json.loads(line)
                continue
            f.seek(pos)
            if not running():
                rest = f.read()  # the monitor's last words, written before it exited
                for extra in rest.splitlines():
                    yield json.loads(extra)
                return
            time.sleep(FOLLOW_POLL_S)


def _open(path, follow, running):
    """The log; when following a container that has just started, wait for the
    monitor to create it."""
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not (follow and running()):
                return None
            time.sleep(FOLLOW_POLL_S)


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def format_entry(entry, timestamps=False):
    """(stream, bytes) as `fastbox logs` prints it."""
    text = entry["log"]
    if timestamps:
        text = f"{entry['time']} {text}"
    return entry["stream"], text.encode("utf-8", "surrogateescape")
