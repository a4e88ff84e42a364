"""Parsing `fastbox run` arguments the way Docker does: options up to the image, then the
command verbatim. Hand-written and table-driven, because `run` is the latency-critical
command and importing typer/click alone costs ~40 ms."""
from fastbox.errors import SpecError

# (names, destination, kind, help); kind: flag | value | list
OPTIONS = (
    (("--rm",), "remove", "flag", "Remove the container (and its writable layer) when it exits"),
    (("-e", "--env"), "env", "list", "Set an environment variable (KEY=VALUE, or KEY to copy ours)"),
    (("--env-file",), "env_file", "list", "Read environment variables from a file"),
    (("-w", "--workdir"), "workdir", "value", "Working directory inside the container"),
    (("-u", "--user"), "user", "value", "Run as USER[:GROUP] (names or numeric ids)"),
    (("-h", "--hostname"), "hostname", "value", "Container hostname"),
    (("-m", "--memory"), "memory", "value", "Memory limit (e.g. 256m, 1g); OOM kills inside"),
    (("--cpus",), "cpus", "value", "Number of CPUs (quota over a 100 ms period)"),
    (("--pids-limit",), "pids_limit", "value", "Maximum number of processes (-1: unlimited)"),
    (("--memory-swap",), "memory_swap", "value",
     "Memory plus swap (-1: unlimited swap; default: twice --memory)"),
    (("--memory-reservation",), "memory_reservation", "value", "Soft memory limit (e.g. 64m)"),
    (("-c", "--cpu-shares"), "cpu_shares", "value", "Relative CPU weight (default 1024)"),
    (("--cpu-period",), "cpu_period", "value", "CPU CFS period in microseconds"),
    (("--cpu-quota",), "cpu_quota", "value", "CPU CFS quota in microseconds per period"),
    (("--cpuset-cpus",), "cpuset_cpus", "value", "CPUs the container may run on (0-3, 0,1)"),
    (("--cpuset-mems",), "cpuset_mems", "value", "Memory nodes the container may use (0-3, 0,1)"),
    (("-v", "--volume"), "volumes", "list", "Bind mount /host/path:/container/path[:ro]"),
    (("--tmpfs",), "tmpfs", "list", "Mount a tmpfs at /path[:options]"),
    (("--read-only",), "read_only", "flag", "Mount the container's root filesystem read-only"),
    (("--network", "--net"), "network", "value",
     "Network: bridge (default: fastbox0), none (lo only), host, container:NAME, or a network's name"),
    (("-p", "--publish"), "publish", "list",
     "Publish a port: [HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], ranges allowed"),
    (("-P", "--publish-all"), "publish_all", "flag", "Publish every exposed port on a random host port"),
    (("--expose",), "expose", "list", "Expose a port or a range (for -P)"),
    (("--dns",), "dns", "list", "A DNS server for /etc/resolv.conf"),
    (("--dns-search",), "dns_search", "list", "A DNS search domain for /etc/resolv.conf (. for none)"),
    (("--dns-option", "--dns-opt"), "dns_option", "list", "A resolv.conf option (ndots:2, rotate)"),
    (("--add-host",), "add_host", "list", "Add NAME:IP to /etc/hosts"),
    (("--network-alias",), "network_alias", "list", "Another name on a user-defined network"),
    (("--ip",), "ip", "value", "Its IPv4 address on a user-defined network"),
    (("--ip6",), "ip6", "value", "Its IPv6 address on a user-defined --ipv6 network"),
    (("--mac-address",), "mac_address", "value", "Its eth0's MAC address (92:d0:c6:0a:29:33)"),
    (("--sysctl",), "sysctls", "list",
     "A namespaced sysctl: net.*, fs.mqueue.*, kernel.shm*|msg*|sem, kernel.domainname"),
    (("--entrypoint",), "entrypoint", "value", "Override the image's entrypoint"),
    (("--name",), "name", "value", "Name the container"),
    (("--storage-opt",), "storage_opts", "list", "Overlay option: volatile, metacopy=on"),
    (("--security-opt",), "security_opt", "list",
     "seccomp=PROFILE.json|unconfined (Docker's format; default: Docker's profile), "
     "no-new-privileges[=true|false] (default: true), devices=unconfined (no device control)"),
    (("--cap-add",), "cap_add", "list", "Add a capability (SYS_ADMIN, CAP_NET_ADMIN, ALL)"),
    (("--cap-drop",), "cap_drop", "list", "Drop a capability (or ALL)"),
    (("--privileged",), "privileged", "flag",
     "Every capability, no seccomp filter, /proc unmasked, every device"),
    (("--device",), "devices", "list",
     "Add a host device: HOST[:CONTAINER][:PERMISSIONS], e.g. /dev/fuse, /dev/sdb:/dev/xvdb:r"),
    (("--device-cgroup-rule",), "device_cgroup_rules", "list",
     "Allow devices in the device controller: 'c 10:229 rwm' (TYPE MAJOR:MINOR ACCESS)"),
    (("--mount",), "mounts", "list",
     "type=bind|volume|tmpfs,source=SRC,target=DST[,readonly][,tmpfs-size=N][,tmpfs-mode=M]"),
    (("--shm-size",), "shm_size", "value", "Size of /dev/shm (default 64m)"),
    (("--ulimit",), "ulimits", "list", "NAME=SOFT[:HARD], e.g. nofile=1024:2048 (within ours)"),
    (("-l", "--label"), "labels", "list", "Set metadata: KEY=VALUE"),
    (("--label-file",), "label_file", "list", "Read labels from a file of KEY=VALUE lines"),
    (("--restart",), "restart", "value",
     "no | on-failure[:N] | always | unless-stopped (-d: the monitor restarts it)"),
    (("--init",), "init", "flag", "Run a small init as PID 1: it reaps zombies and forwards signals"),
    (("--stop-signal",), "stop_signal", "value", "Signal that stops the container (default SIGTERM)"),
    (("--stop-timeout",), "stop_timeout", "value", "Seconds `stop` waits before SIGKILL (default 10)"),
    (("--pull",), "pull", "value", "Pull the image: missing (default), always, never"),
    (("--cidfile",), "cidfile", "value", "Write the container's id to this file"),
    (("--log-opt",), "log_opts", "list", "Log option of -d: max-size=SIZE (10k, 10m), max-file=N"),
    (("-d", "--detach"), "detach", "flag", "Run in the background under a monitor; print the id"),
    (("-i", "--interactive"), "interactive", "flag", "Keep stdin attached"),
    (("--detach-keys",), "detach_keys", "value",
     "Keys that detach from a `run -it` container and leave it running (default ctrl-p,ctrl-q)"),
    (("-t", "--tty"), "tty", "flag", "Give the container a pseudo-terminal"),
    (("--timings",), "timings", "flag", "Print the per-phase start-up timings to stderr"),
    (("--help",), "help", "flag", "Show this message and exit"),
)
_BY_NAME = {name: (dest, kind) for names, dest, kind, _ in OPTIONS for name in names}

