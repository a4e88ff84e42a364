"""`fastbox exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`: Docker's
options up to the container, then the command verbatim."""
import sys

from fastbox.errors import FastboxError, SpecError

USAGE = "Usage: fastbox exec [OPTIONS] CONTAINER COMMAND [ARG...]"
_FLAGS = {"-i": "interactive", "--interactive": "interactive", "-t": "tty", "--tty": "tty"}
_VALUES = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir",
           "-u": "user", "--user": "user"}


def parse(args):
    opts = {"interactive": False, "tty": False, "env": [], "workdir": None, "user": None}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name in _FLAGS and not value:
            opts[_FLAGS[name]] = True
        elif name in _FLAGS and not eq:  # combined short flags: -it
            for ch in arg[1:]:
                if "-" + ch not in _FLAGS:
                    raise SpecError(f"unknown flag: -{ch}\n{USAGE}")
                opts[_FLAGS["-" + ch]] = True
        elif name in _VALUES:
            if not value:
                i += 1
                if i >= len(args):
                    raise SpecError(f"flag needs an argument: {name}")
                value = args[i]
            key = _VALUES[name]
            opts[key] = opts[key] + [value] if key == "env" else value
        else:
            raise SpecError(f"unknown flag: {name}\n{USAGE}")
        i += 1
    if len(args) - i < 2:
        raise SpecError(f"'fastbox exec' requires a container and a command\n{USAGE}")
    return opts, args[i], args[i + 1:]


def main(args):
    try:
        opts, ref, command = parse(args)
        from fastbox import containers
        c = containers.get(ref)
        if opts["tty"]:
            from fastbox.cli import tty_session
            return tty_session.exec_(c, command, opts)
        stdin = 0 if opts["interactive"] else None
        return c.exec_run(command, env=opts["env"], workdir=opts["workdir"], user=opts["user"],
                          capture_output=False, stdin=stdin, stdout=1, stderr=2).exit_code
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        return e.exit_code
