"""What to run and with which limits: validated once, then frozen.

User input (CLI strings or API values) is parsed here and nowhere else; everything
downstream trusts a RunSpec. Kept free of heavy imports (dataclasses, re, pathlib):
this module is on the path of every `fastbox run`.
"""
import os

from fastbox import capabilities
from fastbox.errors import SpecError

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class Frozen:
    """Attributes are set once in __init__ through _set; any later assignment fails."""

    __slots__ = ()

    def _set(self, **values):
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Volume(Frozen):
    """A host path bound into the container (-v SRC:DST[:ro]), or a volume: source is
    then its name (kind "volume"; anonymous for -v /path, fastbox.volumes)."""

    __slots__ = ("source", "target", "readonly", "kind", "anonymous", "nocopy")

    def __init__(self, source, target, readonly=False, kind="bind", anonymous=False,
                 nocopy=False):
        """nocopy: a new volume stays empty instead of taking the image's files."""
        self._set(source=source, target=target, readonly=readonly, kind=kind,
                  anonymous=anonymous, nocopy=nocopy)

    def options(self):
        """-v's third field: ro and nocopy, or ''."""
        return ",".join(["ro"] * self.readonly + ["nocopy"] * self.nocopy)


class Tmpfs(Frozen):
    """A fresh tmpfs at target (--tmpfs DST[:OPTIONS])."""

    __slots__ = ("target", "options")

    def __init__(self, target, options="mode=1777"):
        self._set(target=target, options=options)


class Device(Frozen):
    """A host device node made in the container's /dev and allowed in its device
    controller (--device HOST[:CONTAINER][:rwm], fastbox.device_options)."""

    __slots__ = ("host", "container", "permissions")

    def __init__(self, host, container, permissions="rwm"):
        self._set(host=host, container=container, permissions=permissions)

    def __str__(self):
        return f"{self.host}:{self.container}:{self.permissions}"


