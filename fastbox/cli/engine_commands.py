"""`fastbox engine start|stop|status|serve`: the warm engine that serves the C client's
commands. The CLI only starts, finds and stops the engine's process
(fastbox/state/engine_process.py); the engine (fastbox/engine/) runs the CLI's commands,
never the other way round."""
import os
import sys

import typer


def register(app):
    engine = typer.Typer(help="Run the warm engine that makes fastbox commands fast.",
                         no_args_is_help=True)
    for command in (start, stop, status, serve):
        engine.command()(command)
    app.add_typer(engine, name="engine")


def start():
    """Start the engine in the background, to stay until `engine stop` (log:
    $FASTBOX_RUN/engine.log). Without it, the first fastbox command starts one that exits
    when idle (FASTBOX_ENGINE_IDLE seconds, 600 by default)."""
    from fastbox.state import engine_process
    pid, started = engine_process.start()
    print(f"fastbox engine {'started' if started else 'already running'} (pid {pid})")


def stop():
    """Stop the engine, and start none by itself until `engine start`; its running
    containers get SIGTERM, then SIGKILL after 10 s."""
    from fastbox.state import engine_process
    pid = engine_process.stop()
    print(f"fastbox engine stopped (pid {pid})" if pid else "fastbox engine is not running")


def status():
    """Say whether the engine runs (exit 0) or not (exit 1)."""
    from fastbox.state import engine_process
    pid = engine_process.running()
    if pid is None:
        print("fastbox engine is not running")
        raise typer.Exit(1)
    print(f"fastbox engine is running (pid {pid}), socket {engine_process.socket_path()}, "
          f"log {engine_process.log_path()}")


def serve(auto: bool = typer.Option(False, "--auto", hidden=True)):
    """Run the engine in the foreground (for a service manager); stop it with SIGTERM."""
    # bin/fastbox-py sends `engine serve` straight to the engine; this is for the help
    # and for callers of the typer app: the engine runs as its own program.
    flags = ["--auto"] if auto else []
    os.execv(sys.executable, [sys.executable, "-m", "fastbox.engine", *flags])
