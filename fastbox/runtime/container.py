"""Running one container: spec + image -> plan -> the C core -> wait -> teardown.

The start path is timed phase by phase; the core's CLOCK_MONOTONIC stamps and ours are
reported together as milliseconds since run() was called.
"""
import os
import time

from fastbox import _core, capabilities
from fastbox.errors import (CommandNotExecutable, CommandNotFound, ContainerStateError, SpecError,
                            StartError)
from fastbox.runtime import cgroup, devices, rootfs, seccomp, spare, user

# CLONE_NEW* (linux/sched.h)
NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWPID, NEWNET = (0x00020000, 0x02000000, 0x04000000,
                                                    0x08000000, 0x20000000, 0x40000000)
# Docker's default capabilities (fastbox.capabilities.DEFAULT).
DEFAULT_CAPS = capabilities.DEFAULT
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Plan:
    """The flat description fastbox._core.spawn reads (csrc/fb_plan.h)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class Started:
    """A running container as the runtime knows it, until it is waited for."""

    __slots__ = ("id", "name", "pid", "pidfd", "cgroups", "container_dir", "times", "t0",
                 "terminal", "exit_code", "record", "names", "oom_file", "oom_killed", "endpoint",
                 "pooled_netns", "release", "unnamed")

    def __init__(self):
        self.terminal = self.exit_code = self.record = self.names = self.oom_file = None
        self.endpoint, self.pooled_netns, self.release = None, False, None
        self.oom_killed = self.unnamed = False


class Console:
    """The socket over which the core hands back the master of a terminal it made in
    the container's own devpts (so the program's ttyname() resolves inside)."""

    def __init__(self, plan, tty=True):
        """tty: True, or the terminal's (rows, columns) from the start."""
        import socket
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        plan.console_fd = self.theirs.fileno()
        if isinstance(tty, tuple):
            plan.console_size = tty

    def sent(self):
        self.theirs.close()

    def receive(self):
        """The terminal's master fd (ours to close)."""
        import socket
        try:
            _, fds, _, _ = socket.recv_fds(self.ours, 1, 1)
        finally:
            self.ours.close()
        if not fds:
            raise StartError("the container did not hand back its terminal", "stdio", 0)
        return fds[0]


def new_id():
    return os.urandom(32).hex()


def prepare(cid, spec, image, stdio=(-1, -1, -1), tty=False, cg=None, netns_fd=None, spare=None,
            late_spare=False, unnamed=False):
    """The core's plan for this container, with the cgroup and rootfs plans it uses
    (cg, netns_fd: a pool's ready-made cgroups and network namespace instead of the
    container's own). late_spare: a bridge container's spare namespace is taken here,
    just before its network is set up (plan.spare, which the caller closes). unnamed: a
    new id that no record holds (a --rm run's), so no command can have connected it to a
    network or left an endpoint of an earlier run: neither is looked for."""
    # first: a profile libseccomp refuses fails the start before anything is made
    prog = seccomp.filter_for(spec.seccomp_profile, spec.capability_mask)
    ident = user.resolve(spec.user or image.user, image.layer_dirs)
    argv = _argv(spec, image)
    hostname = _hostname(cid, spec)
    env = _env(spec, image, ident, hostname, tty)
    nodes = devices.nodes_for(spec) if spec.devices else ()
    cg = cg or cgroup.plan(cid, spec.memory, spec.cpus, spec.pids_limit,
                           device_rules=devices.rules_for(spec, nodes), **spec.cgroup_limits)
    fs = rootfs.plan(cid, image.layer_dirs, spec, ephemeral=spec.remove)
    plan = _plan(spec, image, ident, argv, env, cg, fs, stdio, hostname)
    plan.seccomp_filter = prog
    plan.dev_prog_fd = -1 if cg.dev_prog is None else cg.dev_prog
    plan.devnodes = nodes
    if spec.init or spec.ulimits:
        _init_and_ulimits(plan, spec)
    # an ephemeral container that no command can reach: its /etc files go into its own
    # upper layer (no binds, nothing on the host), unless its network has names, or its
    # root is read-only (Docker's bound files stay writable)
    in_layer = unnamed and fs.scratch is not None and not spec.read_only and fs.etc_is_dir
    _network(plan, cid, spec, hostname, netns_fd, spare, image.exposed, late_spare, unnamed,
             in_layer)
    if not plan.etc_bound:
        _standalone_etc(plan, fs, spec, hostname)
    return plan, cg, fs, argv


