"""What `fastbox ps` shows of a container, as `docker ps` shows it: the fields its
--format templates see (ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status,
Names, Labels, Label, Mounts, Networks, LocalVolumes), the STATUS wording ("Up 5
minutes", "Exited (137) 2 minutes ago", "Created"), and --filter."""
import time

from fastbox.cli import filters
from fastbox.errors import FastboxError, SpecError
from fastbox.network import container_ports
from fastbox.state import status, timestamps

DEFAULT_TABLE = ("{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
                 "{{.Ports}}\t{{.Names}}")
TITLES = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
          "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
          "State": "STATE", "Status": "STATUS", "Names": "NAMES", "Labels": "LABELS",
          "Label": "LABEL", "Mounts": "MOUNTS", "Networks": "NETWORKS",
          "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE"}
FIELDS = ("Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names",
          "Networks", "Ports", "RunningFor", "State", "Status")


def human_duration(seconds):
    """go-units' HumanDuration: "Less than a second", "About a minute", "3 hours"."""
    if seconds < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _since(when, now):
    return max(0.0, now - timestamps.parse(when)) if when else 0.0


def status_text(record, now=None):
    """Docker's STATUS column for a record."""
    now = time.time() if now is None else now
    state = record["status"]
    if status.restarting(record):  # Docker: "Restarting (1) 2 seconds ago"
        return (f"Restarting ({record.get('exit_code')}) "
                f"{human_duration(_since(record.get('finished_at'), now))} ago")
    if state == "running":
        up = "Up " + human_duration(_since(record.get("started_at"), now))
        return up + " (Paused)" if record.get("paused") else up
    if state == "exited":
        code = record.get("exit_code")
        if not record.get("finished_at"):
            return f"Exited ({code})"
        return f"Exited ({code}) {human_duration(_since(record['finished_at'], now))} ago"
    return state.capitalize()


def _ellipsis(text, width):
    return text if len(text) <= width else text[:width - 1] + "…"


def _go_time(when):
    """Go's time.String(), as `docker ps` prints CreatedAt: "2026-12-07 04:31:04 +0000 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(timestamps.parse(when))) \
        if when else ""


class ContainerRow:
    """One container as `ps --format` sees it; each field a property, as in Docker's
    ContainerContext (so an unknown field is an error, not an empty string)."""

    def __init__(self, record, trunc=True, now=None):
        self._r = record
        self._trunc = trunc
        self._now = time.time() if now is None else now
        self._spec = record.get("spec") or {}

    @property
    def ID(self):
        return self._r["id"][:12] if self._trunc else self._r["id"]

    @property
    def Image(self):
        return self._r.get("image") or ""

    @property
    def Command(self):
        spec = self._spec
        entry = spec.get("entrypoint")
        argv = list(entry or []) + list(self._r.get("command") or spec.get("command") or [])
        text = " ".join(argv)
        import json
        return json.dumps(_ellipsis(text, 20) if self._trunc else text, ensure_ascii=False)

    @property
    def CreatedAt(self):
        return _go_time(self._r.get("created_at"))

    @property
    def RunningFor(self):
        return human_duration(_since(self._r.get("created_at"), self._now)) + " ago"

    @property
    def Ports(self):
        """Published ports while the container runs (its network endpoint has them)."""
        if self._r.get("status") != "running":
            return ""
        from fastbox.network.endpoints import ports_text
        return ports_text(self._r["id"])

    @property
    def State(self):
        return status.docker_state(self._r)

    @property
    def Status(self):
        return status_text(self._r, self._now)

    @property
    def Names(self):
        return self._r.get("name") or ""

    def _labels(self):
        return dict(self._spec.get("labels") or {})

    @property
    def Labels(self):
        return ",".join(f"{k}={v}" for k, v in sorted(self._labels().items()))

    def Label(self, key):
        return self._labels().get(key, "")

    @property
    def Mounts(self):
        return ",".join(v.split(":")[0] for v in self._spec.get("volumes") or ())

    @property
    def Networks(self):
        return self._spec.get("network") or "none"

    @property
    def LocalVolumes(self):
        return str(len(self._spec.get("volumes") or ()))

    def template_data(self):
        """{{json .}}: every field, by name, as Docker's ps prints it."""
        return {name: getattr(self, name) for name in FIELDS}


# ---------------------------------------------------------------- --filter

STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(items):
    """["name=web", "status=exited"] -> {"name": ["web"], "status": ["exited"]}, checked
    as Docker checks them."""
    found = filters.split(items, MATCHERS)
    for value in found.get("status", ()):
        if value not in STATUSES:
            raise SpecError(f"invalid filter 'status={value}': use one of {', '.join(STATUSES)}")
    for value in found.get("exited", ()):
        try:
            int(value)
        except ValueError:
            raise SpecError(f"invalid filter 'exited={value}': an exit code") from None
    for key in ("publish", "expose"):
        for value in found.get(key, ()):
            _port_filter(key, value)
    return found


def _name_matches(record, pattern):
    import re
    try:
        return re.search(pattern, record.get("name") or "") is not None
    except re.error:
        return pattern in (record.get("name") or "")


def _label_matches(record, wanted):
    return filters.labels_match((record.get("spec") or {}).get("labels") or {}, wanted)


def _ancestor_matches(record, wanted):
    image, image_id = record.get("image") or "", record.get("image_id") or ""
    short = image_id.split(":")[-1]
    bare = wanted.split(":")[-1] if wanted.startswith("sha256:") else wanted
    return (image == wanted or image.partition(":")[0] == wanted
            or (len(bare) >= 4 and short.startswith(bare)))


def _port_filter(key, value):
    """publish=/expose= PORT[-PORT][/tcp|udp] -> (lo, hi, proto), as Docker reads it."""
    text, _, proto = value.partition("/")
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("", "tcp", "udp"):
        raise SpecError(f"invalid filter '{key}={value}': a port or a range, then /tcp or /udp")
    return int(lo), int(hi or lo), proto or "tcp"


def _ports_match(ports, key, wanted):
    lo, hi, proto = _port_filter(key, wanted)
    return any(p == proto and lo <= n <= hi for n, p in ports)


def _network_matches(record, wanted):
    """The container is on that network (a name, an id or its prefix): its first, or
    one it was connected to."""
    from fastbox.network import connect, options, store
    names = {options.network_mode((record.get("spec") or {}).get("network"))}
    names |= {c.name for c in connect.recorded(record["id"])}
    if wanted in names:
        return True
    try:
        return store.get(wanted).name in names
    except FastboxError:
        return False


def _exited_matches(record, code):
    return record["status"] == "exited" and record.get("exit_code") == int(code)


MATCHERS = {
    "name": _name_matches,
    "id": lambda r, v: r["id"].startswith(v),
    "status": lambda r, v: status.docker_state(r) == v,
    "label": _label_matches,
    "ancestor": _ancestor_matches,
    "exited": _exited_matches,
    "network": _network_matches,
    "publish": lambda r, v: _ports_match(container_ports.published(r), "publish", v),
    "expose": lambda r, v: _ports_match(container_ports.exposed(r), "expose", v),
}


def matches(record, wanted):
    return filters.matches(record, wanted, MATCHERS)
