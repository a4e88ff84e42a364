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
