"""Timestamps as Docker writes them: RFC 3339 in UTC with nanoseconds
("2026-12-07T04:31:04.123456789Z"), the form the monitor (csrc/monitor/fb_monitor.c)
writes too, so Created, StartedAt and FinishedAt all read alike."""
import time


def now():
    return format_ns(time.time_ns())


def format_ns(ns):
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse(text):
    """Seconds since the epoch (a float) of an RFC 3339 time, with or without fractions,
    "Z" or an offset; also the isoformat() ("+00:00", microseconds) older records hold."""
    import datetime
    text = text.strip()
    frac = ""
    head, sep, rest = text.partition(".")
    zone = ""
    if sep:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:]
    else:
        for i in range(len(text) - 1, 9, -1):
            if text[i] in "Z+-":
                head, zone = text[:i], text[i:]
                break
    if zone in ("Z", "z", ""):
        zone = "+00:00"
    when = datetime.datetime.fromisoformat(head.replace(" ", "T") + zone)
    return when.timestamp() + (float("0." + frac) if frac else 0.0)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text):
    """Seconds in a Go duration ("10m", "1h30m", "1.5s", "300ms"); ValueError if not one."""
    import re
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in parts)


def point_in_time(text, now=None):
    """Seconds since the epoch for Docker's --since/--until: an RFC 3339 time (or just a
    date), a Unix time ("1700000000.5"), or a Go duration before now ("10m")."""
    import time as _time
    now = _time.time() if now is None else now
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return now - go_duration(text)
    except ValueError:
        pass
    if len(text) == 10:  # 2026-12-07
        text += "T00:00:00Z"
    return parse(text)