class RunSpec(Frozen):
    """Everything `fastbox run` needs to know, validated."""

    __slots__ = ("image", "command", "entrypoint", "env", "workdir", "user", "hostname",
                 "memory", "cpus", "pids_limit", "memory_swap", "memory_reservation",
                 "cpu_shares", "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems",
                 "volumes", "tmpfs", "read_only", "network", "name", "remove", "storage_opts",
                 "security_opt", "cap_add", "cap_drop", "privileged", "log_opts", "devices",
                 "device_cgroup_rules", "labels", "restart", "stop_signal", "stop_timeout",
                 "shm_size", "init", "ulimits", "publish", "publish_all", "expose", "dns",
                 "add_host", "network_alias", "ip", "ip6", "mac_address", "dns_search", "dns_option",
                 "sysctls")

    def __init__(self, image, command=None, *, entrypoint=None, env=(), env_file=None,
                 workdir=None, user=None, hostname=None, memory=None, cpus=None,
                 pids_limit=None, memory_swap=None, memory_reservation=None, cpu_shares=None,
                 cpu_period=None, cpu_quota=None, cpuset_cpus=None, cpuset_mems=None,
                 volumes=(), tmpfs=(), read_only=False, network="none",
                 name=None, remove=False, storage_opts=(), security_opt=(), cap_add=(),
                 cap_drop=(), privileged=False, log_opts=(), devices=(),
                 device_cgroup_rules=(), labels=(), restart=None, stop_signal=None,
                 stop_timeout=None, shm_size=None, init=False, ulimits=(), mounts=(),
                 publish=(), publish_all=False, expose=(), dns=(), add_host=(),
                 network_alias=(), ip=None, ip6=None, mac_address=None, dns_search=(), dns_option=(),
                 sysctls=()):
        if not image or not isinstance(image, str):
            raise SpecError("an image is required")
        self._set(
            image=image,
            command=_argv(command, "command"),
            entrypoint=_argv(entrypoint, "--entrypoint"),
            env=parse_env(env, env_file),
            workdir=_abs_or_none(workdir, "--workdir"),
            user=str(user) if user not in (None, "") else None,
            hostname=_hostname(hostname),
            memory=parse_size(memory, "--memory"),
            cpus=parse_cpus(cpus),
            pids_limit=parse_pids(pids_limit),
            **_more_limits(memory, memory_swap, memory_reservation, cpus, cpu_shares, cpu_period,
                           cpu_quota, cpuset_cpus, cpuset_mems),
            volumes=tuple(parse_volume(v) for v in [*volumes, *_mounts(mounts, "volume")]),
            tmpfs=tuple(parse_tmpfs(t) for t in [*tmpfs, *_mounts(mounts, "tmpfs")]),
            read_only=bool(read_only),
            name=_name(name),
            remove=bool(remove),
            storage_opts=tuple(storage_opts),
            security_opt=parse_security_opts(security_opt),
            cap_add=capabilities.normalize(cap_add, "--cap-add"),
            cap_drop=capabilities.normalize(cap_drop, "--cap-drop"),
            privileged=bool(privileged),
            log_opts=_log_opts(log_opts),
            devices=_devices(devices),
            device_cgroup_rules=_device_cgroup_rules(device_cgroup_rules),
            **_run_options(labels, restart, stop_signal, stop_timeout, shm_size, init, ulimits),
            **_network_options(network, publish, publish_all, expose, dns, add_host,
                               network_alias, ip, ip6, dns_search, dns_option, sysctls,
                               mac_address),
        )
        if self.network.startswith("container:"):
            _joined_conflicts(self)

    def add_image_volumes(self, paths):
        """The image's VOLUME paths, as Docker has them: an anonymous volume at each one
        that no -v, --mount or --tmpfs of the container takes (what those mount goes
        there instead). Called once, where the spec meets its image."""
        taken = {v.target for v in self.volumes} | {t.target for t in self.tmpfs}
        extra = tuple(parse_volume(p) for p in paths if p not in taken)
        if extra:
            self._set(volumes=self.volumes + extra)

    @property
    def cgroup_limits(self):
        """The limits beyond memory, cpus and pids_limit that are set, as keyword
        arguments of fastbox.runtime.cgroup.plan."""
        return {k: getattr(self, k) for k in MORE_LIMITS if getattr(self, k) is not None}

    @property
    def seccomp_profile(self):
        """None: fastbox's default profile; "unconfined": no filter; else a profile's
        JSON. --privileged means no filter, as with Docker."""
        if self.privileged:
            return "unconfined"
        for opt in self.security_opt:
            if opt.startswith("seccomp="):
                return opt[len("seccomp="):]
        return None

    @property
    def no_new_privileges(self):
        """fastbox sets no_new_privs unless told no-new-privileges=false (Docker
        leaves it off unless told)."""
        return "no-new-privileges=false" not in self.security_opt

    @property
    def devices_confined(self):
        """Whether the device controller limits the container to the standard devices
        and its --device/--device-cgroup-rule ones: not with --privileged (every device,
        as with Docker) nor with --security-opt devices=unconfined."""
        return not self.privileged and "devices=unconfined" not in self.security_opt

    @property
    def capability_mask(self):
        """The container's capability set, a bit mask (fastbox.capabilities)."""
        return capabilities.effective(self.cap_add, self.cap_drop, self.privileged)


def spec_to_dict(spec):
    """A JSON-able form of a RunSpec, for the records of created containers."""
    d = {k: getattr(spec, k) for k in RunSpec.__slots__}
    d["volumes"] = [f"{v.source}:{v.target}" + (":" + v.options() if v.options() else "")
                    for v in spec.volumes]
    d["labels"] = dict(spec.labels)
    from fastbox.run_options import ulimit_strings
    d["ulimits"] = ulimit_strings(spec.ulimits)
    d["tmpfs"] = [f"{t.target}:{t.options}" for t in spec.tmpfs]
    for key in ("command", "entrypoint", "env", "storage_opts", "security_opt", "cap_add",
                "cap_drop"):
        d[key] = list(d[key]) if d[key] is not None else None
    d["log_opts"] = dict(spec.log_opts)
    d["devices"] = [str(v) for v in spec.devices]
    d["device_cgroup_rules"] = list(spec.device_cgroup_rules)
    for key in ("publish", "expose", "dns", "add_host", "network_alias", "dns_search", "dns_option"):
        d[key] = list(d[key])
    d["sysctls"] = {k: v for k, v in spec.sysctls}
    return d


