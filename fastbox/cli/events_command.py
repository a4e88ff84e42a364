"""`fastbox events`: container lifecycle events from the state layer's log
(fastbox.state.events), as `docker events` prints them. Without --until it follows
(Docker's default) until interrupted."""
import json
import re
import time
from typing import List, Optional

import typer

from fastbox.errors import SpecError

FILTER_KEYS = ("container", "event", "image", "label", "type")


def register(app):
    app.command()(events)


def events(since: Optional[str] = typer.Option(None, "--since", help="Show events since: "
                                               "RFC 3339, Unix seconds, or a duration (10m)"),
           until: Optional[str] = typer.Option(None, "--until", help="Stream until this time"),
           filter_: List[str] = typer.Option([], "--filter", "-f",
                                             help="container=, event=, image=, label=, type="),
           format: Optional[str] = typer.Option(None, "--format", help="'json' or '{{json .}}'")):
    """Get real-time events: container create, start, die, stop, kill, pause, destroy..."""
    from fastbox.state import events as log
    now = time.time_ns()
    start = _when(since, now, "--since") if since else None
    end = _when(until, now, "--until") if until else None
    wanted = _filters(filter_)
    as_json = format in ("json", "{{json .}}")
    offset = 0
    while True:
        found, offset = log.read(offset)
        for e in found:
            if start is not None and e["timeNano"] < start:
                continue
            if end is not None and e["timeNano"] > end:
                continue
            if _matches(e, wanted):
                print(json.dumps(e) if as_json else _line(e), flush=True)
        if end is not None and time.time_ns() >= end:
            return
        _observe()
        time.sleep(0.1)


def _observe():
    """Reading the records settles those whose container exited: their die events."""
    from fastbox.state.store import StateStore
    try:
        StateStore().list()
    except OSError:
        pass


def _line(e):
    import datetime
    secs, ns = divmod(e["timeNano"], 10 ** 9)
    t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
    return f"{t}.{ns:09d}Z {e['Type']} {e['Action']} {e['Actor']['ID']} ({attrs})"


def _when(text, now, flag):
    """RFC 3339, Unix seconds[.fraction], or a Go duration (1h30m, 10m, 5s) before now."""
    from fastbox.state.events import rfc3339_to_ns
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        whole, _, frac = text.partition(".")
        return int(whole) * 10 ** 9 + int((frac or "0")[:9].ljust(9, "0"))
    parts = re.fullmatch(r"((\d+(\.\d+)?)(h|ms|m|s))+", text)
    if parts:
        unit = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6}
        total = sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", text))
        return now - int(total)
    try:
        return rfc3339_to_ns(text)
    except ValueError:
        raise SpecError(f"invalid {flag} {text!r}: expected an RFC 3339 time, Unix seconds "
                        "or a duration such as 10m") from None


def _filters(values):
    wanted = {}
    for value in values:
        key, eq, arg = value.partition("=")
        if not eq or key not in FILTER_KEYS:
            raise SpecError(f"invalid filter {value!r}: expected one of "
                            f"{', '.join(k + '=...' for k in FILTER_KEYS)}")
        wanted.setdefault(key, []).append(arg)
    return wanted


def _matches(e, wanted):
    attrs = e["Actor"]["Attributes"]
    checks = {"container": lambda v: e["Actor"]["ID"].startswith(v) or attrs.get("name") == v,
              "event": lambda v: e["Action"] == v,
              "image": lambda v: attrs.get("image") == v,
              "type": lambda v: e["Type"] == v,
              "label": lambda v: (attrs.get(v.partition("=")[0]) == v.partition("=")[2]
                                  if "=" in v else v in attrs)}
    return all(any(checks[k](v) for v in values) for k, values in wanted.items())

