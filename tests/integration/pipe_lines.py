"""Reading a subprocess's output line by line, with a timeout instead of a hang."""
import os
import select


class Lines:
    """Lines from a subprocess's pipe, read without buffering ahead of select()."""

    def __init__(self, pipe):
        self.fd, self.buf = pipe.fileno(), b""

    def readline(self, timeout=30):
        """The next line; fails (does not hang) if none comes; "" at EOF."""
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            assert ready, f"no line within {timeout}s (have {self.buf!r})"
            data = os.read(self.fd, 65536)
            if not data:
                rest, self.buf = self.buf, b""
                return rest.decode()
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode() + "\n"

    def rest(self):
        """Everything up to EOF."""
        out = self.buf
        while True:
            data = os.read(self.fd, 65536)
            if not data:
                self.buf = b""
                return out.decode()
            out += data