def _mounts(values, kind):
    """--mount values of one kind, as -v or --tmpfs strings."""
    if not values:
        return []
    from fastbox.run_options import mount_option
    return [text for k, text in (mount_option(v) for v in
                                 ([values] if isinstance(values, str) else values)) if k == kind]


def _run_options(labels, restart, stop_signal, stop_timeout, shm_size, init, ulimits):
    if not (labels or restart or stop_signal or stop_timeout is not None or shm_size or init
            or ulimits):
        return dict(labels=(), restart="no", stop_signal=None, stop_timeout=None,
                    shm_size=None, init=False, ulimits=())
    from fastbox import run_options as ro
    return dict(labels=ro.labels(labels), restart=ro.restart_policy(restart),
                stop_signal=ro.stop_signal(stop_signal), stop_timeout=ro.stop_timeout(stop_timeout),
                shm_size=parse_size(shm_size, "--shm-size", minimum=1), init=bool(init),
                ulimits=ro.ulimits(ulimits))


UPDATABLE = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpu_period",
             "cpu_quota", "cpuset_cpus", "cpuset_mems", "pids_limit", "restart")


def merged_limits(spec_dict, limits):
    """A record's spec with `fastbox update`'s limits over it: --cpus replaces a CFS
    period and quota and the reverse, as Docker's update does."""
    unknown = set(limits) - set(UPDATABLE)
    if unknown:
        raise SpecError(f"cannot update {', '.join(sorted(unknown))}")
    d = dict(spec_dict)
    given = {k: v for k, v in limits.items() if v is not None and v != ""}
    if "cpus" in given:
        d["cpu_period"] = d["cpu_quota"] = None
    if "cpu_period" in given or "cpu_quota" in given:
        d["cpus"] = None
    d.update(given)
    return d


def spec_from_dict(d):
    d = dict(d)
    return RunSpec(d.pop("image"), d.pop("command"), **d)


CPUS_ONLINE, NODES_ONLINE = "/sys/devices/system/cpu/online", "/sys/devices/system/node/online"
MORE_LIMITS = ("memory_swap", "memory_reservation", "cpu_shares", "cpu_period", "cpu_quota",
               "cpuset_cpus", "cpuset_mems")


def _more_limits(memory, memory_swap, memory_reservation, cpus, shares, period, quota,
                 cpuset_cpus, cpuset_mems):
    """--memory-swap, --memory-reservation, --cpu-shares, --cpu-period, --cpu-quota,
    --cpuset-cpus, --cpuset-mems, checked against each other as Docker checks them."""
    memory = parse_size(memory, "--memory")
    swap = parse_memory_swap(memory_swap)
    if swap is not None and swap > 0:
        if memory is None:
            raise SpecError(f"invalid --memory-swap {memory_swap!r}: it needs --memory "
                            "(it limits memory plus swap)")
        if swap < memory:
            raise SpecError(f"invalid --memory-swap {memory_swap!r}: it must be at least --memory "
                            "(it limits memory plus swap), or -1 for unlimited swap")
    reservation = parse_size(memory_reservation, "--memory-reservation", minimum=0) or None
    if reservation is not None and memory is not None and reservation > memory:
        raise SpecError(f"invalid --memory-reservation {memory_reservation!r}: it must not "
                        "exceed --memory")
    period = _int_in(period, "--cpu-period", 1000, 1000000, "microseconds, 1000 to 1000000")
    quota = _int_in(quota, "--cpu-quota", 1000, 1 << 62, "microseconds, at least 1000, or -1",
                    unlimited=True)
    if cpus not in (None, "") and (period is not None or quota is not None):
        raise SpecError("conflicting options: --cpus cannot be used with --cpu-period or "
                        "--cpu-quota")
    return dict(memory_swap=swap, memory_reservation=reservation,
                cpu_shares=_int_in(shares, "--cpu-shares", 2, 262144, "2 to 262144"),
                cpu_period=period, cpu_quota=quota,
                cpuset_cpus=parse_cpuset(cpuset_cpus, "--cpuset-cpus", CPUS_ONLINE),
                cpuset_mems=parse_cpuset(cpuset_mems, "--cpuset-mems", NODES_ONLINE))


