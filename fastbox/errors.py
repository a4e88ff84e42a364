"""The exceptions fastbox raises, each carrying the Docker-like exit code the CLI returns for it.

125 is an engine error (bad input, missing image, a failure before the program runs);
126 means the program was found but cannot be executed; 127 means it was not found.
"""


class FastboxError(Exception):
    """Base of every error fastbox reports to a user as one line."""

    exit_code = 125


class SpecError(FastboxError):
    """The user asked for something malformed: a bad flag value, a relative volume path."""


class ImageError(FastboxError):
    """An image is missing, malformed, or cannot be unpacked safely."""


class ImageNotFound(ImageError):
    """No image in the local store answers to this reference."""


class UnsafeLayer(ImageError):
    """A layer tarball tries to write outside its directory."""


class RegistryError(FastboxError):
    """A registry refused, failed, or answered something fastbox cannot use."""


class DigestMismatch(ImageError):
    """A blob's content does not match the digest or size that named it."""


class ContainerStateError(FastboxError):
    """The container is not in a state that allows the operation, or does not exist."""


class StartError(FastboxError):
    """The runtime failed to build the container; carries the phase and errno from the core."""

    def __init__(self, message, phase="", errno=0):
        super().__init__(message)
        self.phase = phase
        self.errno = errno


class CommandNotFound(StartError):
    """The container's program does not exist in its root filesystem or $PATH."""

    exit_code = 127


class CommandNotExecutable(StartError):
    """The container's program exists but the kernel refused to execute it."""

    exit_code = 126


class EngineError(FastboxError):
    """The warm engine (`fastbox engine`) cannot start, or is not there to stop."""


class NotATerminal(SpecError):
    """`run -it` with a stdin that is not a terminal (Docker: exit 1)."""

    exit_code = 1
