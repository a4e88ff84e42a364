"""The `run` options a Docker user reaches for beyond limits and mounts: --label,
--restart, --stop-signal, --stop-timeout, --shm-size, --init, --ulimit, --mount, and
-v's named, anonymous and relative forms. Parsed here (spec.py calls in), so that
RunSpec stays one table of fields."""
import os
import resource

from fastbox.errors import SpecError

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
# Docker's --ulimit names -> RLIMIT_* (those this kernel has)
ULIMITS = {"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
           "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
           "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
           "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
           "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
           "as": "RLIMIT_AS"}


def labels(values):
    """--label K=V (or K: an empty value) as sorted (key, value) pairs; a dict too."""
    if not values:
        return ()
    if isinstance(values, dict):
        items = [(str(k), str(v)) for k, v in values.items()]
    else:
        items = []
        for value in [values] if isinstance(values, str) else values:
            key, _, val = str(value).partition("=")
            if not key.strip():
                raise SpecError(f"invalid label {value!r}: expected KEY=VALUE")
            items.append((key, val))
    return tuple(sorted(dict(items).items()))


def read_label_file(path, dir_fd=None):
    """--label-file: one KEY=VALUE per line."""
    return read_option_lines(path, "--label-file", dir_fd)


def read_option_lines(path, flag, dir_fd=None):
    """The lines of an --env-file or --label-file (relative to the caller's directory
    when dir_fd is given), # comments and blank lines skipped."""
    opener = None if dir_fd is None else (lambda p, flags: os.open(p, flags, dir_fd=dir_fd))
    try:
        with open(path, encoding="utf-8", opener=opener) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SpecError(f"cannot read {flag} {path!r}: {e.strerror}") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def restart_policy(value):
    """'no', 'always', 'unless-stopped', 'on-failure' or 'on-failure:N' (N >= 0)."""
    if value in (None, "", "no"):
        return "no"
    name, colon, count = str(value).partition(":")
    if name not in RESTART_POLICIES:
        raise SpecError(f"invalid restart policy {value!r}: expected one of no, always, "
                        "unless-stopped, on-failure[:max-retries]")
    if colon and (name != "on-failure" or not count.isdigit()):
        raise SpecError(f"invalid restart policy {value!r}: only on-failure takes a maximum "
                        "retry count (a whole number)")
    return str(value)


def stop_signal(value):
    """A signal name (TERM, SIGTERM) or number, normalized to SIGNAME; None: SIGTERM."""
    if value in (None, ""):
        return None
    import signal
    text = str(value).upper()
    if text.isdigit():
        try:
            return signal.Signals(int(text)).name
        except ValueError:
            raise SpecError(f"invalid --stop-signal {value!r}: no such signal") from None
    name = text if text.startswith("SIG") else "SIG" + text
    if not hasattr(signal.Signals, name):
        raise SpecError(f"invalid --stop-signal {value!r}: no such signal")
    return name


def stop_timeout(value):
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpecError(f"invalid --stop-timeout {value!r}: expected whole seconds") from None


def ulimits(values):
    """--ulimit NAME=SOFT[:HARD] as (name, soft, hard) triples. Root here lacks
    CAP_SYS_RESOURCE: a hard limit above ours cannot be set, so it is refused now
    rather than at the container's start."""
    if not values:
        return ()
    out = {}
    for value in [values] if isinstance(values, str) else values:
        name, eq, limits = str(value).partition("=")
        if not eq or name not in ULIMITS:
            raise SpecError(f"invalid --ulimit {value!r}: expected NAME=SOFT[:HARD] with NAME "
                            f"one of {', '.join(sorted(ULIMITS))}")
        soft, _, hard = limits.partition(":")
        try:
            soft = _rlim(soft)
            hard = _rlim(hard) if hard else soft
        except ValueError:
            raise SpecError(f"invalid --ulimit {value!r}: limits are whole numbers or -1") from None
        if soft > hard:
            raise SpecError(f"invalid --ulimit {value!r}: the soft limit exceeds the hard one")
        current = resource.getrlimit(getattr(resource, ULIMITS[name]))[1]
        if current != resource.RLIM_INFINITY and hard > current:
            raise SpecError(f"invalid --ulimit {value!r}: the hard limit exceeds this host's "
                            f"({current}); raising it needs CAP_SYS_RESOURCE")
        out[name] = (name, soft, hard)
    return tuple(out[k] for k in sorted(out))


def _rlim(text):
    n = int(text)
    return resource.RLIM_INFINITY if n == -1 else n


def ulimit_strings(values):
    return [f"{n}={-1 if s == resource.RLIM_INFINITY else s}:{-1 if h == resource.RLIM_INFINITY else h}"
            for n, s, h in values]


def mount_option(value):
    """--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...] (Docker's
    keys and aliases) -> ("volume", -v's string) or ("tmpfs", --tmpfs's string)."""
    fields, flags = {}, set()
    for part in str(value).split(","):
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if not eq:
            flags.add(key)
            continue
        fields[key] = val
    kind = fields.pop("type", "volume")
    source = fields.pop("source", None) or fields.pop("src", None)
    target = fields.pop("target", None) or fields.pop("destination", None) or fields.pop("dst", None)
    ro = bool(flags & {"readonly", "ro"}) or fields.pop("readonly", fields.pop("ro", "false")) \
        in ("true", "1")
    if not target:
        raise SpecError(f"invalid --mount {value!r}: target is required")
    if kind == "tmpfs":
        if source:
            raise SpecError(f"invalid --mount {value!r}: a tmpfs takes no source")
        opts = [f"mode={fields.pop('tmpfs-mode', '1777')}"]
        if "tmpfs-size" in fields:
            from fastbox.spec import parse_size
            opts.append(f"size={parse_size(fields.pop('tmpfs-size'), '--mount tmpfs-size', 1)}")
        _no_more(fields, value)
        return "tmpfs", f"{target}:{','.join(opts)}" + (",ro" if ro else "")
    if kind == "bind":
        if not source:
            raise SpecError(f"invalid --mount {value!r}: a bind mount needs a source")
        fields.pop("bind-propagation", None)
        _no_more(fields, value)
        if source.startswith("/") and not os.path.exists(source):
            raise SpecError(f"invalid --mount {value!r}: bind source path does not exist: {source}")
        if not source.startswith(("/", ".")):
            source = "./" + source
        return "volume", f"{source}:{target}" + (":ro" if ro else "")
    if kind == "volume":
        fields.pop("volume-driver", None)
        nocopy = "volume-nocopy" in flags or fields.pop("volume-nocopy", "false") in ("true", "1")
        _no_more(fields, value)
        if source and source.startswith(("/", ".")):
            raise SpecError(f"invalid --mount {value!r}: a volume's source is a volume name")
        options = ",".join(["ro"] * ro + ["nocopy"] * nocopy)
        return "volume", f"{source + ':' if source else ''}{target}" + (":" + options if options else "")
    raise SpecError(f"invalid --mount {value!r}: type must be bind, volume or tmpfs")


def _no_more(fields, value):
    if fields:
        raise SpecError(f"invalid --mount {value!r}: unknown option {next(iter(fields))!r}")


def volume_name_ok(name):
    from fastbox.spec import _ALNUM
    return bool(name) and name[0] in _ALNUM and all(c in _ALNUM or c in "_.-" for c in name)
