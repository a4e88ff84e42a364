"""`fastbox run` in the foreground: parse, run, forward signals, print timings."""
import os

# The C module behind `signal`: the wrapper imports enum, ~3 ms on this path.
import _signal as signal

from fastbox.cli import run_args
from fastbox.errors import FastboxError, SpecError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH)
PHASE_ORDER = ("image", "cgroup_ready", "cloned", "child_start", "cgroup", "rootfs", "pivot",
               "mounts", "exec", "execed", "exited", "total")


class Request:
    """A parsed `fastbox run`: the image, the command, RunSpec's options and the modes."""

    __slots__ = ("image", "command", "opts", "help", "timings", "interactive", "detach", "tty",
                 "pull", "cidfile", "detach_keys")

    def __init__(self, args):
        opts, self.image, self.command = run_args.parse(args)
        self.help, self.timings = opts.pop("help"), opts.pop("timings")
        self.interactive, self.detach, self.tty = (opts.pop("interactive"), opts.pop("detach"),
                                                   opts.pop("tty"))
        self.pull, self.cidfile = opts.pop("pull") or "missing", opts.pop("cidfile")
        self.detach_keys = opts.pop("detach_keys")
        if self.image is None and not self.help:
            raise SpecError("'fastbox run' requires at least 1 argument (an image); "
                            "see 'fastbox run --help'")
        if opts["entrypoint"] is not None:
            opts["entrypoint"] = [opts["entrypoint"]] if opts["entrypoint"] else []
        if opts["remove"] and opts["restart"] not in (None, "no"):
            raise SpecError("conflicting options: --restart and --rm")
        self.opts = {k: v for k, v in opts.items() if v is not None and v != []}

    def own_network(self):
        mode = self.opts.get("network", "none")
        return mode != "host" and not mode.startswith("container:")


class Caller:
    """Whoever asked for the run, and what of theirs the container gets: fds 0-2, the
    environment `-e KEY` reads, the directory a relative --env-file is opened from (None:
    our own) and on_start(pid), called once the program runs."""

    __slots__ = ("fds", "environ", "dir_fd", "on_start", "on_detached")

    def __init__(self, fds=(0, 1, 2), environ=None, dir_fd=None, on_start=None,
                 on_detached=None):
        self.fds, self.environ, self.dir_fd, self.on_start = fds, environ, dir_fd, on_start
        # on_detached(code): a detached start has printed the id (the engine answers its
        # client then, and the fds are no longer the caller's to write to)
        self.on_detached = on_detached


def main(args):
    """Returns the process exit code: the container's own, or Docker's 125/126/127."""
    try:
        req = Request(args)
    except FastboxError as e:
        return failed(e, 2)
    attached = req.tty and req.interactive  # under a monitor, as -d: no spare namespace
    if not req.detach and not req.help and not attached and req.own_network():
        from fastbox.runtime import spare
        spare.make_early(req.opts.get("network", "none"))
    if req.tty and req.interactive and not req.detach and not req.help and not os.isatty(0):
        from fastbox.errors import NotATerminal
        return failed(NotATerminal("the input device is not a TTY"), 2)
    if req.tty and not req.detach and not req.help:
        from fastbox.cli import tty_session
        try:  # its signals go to the container too: a SIGTERM must not orphan it
            discard_ports(req.opts, 2)
            _before_create(req, Caller())
            if req.interactive:  # under its monitor, as Docker runs it: ^P^Q detaches
                from fastbox.cli import attached_run
                return attached_run.run(req.image, req.command, _as_caller(req.opts, Caller()),
                                        forward_signals(), req.detach_keys, req.cidfile, Caller())
            return tty_session.run(req.image, req.command, req.interactive,
                                   _as_caller(req.opts, Caller()), forward_signals())
        except FastboxError as e:
            return failed(e, 2)
    foreground = not (req.detach or req.help)
    return execute(req, Caller(on_start=forward_signals() if foreground else None))


def execute(req, caller):
    """A parsed `fastbox run` (not on a terminal) for caller, by the Python CLI or the
    engine: prints help, or starts a detached container and prints its id, or runs one
    in the foreground. Returns the exit code; an error goes to the caller's stderr as
    one line."""
    out, err = caller.fds[1], caller.fds[2]
    try:
        if req.help:
            write(out, run_args.help_text() + "\n")
            return 0
        discard_ports(req.opts, err)
        opts = _as_caller(req.opts, caller)
        _before_create(req, caller)
        if req.detach:
            return _detached(req, opts, caller)
        from fastbox import api
        if req.cidfile:
            from fastbox.runtime.container import new_id
            opts["cid"] = new_id()
            _write_cidfile(req.cidfile, opts["cid"], caller)
        result = api.run(req.image, req.command, stdin=caller.fds[0] if req.interactive else None,
                         stdout=out, stderr=err, on_start=caller.on_start, **opts)
    except FastboxError as e:
        return failed(e, caller.fds[2])  # (-1 once a detached start has answered)
    if req.timings:
        write(err, timings_text(result.timings))
    return result.exit_code


