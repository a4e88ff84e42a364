"""`run --pull missing|always|never`: whether the image is pulled before the container
is made (missing, Docker's default: only when the store lacks it)."""
import os

from fastbox.errors import FastboxError, ImageNotFound, SpecError

POLICIES = ("missing", "always", "never")


def ensure(ref, policy, err_fd=2):
    """Pull ref if policy says so, reporting on err_fd as Docker does on stderr: at once
    on a terminal; otherwise only once the pull worked, so that a failure is one line."""
    if policy not in POLICIES:
        raise SpecError(f"invalid --pull {policy!r}: expected missing, always or never")
    if policy != "always":
        from fastbox.api import resolve_image
        try:
            resolve_image(ref)
            return
        except ImageNotFound:
            if policy == "never":
                raise ImageNotFound(f"no such image: {ref} (--pull never)") from None
    report = _Report(err_fd)
    if policy != "always":
        report.say(f"Unable to find image '{ref}' locally\n")
    from fastbox.images.pull import pull
    from fastbox.images.reference import parse
    try:
        parsed = parse(ref)
        report.say(f"{parsed.tag or parsed.digest}: Pulling from {parsed.repository}\n")
        pulled = pull(ref)
    except FastboxError as e:
        what = (f"unable to find image '{ref}' locally, and pulling it failed" if policy != "always"
                else f"pulling {ref} failed")
        raise ImageNotFound(f"{what}: {e}") from None
    report.say(f"Status: Downloaded newer image for {pulled.ref}\n")
    report.flush()


class _Report:
    def __init__(self, fd):
        self.fd, self.held = fd, [] if not os.isatty(fd) else None

    def say(self, text):
        if self.held is None:
            _write(self.fd, text)
        else:
            self.held.append(text)

    def flush(self):
        if self.held:
            _write(self.fd, "".join(self.held))


def _write(fd, text):
    try:
        os.write(fd, text.encode())
    except OSError:
        pass
