"""Usage errors as one line each, the way Docker words them, with a hint that fits:
the nearest command or flag that exists, or where the help is.

    fastbox: 'rn' is not a fastbox command. Did you mean 'run'?
    fastbox: unknown flag: --formt (did you mean --format?); see 'fastbox ps --help'
    fastbox: 'fastbox rm' requires at least 1 argument (CONTAINER...); see 'fastbox rm --help'
"""


def nearest(word, choices):
    import difflib
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_flag(command, name, known):
    """command: "fastbox run"; name: what was typed; known: every flag it takes."""
    guess = nearest(name, known)
    hint = f" (did you mean {guess}?)" if guess else ""
    return f"unknown flag: {name}{hint}; see '{command} --help'"


def unknown_command(name, known):
    guess = nearest(name, known)
    if guess:
        return f"'{name}' is not a fastbox command. Did you mean '{guess}'?"
    return f"'{name}' is not a fastbox command; see 'fastbox --help'"


def from_click(error):
    """One line for a click UsageError (typer's commands): what was wrong, and a hint."""
    ctx = getattr(error, "ctx", None)
    command = ctx.command_path if ctx is not None else "fastbox"
    kind = type(error).__name__
    message = error.format_message() if hasattr(error, "format_message") else str(error)
    if kind == "NoSuchOption":
        known = []
        if ctx is not None:
            for param in ctx.command.params:
                known.extend(getattr(param, "opts", ()) + getattr(param, "secondary_opts", ()))
        return unknown_flag(command, error.option_name, known)
    if kind == "MissingParameter" and getattr(error, "param", None) is not None \
            and getattr(error.param, "param_type_name", "") == "argument":
        param = error.param
        what = getattr(param, "metavar", None) or (param.name or "ARGUMENT").upper()
        return (f"'{command}' requires at least 1 argument ({what}); "
                f"see '{command} --help'")
    if message.startswith("No such command"):
        name = message.split("'")[1] if "'" in message else message
        group = ctx.command if ctx is not None else None
        known = list(getattr(group, "commands", {}) or {})
        text = unknown_command(name, known)
        if ctx is not None and ctx.parent is not None:  # fastbox image lss
            text = text.replace("a fastbox command", f"a '{command}' command")
            text = text.replace("'fastbox --help'", f"'{command} --help'")
        return text
    message = " ".join(message.split()).rstrip(".")
    return f"{message[:1].lower()}{message[1:]}; see '{command} --help'"


def exit_code(error, line):
    """Docker's: an unknown command or a missing argument exits 1, a flag's error 125."""
    if "is not a" in line and "command" in line:
        return 1
    if "requires at least" in line:
        return 1
    return 125
