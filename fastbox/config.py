"""Where fastbox keeps its data, read from the environment at each call so that tests
(and users) can point one process at several roots.

FASTBOX_ROOT holds what persists (images, containers); FASTBOX_RUN holds what dies with
the machine (locks, scratch mount points). FASTBOX_CGROUP_PARENT names the cgroup under
which every container cgroup is made, at the root of each hierarchy, never relative to
the caller's own cgroup.
"""
import os


def root():
    return os.environ.get("FASTBOX_ROOT") or "/var/lib/fastbox"  # set but empty: the default


def run_dir():
    return os.environ.get("FASTBOX_RUN") or "/run/fastbox"


def cgroup_parent():
    return os.environ.get("FASTBOX_CGROUP_PARENT", "fastbox").strip("/")


def images_dir():
    return f"{root()}/images"


def containers_dir():
    return f"{root()}/containers"


# ---------------------------------------------------------------- the config file
# Settings in Docker's daemon.json spirit, in $FASTBOX_CONFIG or /etc/fastbox/config.json:
#   {"log-opts": {"max-size": "10m", "max-file": "3"}}
# Read only by the commands that need a setting (a foreground `run` never does), and
# parsed again only when the file changes.

CONFIG_FILE = "/etc/fastbox/config.json"
# Without "log-opts" in the file, a detached container's log is at most 3 files of 10 MB
# (Docker's documented example, and the local driver's order of size): enough to read
# back what a service said lately, and a flood costs at most 30 MB of disk per container.
DEFAULT_LOG_OPTS = {"max-size": "10m", "max-file": "3"}
_parsed = {}  # path -> ((inode, mtime, size), settings)


def config_file():
    return os.environ.get("FASTBOX_CONFIG", CONFIG_FILE)


def settings():
    """The config file's settings, {} if there is none."""
    from fastbox.errors import SpecError
    path = config_file()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise SpecError(f"cannot read the config file {path}: {e.strerror}") from None
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _parsed.get(path)
    if cached and cached[0] == key:
        return cached[1]
    import json
    try:
        with open(path, "rb") as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise SpecError(f"invalid config file {path}: {e}") from None
    if not isinstance(found, dict):
        raise SpecError(f"invalid config file {path}: expected a JSON object")
    _parsed[path] = (key, found)
    return found


def log_opts():
    """The default log options of detached containers: the file's "log-opts" (an empty
    object means no limit, as in Docker), else DEFAULT_LOG_OPTS."""
    from fastbox.errors import SpecError
    opts = settings().get("log-opts", DEFAULT_LOG_OPTS)
    if not isinstance(opts, dict):
        raise SpecError(f'invalid config file {config_file()}: "log-opts" must be an object')
    return opts


def private_dir(path):
    """Make path, and any of its missing parents, root's alone (0700: Docker keeps
    /var/lib/docker 0710); an existing directory is left as it is (fastbox.state.modes
    tightens a store made before this rule once)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        private_dir(parent)
        private_dir(path)


# ---------------------------------------------------------------- the engine's idle time
# An engine the C client started by itself exits after this many seconds with nothing to
# serve (FASTBOX_ENGINE_IDLE, or "engine-idle" in the config file; 0: never), as Gradle's
# and Bazel's servers do. `fastbox engine start` runs one that stays.
DEFAULT_ENGINE_IDLE = 600.0


def engine_idle():
    from fastbox.errors import SpecError
    value = os.environ.get("FASTBOX_ENGINE_IDLE")
    where = "FASTBOX_ENGINE_IDLE"
    if value is None:
        value, where = settings().get("engine-idle", DEFAULT_ENGINE_IDLE), config_file()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:
        raise SpecError(f"invalid engine idle time in {where}: {value!r} "
                        "(seconds, 0 for never)")
    return seconds
