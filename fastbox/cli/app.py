"""The typer application: every command but the fast `run`, and the one handler that
turns a FastboxError into a one-line message and Docker's exit code."""
import sys
import typer

from fastbox.errors import FastboxError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="fastbox: containers from Linux primitives, started in milliseconds.")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})
def run(ctx: typer.Context):
    """Run a command in a new container (see `fastbox run --help`)."""
    from fastbox.cli.run_command import main as run_main
    raise typer.Exit(run_main(list(ctx.args)))


# Each group of commands lives in its own module and registers itself on the app.
from fastbox.cli import bench_commands, container_commands, engine_commands, image_commands  # noqa: E402,E501
from fastbox.cli import attach_command, copy_commands, events_command, lifecycle_commands  # noqa: E402,E501
from fastbox.cli import volume_commands  # noqa: E402
from fastbox.cli import build_commands  # noqa: E402
from fastbox.cli import network_commands  # noqa: E402

image_commands.register(app)
_container_group = container_commands.register(app)
lifecycle_commands.register(app, _container_group)
copy_commands.register(app, _container_group)
attach_command.register(app, _container_group)
volume_commands.register(app)
events_command.register(app)
bench_commands.register(app)
engine_commands.register(app)
build_commands.register(app)
network_commands.register(app)


_click = []


def click_command():
    """The click command typer builds from app, once per process: building it takes
    ~10 ms, which an engine worker (fastbox/engine/forkserver.py) would pay each time."""
    if not _click:
        _click.append(typer.main.get_command(app))
    return _click[0]


def prepare():
    """Do once what every command's first run in this process would: build the click
    command, and parse each command (typer imports pydantic and builds its adapters
    for a command's options the first time it parses them, ~10 ms)."""
    _parse_each(click_command(), "fastbox", None)


def _parse_each(command, name, parent):
    try:
        ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
    except Exception:  # noqa: BLE001 - only warming up: the real parse reports it
        return
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        _parse_each(sub, sub_name, ctx)


def main(args=None):
    """Runs the command in args (sys.argv's by default) and exits with its code."""
    try:
        # A command's typer.Exit(n) comes back as n. The program is `fastbox`, whichever
        # script runs this (fastbox-py, under the C client).
        code = click_command().main(args=args, prog_name="fastbox", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        # Docker's non-run commands exit 1 on errors (125 is `run`'s); 126/127 stay.
        sys.exit(1 if e.exit_code == 125 else e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:
        # Usage errors are click's ClickException, whichever click typer ships (typer
        # 0.29 bundles its own): recognised by what they can do.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            from fastbox.cli import usage_errors
            line = usage_errors.from_click(e)
            print(f"fastbox: {line}", file=sys.stderr)
            sys.exit(usage_errors.exit_code(e, line) if e.exit_code == 2 else e.exit_code)
        raise
