"""The command line: `run` has a fast path of its own; every other command is typer's."""
