"""`fastbox run` in the foreground: parse, run, forward signals, print timings."""
import os
import sys

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

    __slots__ = ("image", "command", "opts", "help", "timings", "interactive", "detach", "tty")

    def __init__(self, args):
        opts, self.image, self.command = run_args.parse(args)
        self.help, self.timings = opts.pop("help"), opts.pop("timings")
        self.interactive, self.detach, self.tty = (opts.pop("interactive"), opts.pop("detach"),
                                                   opts.pop("tty"))
        if self.image is None and not self.help:
            raise SpecError("'fastbox run' requires at least 1 argument: an image\n" + run_args.USAGE)
        if opts["entrypoint"] is not None:
            opts["entrypoint"] = [opts["entrypoint"]] if opts["entrypoint"] else []
        self.opts = {k: v for k, v in opts.items() if v is not None and v != []}

    def own_network(self):
        return self.opts.get("network", "none") == "none"


def main(args):
    """Returns the process exit code: the container's own, or Docker's 125/126/127."""
    try:
        req = Request(args)
        if req.help:
            print(run_args.help_text())
            return 0
        if not req.detach and req.own_network():
            from fastbox.runtime import spare
            spare.make_early()
        if req.detach:
            from fastbox import containers
            print(containers.run(req.image, req.command, tty=req.tty, **req.opts).id)
            return 0
        if req.tty:
            from fastbox.cli import tty_session
            return tty_session.run(req.image, req.command, req.interactive, req.opts)
        result = _run(req.image, req.command, req.interactive, req.opts)
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        return e.exit_code
    if req.timings:
        sys.stderr.write(timings_text(result.timings))
    return result.exit_code


def _run(image, command, interactive, opts):
    from fastbox import api
    # Like `docker run`: the signals we get go to the container's process. Handlers go
    # in before the start, so a signal arriving meanwhile is kept and delivered then.
    target, pending = [], []

    def on_signal(sig, _frame):
        if target:
            os.kill(target[0], sig)
        else:
            pending.append(sig)

    def forward_signals(pid):
        target.append(pid)
        for sig in pending:
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    stdin = 0 if interactive else None
    return api.run(image, command, stdin=stdin, stdout=1, stderr=2, on_start=forward_signals,
                   **opts)


def timings_text(t):
    lines = ["phase          ms since start\n"]
    lines += [f"  {key:<12} {t[key]:8.3f}\n" for key in PHASE_ORDER if key in t]
    return "".join(lines)