def _standalone_etc(plan, fs, spec, hostname):
    """/etc/hosts, hostname (and resolv.conf) of a container with no network files to
    bind (none, host, or joining one that has none), as Docker's: an ephemeral one's are
    written into its upper layer by the child (no mount, nothing left on the host; with
    --read-only, read-only then); another's are kept in its own directory and bound over
    the init layer's."""
    if not fs.etc_is_dir:  # an image whose /etc is a link: left alone
        return
    from fastbox.network import files
    texts = files.standalone(spec, hostname)
    if fs.scratch:
        plan.etc_files = texts
        return
    plan.mounts = [(rootfs.BIND_FILE, src, dst, False, None)
                   for src, dst in files.write_into(fs.container_dir, texts)] + list(plan.mounts)


def _network(plan, cid, spec, hostname, netns_fd, spare=None, exposed=(), late_spare=False,
             unnamed=False, in_layer=False):
    """The container's network namespace: made ahead of time (netns_fd: a spare or a
    pool's) or by the clone; for bridge and user networks, also its endpoint (veth,
    address, route, ports, /etc files), made before the clone into that namespace.
    plan.endpoint and plan.own_netns_fd (ours to close) are set for the caller."""
    from fastbox.runtime import spare as spares  # (the argument `spare` is a Spare)
    plan.endpoint, plan.own_netns_fd, plan.spare = None, None, None
    plan.etc_bound = False  # whether the network binds the /etc files (else: _standalone_etc)
    mode = spec.network
    if mode == "host":
        return
    if mode.startswith("container:"):
        from fastbox.runtime import network
        plan.ns_flags &= ~NEWNET
        fd, binds = network.container_netns(mode[len("container:"):])
        plan.join_netns_fd, plan.loopback_up, plan.own_netns_fd = fd, False, fd
        plan.mounts = [(rootfs.BIND_FILE, src, dst, False, None) for src, dst in binds] + list(plan.mounts)
        plan.etc_bound = bool(binds)
        return
    endpoint = mode != "none"
    if endpoint and netns_fd is not None and spare is None:
        from fastbox.runtime import network
        ep = network.pooled(netns_fd)
        if ep is not None:  # a pool's namespace, its network made once
            plan.ns_flags &= ~NEWNET
            plan.join_netns_fd, plan.loopback_up = netns_fd, False
            plan.mounts = [(rootfs.BIND_FILE, src, dst, False, None)
                           for src, dst in ep.binds] + list(plan.mounts)
            plan.etc_bound = True
            return
    if late_spare and endpoint and netns_fd is None:
        # as late as can be: the worker makes it (its veth above all) while we get here
        spare = plan.spare = spares.netns(spec)
        netns_fd = spare.fd if spare is not None else None
    found = None
    if spare is not None and spare.host_if:
        from fastbox.runtime import network
        found = network.bridge_of(spec)
        if not network.fits(spare, found):  # its veth is on another bridge
            netns_fd = spare = None
    if netns_fd is None and endpoint:
        from fastbox.runtime import network
        netns_fd = plan.own_netns_fd = network.new_netns()
    if netns_fd is None:
        return
    plan.ns_flags &= ~NEWNET
    plan.join_netns_fd, plan.loopback_up = netns_fd, False
    if endpoint:
        from fastbox.runtime import network
        try:
            plan.endpoint = network.setup(cid, spec, hostname, netns_fd, spare, exposed, found,
                                          unnamed, in_layer)
            if not unnamed:
                _connected_networks(plan, cid, spec, hostname, netns_fd)
            if late_spare:
                spares.network_ready()
        except BaseException:
            if plan.own_netns_fd is not None:
                os.close(plan.own_netns_fd)
            if plan.spare is not None:
                plan.spare.close()
            raise
        plan.etc_bound = True
        if plan.endpoint.etc_texts is not None:
            plan.etc_files = plan.endpoint.etc_texts
            return
        plan.mounts = [(rootfs.BIND_FILE, src, dst, False, None)
                       for src, dst in plan.endpoint.binds] + list(plan.mounts)


def _connected_networks(plan, cid, spec, hostname, netns_fd):
    """The networks `fastbox network connect` added to a created or stopped container:
    one stat when there are none."""
    from fastbox.network import endpoints
    if endpoints.has_connections(cid):
        from fastbox.network import connect
        try:
            connect.attach_recorded(cid, spec, hostname, netns_fd, plan.endpoint)
        except BaseException:
            from fastbox.runtime import network
            network.release(cid)
            raise


