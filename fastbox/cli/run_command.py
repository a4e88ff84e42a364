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


def main(args):
    """Returns the process exit code: the container's own, or Docker's 125/126/127."""
    try:
        opts, image, command = run_args.parse(args)
        if opts.pop("help"):
            print(run_args.help_text())
            return 0
        if image is None:
            raise SpecError("'fastbox run' requires at least 1 argument: an image\n" + run_args.USAGE)
        show_timings = opts.pop("timings")
        interactive = opts.pop("interactive")
        detach, tty = opts.pop("detach"), opts.pop("tty")
        if opts["entrypoint"] is not None:
            opts["entrypoint"] = [opts["entrypoint"]] if opts["entrypoint"] else []
        given = {k: v for k, v in opts.items() if v is not None and v != []}
        if not detach and given.get("network", "none") == "none":
            from fastbox.runtime import spare
            spare.make_early()
        if detach:
            from fastbox import containers
            print(containers.run(image, command, tty=tty, **given).id)
            return 0
        if tty:
            from fastbox.cli import tty_session
            return tty_session.run(image, command, interactive, given)
        result = _run(image, command, interactive, given)
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        return e.exit_code
    if show_timings:
        _print_timings(result.timings)
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


def _print_timings(t):
    print("phase          ms since start", file=sys.stderr)
    for key in PHASE_ORDER:
        if key in t:
            print(f"  {key:<12} {t[key]:8.3f}", file=sys.stderr)
