"""`fastbox exec [-i] [-t] [--privileged] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`:
Docker's options up to the container, then the command verbatim."""
import os

from fastbox.errors import FastboxError, SpecError

USAGE = "Usage: fastbox exec [OPTIONS] CONTAINER COMMAND [ARG...]"
_FLAGS = {"-i": "interactive", "--interactive": "interactive", "-t": "tty", "--tty": "tty",
          "--privileged": "privileged", "-d": "detach", "--detach": "detach"}
_VALUES = {"-e": "env", "--env": "env", "-w": "workdir", "--workdir": "workdir",
           "-u": "user", "--user": "user"}


def parse(args):
    opts = {"interactive": False, "tty": False, "privileged": False, "env": [], "workdir": None,
            "user": None, "detach": False}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name in _FLAGS and not value:
            opts[_FLAGS[name]] = True
        elif name in _FLAGS and not eq:  # combined short flags: -it
            for ch in arg[1:]:
                if "-" + ch not in _FLAGS:
                    raise SpecError(_unknown("-" + ch))
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
            raise SpecError(_unknown(name))
        i += 1
    if len(args) - i < 2:
        raise SpecError("'fastbox exec' requires at least 2 arguments (CONTAINER COMMAND); "
                        "see 'fastbox exec --help'")
    return opts, args[i], args[i + 1:]


def _unknown(name):
    from fastbox.cli.usage_errors import unknown_flag
    return unknown_flag("fastbox exec", name, [*_FLAGS, *_VALUES])


def main(args):
    """Returns the process exit code: the program's own, or Docker's 125/126/127."""
    from fastbox.cli import run_command
    try:
        opts, ref, command = parse(args)
    except FastboxError as e:
        return run_command.failed(e, 2)
    if opts["detach"]:
        from fastbox.cli import exec_detached
        return exec_detached.main(opts, ref, command, run_command.Caller())
    if opts["tty"] and opts["interactive"] and not os.isatty(0):
        from fastbox.errors import NotATerminal
        return run_command.failed(NotATerminal("the input device is not a TTY"), 2)
    if opts["tty"]:
        from fastbox.cli import tty_session
        try:
            return tty_session.exec_(_container(ref), command, opts)
        except FastboxError as e:
            return failed(e, 2)
    return execute(opts, ref, command,
                   run_command.Caller(on_start=run_command.forward_signals()))


def execute(opts, ref, command, caller):
    """A parsed `fastbox exec` (not on a terminal) for caller (fastbox.cli.run_command
    .Caller), by the Python CLI or the engine: `-e KEY` reads the caller's environment,
    the signals the caller gets go to the program (on_start), as `run` does."""
    from fastbox.spec import parse_env
    err = caller.fds[2]
    try:
        c = _container(ref)
        env = parse_env(opts["env"], environ=caller.environ)
        return c.exec_run(command, env=env, workdir=opts["workdir"], user=opts["user"],
                          privileged=opts["privileged"], capture_output=False,
                          stdin=caller.fds[0] if opts["interactive"] else None,
                          stdout=caller.fds[1], stderr=err, on_start=caller.on_start).exit_code
    except FastboxError as e:
        return failed(e, err)


def failed(error, err_fd):
    """An error once the command line is parsed, as `docker exec` reports it: one line,
    and exit 1 (no such container, not running, no such user), 126/127 for a program that
    cannot run; 125 stays for the command line itself (parse errors)."""
    from fastbox.cli import run_command
    code = run_command.failed(error, err_fd)
    return 1 if code == 125 else code


def _container(ref):
    from fastbox import containers
    return containers.get(ref)