USAGE = "Usage: fastbox run [OPTIONS] IMAGE [COMMAND] [ARG...]"


def parse(args):
    """Returns (options dict, image or None, command list or None)."""
    opts = {dest: ([] if kind == "list" else False if kind == "flag" else None)
            for _, dest, kind, _ in OPTIONS}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else _short(arg)
        if name not in _BY_NAME:
            from fastbox.cli.usage_errors import unknown_flag
            raise SpecError(unknown_flag("fastbox run", name, _BY_NAME))
        dest, kind = _BY_NAME[name]
        if kind == "flag":
            opts[dest] = value.lower() not in ("false", "0") if eq else True
            if value and not eq:  # -it, -dit: short flags run together, as Docker takes them
                args = [*args[:i], "-" + value, *args[i + 1:]]
                continue
        else:
            if not eq and not value:
                i += 1
                if i >= len(args):
                    raise SpecError(f"flag needs an argument: {name}")
                value = args[i]
            if kind == "list":
                opts[dest].append(value)
            else:
                opts[dest] = value
        i += 1
    if opts["network"] is None:  # Docker's default for run and create
        opts["network"] = "bridge"
    image = args[i] if i < len(args) else None
    command = list(args[i + 1:]) if image is not None and len(args) > i + 1 else None
    return opts, image, command


def _short(arg):
    """-xVALUE, -x=VALUE, or -xyz (short flags together): (name, "=" or "", the rest)."""
    rest = arg[2:]
    if rest.startswith("="):
        return arg[:2], "=", rest[1:]
    return arg[:2], "", rest


def help_text():
    lines = [USAGE, "", "Run a command in a new container.", "", "Options:"]
    for names, _, kind, text in OPTIONS:
        label = ", ".join(names) + ("" if kind == "flag" else " VALUE")
        lines.append(f"  {label:<28} {text}")
    return "\n".join(lines)