def _detached(req, opts, caller):
    """`run -d`: the id is printed (and the caller told, on_detached) once the program
    runs and its record says so; the monitor's bookkeeping finishes after."""
    from fastbox import containers
    code = [0]

    def started(c):
        try:
            _write_cidfile(req.cidfile, c.id, caller)
            write(caller.fds[1], c.id + "\n")
        except FastboxError as e:
            code[0] = failed(e, caller.fds[2])
        if caller.on_detached is not None:
            caller.on_detached(code[0])

    if caller.on_detached is None:  # nobody to answer early: print once all is recorded
        c = containers.run(req.image, req.command, tty=req.tty, interactive=req.interactive,
                           **opts)
        started(c)
        return code[0]
    containers.run(req.image, req.command, tty=req.tty, interactive=req.interactive,
                   on_started=started, **opts)
    return code[0]


def discard_ports(opts, err):
    """-p/-P with a network that gives the container no address of its own: dropped from
    opts with Docker's warning on err, and the container runs."""
    mode = opts.get("network", "none")
    if mode in ("host", "none") and any([opts.pop("publish", None), opts.pop("publish_all", None)]):
        write(err, f"WARNING: Published ports are discarded when using {mode} network mode\n")


def _before_create(req, caller):
    """--pull (the image pulled first if the policy says so), --cidfile (refused if the
    file exists, as Docker does)."""
    from fastbox.images import pull_policy
    if req.cidfile and os.path.exists(_caller_path(req.cidfile, caller)):
        raise SpecError(f"container ID file found, make sure the other container isn't "
                        f"running or delete {req.cidfile}")
    pull_policy.ensure(req.image, req.pull, caller.fds[2])


def _write_cidfile(path, cid, caller):
    if not path:
        return
    try:
        fd = os.open(_caller_path(path, caller), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise SpecError(f"cannot write --cidfile {path!r}: {e.strerror}") from None
    try:
        os.write(fd, cid.encode())
    finally:
        os.close(fd)


def _caller_path(path, caller):
    """A path the caller gave, relative to its directory (the engine serves callers in
    other directories)."""
    if os.path.isabs(path) or caller.dir_fd is None:
        return path
    return os.path.join(os.readlink(f"/proc/self/fd/{caller.dir_fd}"), path)


def _as_caller(opts, caller):
    """`-e KEY` and an env file's `KEY` lines from the caller's environment, a relative
    --env-file or seccomp profile from its directory."""
    if "label_file" in opts or "volumes" in opts or "mounts" in opts:
        opts = _labels_and_paths(opts, caller)
    if "env" not in opts and "env_file" not in opts and "security_opt" not in opts:
        return opts
    from fastbox.spec import parse_env, parse_security_opts
    opts = dict(opts)
    if "security_opt" in opts:
        opts["security_opt"] = list(parse_security_opts(opts["security_opt"], caller.dir_fd))
    if "env" in opts or "env_file" in opts:
        opts["env"] = list(parse_env(opts.get("env"), opts.pop("env_file", None),
                                     environ=caller.environ, dir_fd=caller.dir_fd))
    return opts


def _labels_and_paths(opts, caller):
    """--label-file's lines before the --label ones; -v ./rel and --mount source=./rel
    from the caller's directory."""
    opts = dict(opts)
    if "label_file" in opts:
        from fastbox.run_options import read_label_file
        lines = [ln for f in opts.pop("label_file") for ln in read_label_file(f, caller.dir_fd)]
        opts["labels"] = lines + list(opts.get("labels") or ())
    if caller.dir_fd is not None:
        here = os.readlink(f"/proc/self/fd/{caller.dir_fd}")
        if "volumes" in opts:
            opts["volumes"] = [os.path.join(here, v) if v.startswith(".") else v
                               for v in opts["volumes"]]
        if "mounts" in opts:
            opts["mounts"] = [m.replace("source=./", f"source={here}/").replace(
                "src=./", f"src={here}/") for m in opts["mounts"]]
    return opts


def forward_signals():
    """Like `docker run`: the signals we get go to the container's process. Handlers go
    in before the start, so a signal arriving meanwhile is kept and delivered then.
    Returns the on_start that aims them."""
    target, pending = [], []

    def on_signal(sig, _frame):
        if target:
            os.kill(target[0], sig)
        else:
            pending.append(sig)

    def on_start(pid):
        target.append(pid)
        for sig in pending:
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    return on_start


def failed(error, err_fd):
    """A FastboxError as Docker reports it: one line on stderr, and its exit code."""
    write(err_fd, f"fastbox: {error}\n")
    return error.exit_code


def write(fd, text):
    """All of text to fd; a closed or vanished reader is not our error."""
    data = text.encode(errors="surrogateescape")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def timings_text(t):
    lines = ["phase          ms since start\n"]
    lines += [f"  {key:<12} {t[key]:8.3f}\n" for key in PHASE_ORDER if key in t]
    return "".join(lines)
