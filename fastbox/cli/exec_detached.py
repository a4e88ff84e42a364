"""`fastbox exec -d`: the program started in the container, then left to run on its
own, as Docker does: we return once it runs (or failed to start), its output goes
nowhere. A detached grandchild of ours waits on it (the core ties an exec'd process
to whoever started it), in its own session, its stdio /dev/null."""
import os

from fastbox.errors import FastboxError


def main(opts, ref, command, caller):
    from fastbox.cli import run_command
    from fastbox.spec import parse_env
    err = caller.fds[2]
    try:
        opts = dict(opts, env=list(parse_env(opts["env"], environ=caller.environ)))
    except FastboxError as e:
        from fastbox.cli.exec_command import failed
        return failed(e, err)
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        code = 1
        try:
            if os.fork() == 0:
                os.setsid()
                _wait_in_background(opts, ref, command, w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        report = f.read().decode(errors="replace")
    if report.startswith("ok"):
        return 0
    code, _, message = report.partition(" ")
    run_command.write(err, (message or "fastbox: exec -d: the program did not start") + "\n")
    return int(code) if code.isdigit() else 125


def _wait_in_background(opts, ref, command, report_fd):  # pragma: no cover - in the child
    from fastbox import containers
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    reported = []

    def started(_pid):
        os.write(report_fd, b"ok")
        os.close(report_fd)
        reported.append(True)

    try:
        c = containers.get(ref)
        c.exec_run(command, env=opts["env"], workdir=opts["workdir"],
                   user=opts["user"], privileged=opts["privileged"], capture_output=False,
                   stdin=null, stdout=null, stderr=null, on_start=started)
    except FastboxError as e:
        if not reported:
            os.write(report_fd, f"{e.exit_code} fastbox: {e}".encode())
    finally:
        os._exit(0)
