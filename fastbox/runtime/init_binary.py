"""`run --init`: the container's PID 1 is fastbox-init (csrc/init/fb_pid1.c), exec'd
by the core from a sealed memfd copy made once per process. The container never sees
a host path or a writable host file: its /proc/1/exe is that memfd, which no one can
write (F_SEAL_WRITE), and the fd is close-on-exec, gone once the init runs."""
import fcntl
import os

INIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "libexec", "fastbox-init")
ARGV0 = "/sbin/fastbox-init"  # what ps shows inside; no such file is needed there
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

_fd = []


def fd():
    """The sealed memfd of fastbox-init, made on first use and kept for this process."""
    if not _fd:
        memfd = os.memfd_create("fastbox-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            with open(INIT, "rb") as f:
                data = f.read()
            view = memoryview(data)
            while view:
                view = view[os.write(memfd, view):]
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
        except BaseException:
            os.close(memfd)
            raise
        _fd.append(memfd)
    return _fd[0]


def argv(program_argv):
    return [ARGV0, "--", *program_argv]
