"""The `fastbox` console script. `run` goes straight to its own parser; everything else
loads the typer app (whose import alone costs tens of milliseconds)."""
import os
import sys


def main():
    args = sys.argv[1:]
    if args and args[0] in ("run", "exec"):
        # One container, then exit: the cyclic GC would only rescan the objects that the
        # imports just made (~0.2-0.3 ms of a start here). Reference counting still frees.
        import gc
        gc.disable()
        _begin()
        code = _run_or_exec(args)
        # Skip interpreter teardown (module GC, atexit): nothing is left to flush but stdio.
        flush_stdio()
        os._exit(code)
    _begin()
    from fastbox.cli.app import main as app_main
    app_main()


def _begin():
    """Before any command: what a dead fastbox left is swept (fastbox.state.owners)."""
    from fastbox.state import owners
    owners.begin()


def command(args):
    """Runs one command in this process and returns its exit code, atexit work done: for
    the engine's workers (fastbox/engine/forkserver.py), which then exit at once."""
    _begin()
    if args and args[0] in ("run", "exec"):
        return _run_or_exec(args)
    from fastbox.cli.app import main as app_main
    try:
        app_main(args)
        code = 0
    except SystemExit as e:
        code = _exit_status(e.code)
    import atexit
    atexit._run_exitfuncs()
    return code


def _run_or_exec(args):
    if args[0] == "run":
        from fastbox.cli.run_command import main as run_main
        return run_main(args[1:])
    from fastbox.cli.exec_command import main as exec_main
    return exec_main(args[1:])


def _exit_status(code):
    """What sys.exit(code) makes the process's exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def flush_stdio():
    """Flush what stdio we have (None when started with fd 1 or 2 closed)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
