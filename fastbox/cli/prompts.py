"""Docker's confirmation prompt (prunes): the question ends in " [y/N] " and only y or
yes (any case) goes ahead; an empty line, anything else, or the end of stdin (a script
with stdin from /dev/null) is no. As Docker, it is asked whether or not stdin is a
terminal: only -f/--force skips it."""
import sys


def confirm(question):
    sys.stdout.write(f"{question} [y/N] ")
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        sys.stdout.write("\n")  # the user's Enter never came: end the prompt's line
    return answer.strip().lower() in ("y", "yes")