def start(cid, spec, image, stdio=(-1, -1, -1), t0=None, tty=False, cg=None, netns_fd=None,
          unnamed=False):
    """Build and start the container as our child; returns once its program has been
    exec'd. unnamed: cid is new and no record holds it (prepare's)."""
    # a `none` container's namespace now; a bridge one's in prepare (late_spare)
    sp = spare.netns(spec) if netns_fd is None and spec.network == "none" else None
    try:
        s = _start(cid, spec, image, stdio, t0, tty, cg, netns_fd if sp is None else sp.fd, sp,
                   unnamed)
        s.pooled_netns, s.unnamed = netns_fd is not None, unnamed
    finally:
        if sp is not None:  # the container holds it now, or it dies unused
            sp.close()
    spare.started(spec, foreground=True)
    if s.endpoint is not None and not s.pooled_netns:
        # made while the program runs (on another CPU): only the core's call is left at exit
        from fastbox.runtime import network
        s.release = network.prepared_release(s.endpoint)
    return s


def _start(cid, spec, image, stdio, t0, tty, cg, netns_fd, sp=None, unnamed=False):
    plan, cg, fs, argv = prepare(cid, spec, image, stdio, tty, cg, netns_fd, sp, late_spare=True,
                                 unnamed=unnamed)
    console = Console(plan, tty) if tty else None
    try:
        pid, pidfd, times = _core.spawn(plan)
    except _core.CoreError as e:
        cgroup.remove(cg.dirs)
        if console:
            console.ours.close()
        network_failed(plan, cid)
        raise start_error(e, argv) from None
    finally:
        if console:
            console.sent()
        if plan.own_netns_fd is not None:
            os.close(plan.own_netns_fd)
        if plan.spare is not None:  # the container holds it now, or it dies unused
            plan.spare.close()
    # The endpoint stays ours: the container dies with us (its owner pidfd), and we
    # release it at its exit. A detached one is handed to its init (monitor.py).
    s = Started()
    s.id, s.name, s.pid, s.pidfd = cid, spec.name, pid, pidfd
    s.terminal = console.receive() if console else None
    s.cgroups, s.container_dir, s.times, s.t0 = cg.dirs, fs.container_dir, times, t0
    s.oom_file = cg.oom_file
    s.endpoint = plan.endpoint
    return s


def network_failed(plan, cid):
    """The start failed after its endpoint was made: undo it."""
    if plan.endpoint is not None:
        from fastbox.runtime import network
        network.release(cid)


def _init_and_ulimits(plan, spec):
    """--init: the program runs under fastbox-init as PID 1; --ulimit: the rlimits the
    child sets before exec."""
    if spec.init:
        from fastbox.runtime import init_binary
        plan.argv = init_binary.argv(plan.argv)
        plan.init_fd = init_binary.fd()
    if spec.ulimits:
        import resource
        plan.rlimits = [(getattr(resource, "RLIMIT_" + name.upper()), soft, hard)
                        for name, soft, hard in spec.ulimits]


def wait(s):
    """Wait for the container's program to exit; returns Docker's exit code."""
    try:
        _, status = os.waitpid(s.pid, 0)
    except ChildProcessError:
        raise ContainerStateError(f"container {s.id[:12]} is not a child of this process") from None
    if s.pidfd >= 0:
        os.close(s.pidfd)
        s.pidfd = -1
    s.exit_code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return s.exit_code


def supervise(s, io, on_terminal=None, on_start=None):
    """Hand out the terminal and the pid, collect captured output, wait. Whatever
    interrupts that (an exception in a callback, KeyboardInterrupt) kills the container
    first. Returns (exit code, stdout, stderr)."""
    try:
        if on_terminal and s.terminal is not None:
            on_terminal(s.terminal)
        if on_start:
            on_start(s.pid)
        out, err = io.collect(s.pidfd)
        return wait(s), out, err
    except BaseException:
        kill_and_wait(s)
        raise
    finally:
        if s.terminal is not None:
            os.close(s.terminal)
            s.terminal = None


def kill_and_wait(s):
    """SIGKILL the container's init (the kernel then kills the rest of its pid
    namespace) and reap it; returns its exit code."""
    try:
        os.kill(s.pid, 9)
    except ProcessLookupError:
        pass
    return wait(s)


def teardown(s):
    """Remove the container's cgroups; the mount namespace went with its last process.
    First, whether the OOM killer struck (Docker's State.OOMKilled): read when a record
    keeps it or the program died of SIGKILL, as the OOM killer's victims do."""
    spare.exited()  # the next spare is made while this one is torn down
    if s.oom_file and (s.record is not None or s.exit_code == 137):
        s.oom_killed = cgroup.oom_killed(s.oom_file)
    if s.endpoint is not None:  # Docker frees the address and ports when it stops
        from fastbox.runtime import network
        # its namespace (ours, or a spare) dies with it and takes the veth along; a
        # pool's lives on, so its veth is deleted
        network.release(s.id, unplug=s.pooled_netns, ep=s.endpoint, prepared=s.release,
                        connected=not s.unnamed)
        s.endpoint = s.release = None
    cgroup.remove(s.cgroups)


