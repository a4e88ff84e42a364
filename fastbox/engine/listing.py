"""`fastbox ps` (and `container ls`) served in a thread of the engine, as `run -d` is:
a worker forked for it costs more than the listing itself (a fork of the warm process,
then its set-up), and `ps` is what people type most. The arguments are parsed by the same
click command the Python CLI uses; anything unusual (--help, a usage error) is left to a
worker, which reports it exactly as the CLI does."""
from fastbox.errors import FastboxError

COMMANDS = {("ps",): "ps", ("container", "ls"): "ls", ("container", "list"): "ls"}


class Listing:
    """A parsed `ps`: the parameters of container_commands.ps_lines."""

    __slots__ = ("params",)

    def __init__(self, params):
        self.params = params


def parse(args):
    """A Listing for args, or None if a worker should run them."""
    for prefix, name in COMMANDS.items():
        if tuple(args[:len(prefix)]) == prefix:
            rest = list(args[len(prefix):])
            break
    else:
        return None
    if any(a in ("--help", "-h") or a.startswith("--help=") for a in rest):
        return None
    from fastbox.cli import app
    group = app.click_command()
    command = group.commands["ps"] if name == "ps" else group.commands["container"].commands["ls"]
    try:
        ctx = command.make_context(name, rest)
    except Exception:  # noqa: BLE001 - a usage error: the worker reports it as the CLI does
        return None
    params = dict(ctx.params)
    params["filter_"] = list(params.get("filter_") or ())
    return Listing(params)


def serve(listing, fds):
    """Writes the listing to the client's stdout; returns the exit code (Docker's 1 for a
    failed non-run command, with one line on its stderr)."""
    from fastbox.cli import container_commands, run_command
    try:
        lines = container_commands.ps_lines(**listing.params)
    except FastboxError as e:
        run_command.write(fds[2], f"fastbox: {e}\n")
        return 1 if e.exit_code == 125 else e.exit_code
    run_command.write(fds[1], "".join(line + "\n" for line in lines))
    return 0
