"""The container event log (`fastbox events`): one JSON line per lifecycle event,
appended to $FASTBOX_ROOT/events.log with O_APPEND (each line one write, so writers
never interleave), in Docker's event shape (Type, Action, Actor, time, timeNano)."""
import json
import os
import time

from fastbox import config

MAX_BYTES = 8 << 20  # then events.log becomes events.log.1 (replacing the one before)


def log_path():
    return os.path.join(config.root(), "events.log")


def append(action, record, when_ns=None, **attributes):
    """Record action (create, start, die, stop, kill, destroy, pause, ...) for the
    container record; never fails the operation that reports it."""
    append_many([(action, record, when_ns, attributes)])


def append_many(events):
    """Several events, (action, record, when_ns, attributes) each, in one write (a
    foreground container's create and start, then its die and destroy)."""
    _write(b"".join(_line(*e) for e in events))


def _line(action, record, when_ns, attributes):
    when_ns = when_ns or time.time_ns()
    spec = record.get("spec") or {}
    attrs = {**(spec.get("labels") or {}), "image": record.get("image", ""),
             "name": record.get("name") or record["id"][:12],
             **{k: str(v) for k, v in attributes.items()}}
    event = {"status": action, "id": record["id"], "from": record.get("image", ""),
             "Type": "container", "Action": action,
             "Actor": {"ID": record["id"], "Attributes": attrs}, "scope": "local",
             "time": when_ns // 10 ** 9, "timeNano": when_ns}
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _write(line):
    try:
        if os.stat(log_path()).st_size > MAX_BYTES:  # bounded: the older history goes
            os.replace(log_path(), log_path() + ".1")
    except OSError:
        pass
    try:
        fd = os.open(log_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(offset=0):
    """(events, the offset after the last whole line) from offset on."""
    try:
        with open(log_path(), "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out, offset + end


def rfc3339_to_ns(text):
    """'2026-12-07T04:47:50.123456789+00:00' (or Z) -> ns since the epoch."""
    import datetime
    import re
    m = re.match(r"^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not m:
        raise ValueError(text)
    base = datetime.datetime.fromisoformat(m.group(1) + (m.group(3) or "+00:00").replace("Z", "+00:00"))
    frac = (m.group(2) or "0")[:9].ljust(9, "0")
    return int(base.timestamp()) * 10 ** 9 + int(frac)
