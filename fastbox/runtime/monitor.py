"""Starting a container under its own fastbox-monitor (csrc/monitor/fb_monitor.c), so
that it outlives the process that started it: the monitor holds its stdio (or the
master of its terminal), writes the log, records the exit code (and whether the OOM
killer struck), removes its cgroups."""
import os

from fastbox import _core
from fastbox.runtime import cgroup, container, spare
from fastbox.runtime.stdio import devnull

MONITOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "libexec", "fastbox-monitor")


def start_detached(cid, spec, image, store, tty=False, log_config=None, keep_fds=(),
                   interactive=False, client_fd=-1):
    """Returns (pid, monitor_pid, times, cgroup dirs) once the program has been exec'd.
    tty: True, or the terminal's (rows, columns) from the start.
    log_config: Docker's LogConfig ({"Type": "json-file", "Config": {"max-size": ...}}).
    keep_fds: more fds the monitor inherits (the janitor's entry lock, which it then
    holds for as long as it lives). client_fd: a socket attached from the start (the
    foreground `run -it`, fastbox/cli/attached_run.py)."""
    from fastbox import log_options
    max_size, max_file = log_options.limits(log_config or {})
    ours, stdio, keep, mon_io = _pipes(tty, interactive)
    keep = keep + [fd for fd in keep_fds if fd >= 0]
    console = None
    # a namespace (with its veth, for a bridge) made ahead of time, as a foreground
    # start takes: the engine keeps one ready
    sp = spare.netns(spec)
    try:
        plan, cg, _, argv = container.prepare(cid, spec, image, stdio, tty,
                                              netns_fd=None if sp is None else sp.fd, spare=sp)
        if tty:
            console = container.Console(plan, tty)
        monitor_argv = [MONITOR, "--log", store.log_path(cid), "--exit", store.exit_path(cid),
                        "--started", store.started_path(cid), *mon_io,
                        "--attach", store.container_dir(cid)]
        if client_fd >= 0:
            monitor_argv += ["--client", str(client_fd)]
            keep.append(client_fd)
        if max_size:
            monitor_argv += ["--log-max-size", str(max_size), "--log-max-file", str(max_file)]
        for d in cg.dirs:
            monitor_argv += ["--cgroup", d]
        if cg.oom_file:  # read before the cgroups go: State.OOMKilled
            monitor_argv += ["--oom-file", cg.oom_file]
        if plan.endpoint is not None:
            from fastbox.runtime import network
            monitor_argv += network.monitor_release_args(plan.endpoint)
            from fastbox.network import endpoints  # and the networks connected to it
            monitor_argv += ["--net-extras", endpoints.endpoints_dir()]
        if spec.remove:
            monitor_argv += _removal(cid, spec, store)
        elif spec.restart != "no":
            monitor_argv += _then_python("fastbox.restarter", cid, store.root)
        try:
            pid, monitor_pid, times = _core.spawn_detached(
                plan, monitor_argv, keep, console.ours.fileno() if console else -1)
        except _core.CoreError as e:
            cgroup.remove(cg.dirs)
            container.network_failed(plan, cid)
            raise container.start_error(e, argv) from None
        finally:
            if plan.own_netns_fd is not None:
                os.close(plan.own_netns_fd)
        if plan.endpoint is not None:
            from fastbox.runtime import network
            network.owned_by(plan.endpoint, pid)
    finally:
        for fd in ours:
            os.close(fd)
        if console:
            console.sent()
            console.ours.close()
        if sp is not None:  # the container holds it now, or it dies unused
            sp.close()
    spare.started(spec)
    return pid, monitor_pid, times, cg.dirs


def _pipes(tty, interactive=False):
    """(fds we close afterwards, the container's 0-2, fds the monitor keeps, its
    options). With a terminal, the core makes it in the container instead. interactive
    (`run -d -i`): the container's stdin is a pipe whose other end the monitor keeps,
    for `fastbox attach` to write to."""
    null = devnull()
    if tty:
        return [], [null, null, null], [], []
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ours, stdin, keep, opts = [out_r, out_w, err_r, err_w], null, [out_r, err_r], []
    if interactive:
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        ours, stdin, keep, opts = ours + [in_r, in_w], in_r, keep + [in_w], ["--stdin", str(in_w)]
    return (ours, [stdin, out_w, err_w], keep,
            ["--stdout", str(out_r), "--stderr", str(err_r), *opts])


def _removal(cid, spec, store):
    """--rm: the monitor deletes the record, its files and the name at exit (the log's
    rotated files too: it knows how many there are)."""
    files = ["state.json", "state.json.tmp", "container.log", "exit.json.tmp", "started.json",
             "started.json.tmp", "started.json.new", "networks"]
    args = ["--lock", os.path.join(store.container_dir(cid), "lock"), "--names", store.names,
            "--id", cid]
    for name in files:
        args += ["--remove", os.path.join(store.container_dir(cid), name)]
    args += ["--remove-dir", store.container_dir(cid)]
    if any(v.anonymous for v in spec.volumes):  # and its anonymous volumes, as Docker's
        from fastbox import config
        from fastbox.spec import spec_to_dict
        args += _then_python("fastbox.volumes.store", config.root(),
                             *spec_to_dict(spec)["volumes"])
    return args


def _then_python(module, *args):
    """The monitor's --then: once the container has exited and its exit is recorded (or,
    with --rm, its record removed), it execs `python -I -m module args...`."""
    import sys
    out = ["--then", sys.executable]
    for a in ("-I", "-m", module, *args):
        out += ["--then-arg", a]
    return out