def parse_memory_swap(value):
    """--memory-swap: memory plus swap, or -1 for unlimited swap; None (or 0) unset."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    if str(value).strip() == "-1":
        return -1
    return parse_size(value, "--memory-swap")


def _int_in(value, flag, low, high, what, unlimited=False):
    """A whole number in [low, high] (or -1 if unlimited is allowed); None or 0: unset."""
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"invalid {flag} {value!r}: expected a whole number ({what})") from None
    if n == 0:
        return None
    if not (low <= n <= high or (unlimited and n == -1)):
        raise SpecError(f"invalid {flag} {value!r}: expected {what}")
    return n


def parse_cpuset(value, flag, online_file):
    """'0-2,4' (the kernel's list format): checked against what this host has online;
    kept as given, without spaces. None or '' stays None."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).replace(" ", "")
    wanted = _cpu_list(text)
    if wanted is None:
        raise SpecError(f"invalid {flag} {value!r}: expected a list such as 0-2,4")
    online = _cpu_list(_read_or(online_file, "0"))
    missing = sorted(wanted - (online or set()))
    if missing:
        have = _read_or(online_file, "0")
        raise SpecError(f"invalid {flag} {value!r}: {', '.join(map(str, missing))} not available "
                        f"here (online: {have})")
    return text


def _cpu_list(text):
    """The kernel's list format, '0-2,4', as a set; None if malformed."""
    out = set()
    for part in text.strip().split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            return None
        low, high = int(low), int(high) if dash else int(low)
        if high < low:
            return None
        out.update(range(low, high + 1))
    return out


def _read_or(path, default):
    try:
        with open(path) as f:
            return f.read().strip() or default
    except OSError:
        return default


def _log_opts(value):
    """--log-opt max-size=10m (a list) or log_opts={"max-size": "10m"}: sorted pairs."""
    if not value:
        return ()
    from fastbox import log_options
    return log_options.parse(value)


def _devices(values):
    if not values:
        return ()
    from fastbox import device_options
    return device_options.parse_devices([values] if isinstance(values, str) else values)


def _device_cgroup_rules(values):
    if not values:
        return ()
    from fastbox import device_options
    return tuple(device_options.parse_cgroup_rule(v)
                 for v in ([values] if isinstance(values, str) else values))


def _argv(value, what):
    if value is None:
        return None
    if isinstance(value, str):
        return (value,) if value else ()
    argv = tuple(value)
    if not all(isinstance(a, str) for a in argv):
        raise SpecError(f"invalid {what} {value!r}: every argument must be a string")
    return argv


def parse_size(value, flag, minimum=6 << 20):
    """'512m', '1g', '1048576', 1048576 -> bytes (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        text = str(value).strip().lower()
        if len(text) > 2 and text[-1] == "b" and text[-2] in "kmgt":
            text = text[:-1]  # "512mb" is "512m"
        unit = text[-1] if text and text[-1] in "bkmgt" else ""
        number = text[:-1] if unit else text
        try:
            number = float(number)
        except ValueError:
            raise SpecError(f"invalid {flag} {value!r}: expected a size such as 512m or 1g") from None
    size = int(number * _SIZE_UNITS[unit])
    if size < minimum or size < 0:
        raise SpecError(f"invalid {flag} {value!r}: the minimum is {minimum >> 20}m")
    return size


def parse_cpus(value):
    if value is None or value == "":
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"invalid --cpus {value!r}: expected a number such as 0.5 or 2") from None
    ncpu = _ncpu()
    if not 0.01 <= cpus <= ncpu:
        raise SpecError(f"invalid --cpus {value!r}: must be between 0.01 and {ncpu} (CPUs here)")
    return cpus


_cpus = []


def _ncpu():
    if not _cpus:
        _cpus.append(os.cpu_count() or 1)
    return _cpus[0]


def parse_pids(value):
    if value is None or value == "":
        return None
    try:
        pids = int(value)
    except (TypeError, ValueError):
        raise SpecError(f"invalid --pids-limit {value!r}: expected a whole number") from None
    if pids == 0 or pids < -1:
        raise SpecError(f"invalid --pids-limit {value!r}: must be positive, or -1 for unlimited")
    return pids


def parse_env(env, env_file=None, environ=None, dir_fd=None):
    """-e K=V, -e K (taken from environ, by default ours; dropped if unset), --env-file
    lines (a relative path from dir_fd, by default our working directory)."""
    from fastbox.run_options import read_option_lines
    environ = os.environ if environ is None else environ
    items = []
    for path in ([env_file] if isinstance(env_file, str) else list(env_file or ())):
        items.extend(read_option_lines(path, "--env-file", dir_fd))
    if isinstance(env, dict):
        env = [f"{k}={v}" for k, v in env.items()]
    items.extend(env or ())
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise SpecError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in environ:
                continue
            value = environ[key]
        out[key] = value
    return tuple(f"{k}={v}" for k, v in out.items())


def parse_volume(value):
    """'/host/path:DST[:ro|rw]' (a bind), './relative:DST' (from our directory),
    'NAME:DST' (a named volume), or '/DST' (an anonymous volume), as Docker's -v; a
    volume's options may add nocopy (ro,nocopy)."""
    if isinstance(value, Volume):
        return value
    parts = str(value).split(":")
    mode = parts.pop() if len(parts) == 3 or (len(parts) == 2 and _volume_options(parts[1])) \
        else "rw"
    words = _volume_options(mode)
    if len(parts) == 1 and parts[0].startswith("/"):
        from fastbox.volumes.store import new_anonymous_name
        parts.insert(0, new_anonymous_name())
        anonymous = True
    else:
        anonymous = False
    if len(parts) != 2 or words is None or {"ro", "rw"} <= words or not parts[0]:
        raise SpecError(f"invalid volume {value!r}: expected SOURCE:/container/path[:ro] (SOURCE "
                        "a host path or a volume name) or /container/path")
    source, target = parts
    if not target.startswith("/") or target == "/":
        raise SpecError(f"invalid volume {value!r}: the container path must be absolute and not /")
    if source.startswith(("/", ".", "~")):
        if "nocopy" in words:
            raise SpecError(f"invalid volume {value!r}: nocopy is for volumes, not host paths")
        if source.startswith("~"):
            source = os.path.expanduser(source)
        return Volume(os.path.abspath(source), os.path.normpath(target), "ro" in words)
    from fastbox.run_options import volume_name_ok
    if not volume_name_ok(source):
        raise SpecError(f"invalid volume {value!r}: {source!r} is neither a host path (absolute, "
                        "or relative from ./) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    return Volume(source, os.path.normpath(target), "ro" in words, "volume", anonymous,
                  "nocopy" in words)


def _volume_options(text):
    """The set of -v option words in text (ro, rw, nocopy), or None if it is not one."""
    words = set(text.split(","))
    return words if words <= {"ro", "rw", "nocopy"} else None


def parse_tmpfs(value):
    if isinstance(value, Tmpfs):
        return value
    target, _, options = str(value).partition(":")
    if not target.startswith("/") or target == "/":
        raise SpecError(f"invalid --tmpfs {value!r}: the path must be absolute and not /")
    return Tmpfs(os.path.normpath(target), options or "mode=1777")


SECURITY_OPTS = ("seccomp=PROFILE.json|unconfined, no-new-privileges[=true|false], "
                 "devices=unconfined")


def parse_security_opts(values, dir_fd=None):
    """--security-opt values, as Docker takes them ("=" or the old ":"), normalized:
    "seccomp=unconfined", "seccomp=<the profile's JSON on one line>" (a file is read
    now, relative to dir_fd or our directory, as Docker's client sends the content),
    "no-new-privileges=true|false"."""
    if isinstance(values, str):
        values = (values,)
    out = []
    for value in values or ():
        text = str(value)
        key, sep, arg = text.partition("=")
        if not sep and ":" in text:
            key, sep, arg = text.partition(":")
        if key == "no-new-privileges":
            if sep and arg.lower() not in ("true", "false", "1", "0"):
                raise SpecError(f"invalid --security-opt {text!r}: no-new-privileges takes true or false")
            opt = "no-new-privileges=" + ("false" if sep and arg.lower() in ("false", "0") else "true")
        elif key == "devices" and arg == "unconfined":
            opt = "devices=unconfined"
        elif key == "seccomp" and arg:
            opt = "seccomp=" + (arg if arg == "unconfined" else _seccomp_profile(arg, dir_fd))
        else:
            raise SpecError(f"invalid --security-opt {text!r}: supported are {SECURITY_OPTS}")
        out = [o for o in out if o.partition("=")[0] != opt.partition("=")[0]] + [opt]
    return tuple(out)


def _seccomp_profile(arg, dir_fd):
    """A profile given inline (JSON, as records keep it) or as a file: checked, then
    kept as one line of JSON."""
    from fastbox import seccomp_profile
    if arg.lstrip().startswith("{"):
        return seccomp_profile.compact(seccomp_profile.load(arg, "(inline)"))
    opener = None if dir_fd is None else (lambda p, flags: os.open(p, flags, dir_fd=dir_fd))
    try:
        with open(arg, "rb", opener=opener) as f:
            text = f.read()
    except OSError as e:
        raise SpecError(f"cannot read seccomp profile {arg!r}: {e.strerror}") from None
    return seccomp_profile.compact(seccomp_profile.load(text, repr(arg)))


def _abs_or_none(value, flag):
    if value in (None, ""):
        return None
    if not str(value).startswith("/"):
        raise SpecError(f"invalid {flag} {value!r}: the path must be absolute")
    return os.path.normpath(value)


def _hostname(value):
    if value in (None, ""):
        return None
    if len(value) > 64 or not all(c in _ALNUM or c in "-." for c in value):
        raise SpecError(f"invalid --hostname {value!r}: letters, digits, '-' and '.', at most 64")
    return value


def _network_options(network, publish, publish_all, expose, dns, add_host, aliases, ip=None,
                     ip6=None, dns_search=(), dns_option=(), sysctls=(), mac_address=None):
    """--network and the flags that need a network of the container's own
    (fastbox.network.options parses them). --ip and --ip6 are checked against the
    network's subnets when its addresses are taken."""
    from fastbox.network import options
    mode = options.network_mode(network)
    out = dict(network=mode, publish=options.parse_publish(publish),
               publish_all=bool(publish_all), expose=options.parse_expose(expose),
               dns=options.parse_dns(dns), add_host=options.parse_add_host(add_host),
               network_alias=options.parse_aliases(aliases),
               ip=options.parse_ip(ip, "--ip") if ip not in (None, "") else None,
               ip6=options.parse_ip6(ip6, "--ip6") if ip6 not in (None, "") else None,
               mac_address=options.parse_mac(mac_address) if mac_address not in (None, "") else None,
               dns_search=options.parse_dns_search(dns_search),
               dns_option=options.parse_dns_option(dns_option),
               sysctls=options.parse_sysctls(sysctls))
    shared = [k for k, _ in out["sysctls"] if k.startswith("net.")]
    if shared and (mode == "host" or mode.startswith("container:")):
        raise SpecError(f"sysctl '{shared[0]}' is not allowed: the container shares another's "
                        f"network namespace (--network {mode})")
    if (out["ip"] or out["ip6"]) and (mode == "bridge" or not options.own_endpoint(mode)):
        raise SpecError("user specified IP address is supported on user defined networks only")
    if out["mac_address"] and not options.own_endpoint(mode):
        raise SpecError(f"conflicting options: --mac-address and --network {mode}")
    if (out["publish"] or publish_all) and mode.startswith("container:"):
        raise SpecError("conflicting options: port publishing and the container type network mode")
    if (out["publish"] or publish_all) and not options.own_endpoint(mode):
        raise SpecError(f"-p and -P need a network with addresses (bridge or a user network), "
                        f"not --network {mode}")
    if out["network_alias"] and mode in ("bridge", "none", "host"):
        raise SpecError("--network-alias is only for user-defined networks")
    return out


def _joined_conflicts(spec):
    """--network container:NAME shares NAME's network and its hostname and /etc files:
    what would set them is refused, in Docker's words."""
    for flag, value in (("hostname", spec.hostname), ("dns", spec.dns or spec.dns_search or
                                                      spec.dns_option),
                        ("custom host-to-IP mapping", spec.add_host),
                        ("port exposing", spec.expose), ("network-scoped alias", spec.network_alias)):
        if value:
            raise SpecError(f"conflicting options: {flag} and the network mode")


def _name(value):
    if value in (None, ""):
        return None
    ok = value[0] in _ALNUM and all(c in _ALNUM or c in "_.-" for c in value)
    if not ok:
        raise SpecError(f"invalid container name {value!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return value
