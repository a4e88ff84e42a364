"""The typer application: every command but the fast `run`, and the one handler that
turns a FastboxError into a one-line message and Docker's exit code."""
import sys
from typing import List, Optional

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


@app.command("import")
def import_(tarball: str = typer.Argument(..., help="A rootfs tarball (plain or gzip)"),
            reference: str = typer.Argument(..., help="NAME[:TAG] for the new image"),
            change: List[str] = typer.Option([], "--change", "-c",
                                             help="Set CMD, ENTRYPOINT, ENV or WORKDIR, e.g. 'CMD [\"sh\"]'")):
    """Create a one-layer image from a root filesystem tarball."""
    from fastbox.cli import commands
    commands.import_image(tarball, reference, change)


@app.command()
def images(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show image ids"),
           format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines")):
    """List images in the local store."""
    from fastbox.cli import commands
    commands.list_images(quiet, format)


@app.command()
def ps(all: bool = typer.Option(False, "--all", "-a", help="Show exited containers too"),
       quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show ids")):
    """List containers kept on disk (those run without --rm)."""
    from fastbox.cli import commands
    commands.list_containers(all, quiet)


@app.command()
def rm(containers: List[str] = typer.Argument(..., help="Names or ids"),
       force: bool = typer.Option(False, "--force", "-f", help="Remove even if running")):
    """Remove containers and their writable layers."""
    from fastbox.cli import commands
    commands.remove_containers(containers, force)


@app.command()
def info():
    """Show how this host is set up: cgroup mode, kernel, storage paths."""
    from fastbox.cli import commands
    commands.show_info()


def main():
    try:
        app(standalone_mode=False)
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(125 if e.exit_code == 2 else e.exit_code)
        raise