def _argv(spec, image):
    """Docker's rule: --entrypoint replaces the image's and drops its Cmd; a command
    replaces the image's Cmd."""
    entry = spec.entrypoint if spec.entrypoint is not None else image.entrypoint
    if spec.command is not None and (spec.command or spec.entrypoint is not None):
        cmd = spec.command
    elif spec.entrypoint is not None:
        cmd = ()
    else:
        cmd = image.cmd
    argv = tuple(entry) + tuple(cmd)
    if not argv:
        raise SpecError("no command specified: the image has no Cmd or Entrypoint; give one")
    return argv


def _hostname(cid, spec):
    if spec.hostname:
        return spec.hostname
    if spec.network.startswith("container:"):  # as Docker: the one whose network it joins
        return _joined_hostname(spec.network[len("container:"):]) or cid[:12]
    return os.uname().nodename if spec.network == "host" else cid[:12]


def _joined_hostname(ref):
    """The hostname of the container ref (its /etc/hostname, which the joiner shares), or
    None if it has none to share (the start then fails on joining it)."""
    from fastbox import containers
    from fastbox.errors import FastboxError
    try:
        c = containers.get(ref)
    except FastboxError:
        return None
    from fastbox.network import files
    try:
        with open(dict((dst, src) for src, dst in files.shared(c.id))["/etc/hostname"]) as f:
            return f.read().strip() or None
    except (OSError, KeyError):
        spec = c.attrs.get("spec") or {}
        if spec.get("hostname"):
            return spec["hostname"]
        return os.uname().nodename if spec.get("network") == "host" else c.id[:12]


def _env(spec, image, ident, hostname, tty=False):
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        env["TERM"] = "xterm"
    for item in tuple(image.env) + tuple(spec.env):
        k, _, v = item.partition("=")
        env[k] = v
    env.setdefault("HOME", ident.home)
    return env


def _plan(spec, image, ident, argv, env, cg, fs, stdio, hostname):
    ns = NEWNS | NEWUTS | NEWIPC | NEWPID
    if spec.network != "host":
        ns |= NEWNET
    if not cg.unshare_ns:  # v2: placed at clone time, so the namespace can start there too
        ns |= NEWCGROUP
    caps = spec.capability_mask
    # --privileged: every capability, no seccomp filter, nothing of /proc masked or made
    # read-only (Docker's meaning); the rest of the container stays as it is.
    hidden = not spec.privileged
    return Plan(
        ns_flags=ns, lowers=fs.lowers, scratch=fs.scratch, scratch_data=fs.scratch_data,
        upper=fs.upper, work=fs.work, rootfs=fs.rootfs, overlay_opts=fs.overlay_opts,
        readonly_root=spec.read_only, mounts=fs.mounts,
        masked=rootfs.MASKED_FILES if hidden else (),
        masked_dirs=rootfs.MASKED_DIRS if hidden else (),
        readonly_paths=rootfs.READONLY if hidden else (), mount_cgroup2=cg.mount_cgroup2,
        cgroup_v1_mounts=cg.v1_mounts,
        cg_mkdirs=cg.mkdirs, cg_writes=cg.writes, cg_join=cg.join, cg_into=cg.into,
        unshare_cgroupns=cg.unshare_ns, hostname=hostname, argv=argv,
        envp=[f"{k}={v}" for k, v in env.items()], path=env.get("PATH", DEFAULT_PATH),
        cwd=spec.workdir or image.working_dir or "/", uid=ident.uid, gid=ident.gid,
        groups=ident.groups, caps=caps, no_new_privs=spec.no_new_privileges,
        seccomp_filter=None, loopback_up=spec.network != "host", stdio=list(stdio),
        sysctls=[("/proc/sys/" + k.replace(".", "/"), v) for k, v in spec.sysctls])


def start_error(e, argv):
    if e.phase == "exec":
        if e.errno == 2:
            where = " in $PATH" if "/" not in argv[0] else ""
            return CommandNotFound(f'exec: "{argv[0]}": executable file not found{where}',
                                   e.phase, e.errno)
        return CommandNotExecutable(f'exec: "{argv[0]}": {os.strerror(e.errno).lower()}',
                                    e.phase, e.errno)
    return StartError(f"failed to start container ({e.phase}): {e.what}: {os.strerror(e.errno)}",
                      e.phase, e.errno)


def timings(s, t_exit, t_end):
    """Milliseconds since run() began for each phase, core stamps included."""
    out = {k: (v - s.t0) / 1e6 for k, v in s.times.items()}
    out["exited"] = (t_exit - s.t0) / 1e6
    out["total"] = (t_end - s.t0) / 1e6
    return out


def now():
    return time.monotonic_ns()
