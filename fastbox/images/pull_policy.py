"""`run --pull missing|always|never`: whether the image is pulled before the container
is made (missing, Docker's default: only when the store lacks it)."""
import os

from fastbox.errors import ImageNotFound, SpecError

POLICIES = ("missing", "always", "never")


def ensure(ref, policy, err_fd=2):
    """Pull ref if policy says so, reporting on err_fd as Docker does on stderr."""
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
        _say(err_fd, f"Unable to find image '{ref}' locally\n")
    from fastbox.images.pull import pull
    from fastbox.images.reference import parse
    parsed = parse(ref)
    _say(err_fd, f"{parsed.tag or parsed.digest}: Pulling from {parsed.repository}\n")
    pulled = pull(ref)
    _say(err_fd, f"Status: Downloaded newer image for {pulled.ref}\n")


def _say(fd, text):
    try:
        os.write(fd, text.encode())
    except OSError:
        pass
