"""Telling a live process from a dead one whose pid was reused: a pid is recorded with
its start time (field 22 of /proc/<pid>/stat, in clock ticks since boot)."""
import os


def start_time(pid):
    """The process's start time, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] == b"Z":  # a zombie has exited
        return None
    return int(fields[19])


def alive(pid, started):
    return bool(pid) and started is not None and start_time(pid) == started


def signal_process(pid, started, sig):
    """Send sig only if pid is still the process recorded; False if it is gone."""
    if not alive(pid, started):
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if start_time(pid) != started:  # reused between the check and the open
            return False
        import signal
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def lock_held(path, shared=False):
    """Whether a live process holds a flock on path (the kernel drops it when its holder
    dies): ours cannot be taken without blocking. shared: the holder's is exclusive and
    a shared one is what we try (a reader's probe); else we try an exclusive one."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
