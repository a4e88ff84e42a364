"""`fastbox engine start|stop|status|serve`: the warm engine that serves the C client's
commands."""
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
    from fastbox.engine import lifecycle
    pid, started = lifecycle.start()
    print(f"fastbox engine {'started' if started else 'already running'} (pid {pid})")


def stop():
    """Stop the engine, and start none by itself until `engine start`; its running
    containers get SIGTERM, then SIGKILL after 10 s."""
    from fastbox.engine import lifecycle
    pid = lifecycle.stop()
    print(f"fastbox engine stopped (pid {pid})" if pid else "fastbox engine is not running")


def status():
    """Say whether the engine runs (exit 0) or not (exit 1)."""
    from fastbox.engine import lifecycle, server
    pid = lifecycle.running()
    if pid is None:
        print("fastbox engine is not running")
        raise typer.Exit(1)
    print(f"fastbox engine is running (pid {pid}), socket {server.socket_path()}, "
          f"log {lifecycle.log_path()}")


def serve(auto: bool = typer.Option(False, "--auto", hidden=True)):
    """Run the engine in the foreground (for a service manager); stop it with SIGTERM."""
    from fastbox.engine import server
    raise typer.Exit(server.serve_forever(auto=auto))
