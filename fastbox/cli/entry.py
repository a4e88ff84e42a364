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
    if args and args[0] == "run":
        from fastbox.cli.run_command import main as run_main
        code = run_main(args[1:])
        # Skip interpreter teardown (module GC, atexit): nothing is left to flush but stdio.
        _exit(code)
    if args and args[0] == "exec":
        from fastbox.cli.exec_command import main as exec_main
        code = exec_main(args[1:])
        _exit(code)
    from fastbox.cli.app import main as app_main
    app_main()


def _exit(code):
    """Flush what stdio we have (None when started with fd 1 or 2 closed), then exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
