"""Log options (`--log-opt KEY=VALUE`, the API's log_opts, the config file's "log-opts"):
Docker's json-file options max-size and max-file, checked, merged over the configured
default, and turned into the limits the monitor enforces.

Docker's meanings are kept: max-size is a positive size in decimal units (10k = 10000
bytes, 10m = 10**7; Docker parses it with units.FromHumanSize, unlike --memory's binary
units); max-file is how many files there are in all, 1 when not given (the log then starts
over when it would pass max-size). A per-container option replaces the default's value for
that key only (moby's mergeAndVerifyLogConfig).
"""
from fastbox.errors import SpecError

LOG_DRIVER = "json-file"
MAX_FILES = 1000  # rotation renames every file: keep that bounded
_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12, "p": 10 ** 15}


def parse(value, where="--log-opt"):
    """['max-size=10m', 'max-file=3'] (the CLI) or {'max-size': '10m', 'max-file': 3} (the
    API, the config file) -> a sorted tuple of (key, value string) pairs, each checked."""
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        items = [_pair(value, where)]
    else:
        items = [item if isinstance(item, tuple) else _pair(item, where) for item in value]
    opts = {}
    for key, raw in items:
        text = str(raw).strip() if not isinstance(raw, bool) else ""
        if key == "max-size":
            max_size(text, where)
        elif key == "max-file":
            max_file(text, where)
        else:
            raise SpecError(f"unknown log opt {key!r} for the {LOG_DRIVER} log: "
                            "supported are max-size and max-file")
        opts[key] = text
    return tuple(sorted(opts.items()))


def _pair(item, where):
    key, eq, value = str(item).partition("=")
    if not eq or not key:
        raise SpecError(f"invalid {where} {item!r}: expected KEY=VALUE, such as max-size=10m")
    return key.strip(), value


def max_size(text, where="--log-opt"):
    """'10m' -> 10000000: a number, then an optional k/m/g/t/p, i and b (10MB, 10mib)."""
    t = text.strip().lower()
    t = t[:-1] if t.endswith("b") else t
    t = t[:-1] if t.endswith("i") else t
    unit = t[-1] if t and t[-1] in "kmgtp" else ""
    number = t[:-1].rstrip() if unit else t
    whole, dot, fraction = number.partition(".")
    wellformed = whole.isdigit() and (fraction.isdigit() or not dot)
    size = int(float(number) * _UNITS[unit]) if wellformed else 0
    if size <= 0:
        raise SpecError(f"invalid {where} max-size={text!r}: expected a positive size such as "
                        "10k, 10m or 1g")
    return size


def max_file(text, where="--log-opt"):
    if not text.isdigit() or not 1 <= int(text) <= MAX_FILES:
        raise SpecError(f"invalid {where} max-file={text!r}: expected a whole number from 1 "
                        f"to {MAX_FILES}")
    return int(text)


def effective(opts, default, where="log-opts"):
    """The container's options (pairs from parse) over the default (a dict from the config
    file, named by where): the LogConfig recorded for the container."""
    merged = dict(parse(default, where))
    merged.update(opts)
    if "max-file" in merged and "max-size" not in merged:
        raise SpecError(f"invalid --log-opt max-file={merged['max-file']}: max-file needs "
                        "max-size (a limit per file)")
    return {"Type": LOG_DRIVER, "Config": dict(sorted(merged.items()))}


def limits(log_config):
    """(max-size in bytes, 0 for none; max-file) for the monitor."""
    opts = log_config.get("Config") or {}
    if "max-size" not in opts:
        return 0, 1
    return max_size(opts["max-size"]), max_file(opts.get("max-file", "1"))
