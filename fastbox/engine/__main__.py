"""`python -m fastbox.engine [--ready-fd N] [--auto]`: the engine in the foreground, as
`fastbox engine start` launches it (--auto: as the C client starts one by itself, through
`fastbox-py engine serve --auto`, which comes here without loading typer)."""
import sys

from fastbox.errors import FastboxError


def main(argv):
    ready_fd = int(argv[argv.index("--ready-fd") + 1]) if "--ready-fd" in argv else -1
    try:
        from fastbox.engine import server
        return server.serve_forever(ready_fd, auto="--auto" in argv)
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
