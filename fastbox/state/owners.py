"""Nothing runs unowned: who owns what a start makes, and the janitor that sweeps what a
dead owner left.

Before a start makes anything (cgroups, the container's directory, its record), its
owner writes an entry, FASTBOX_RUN/owners/<pid>-<start time>-<name>, naming what to
remove; the entry goes when the container is torn down. One flat directory: an entry
costs a create and an unlink (~20-30 us on this disk), where a directory per owner
cost a mkdir and an rmdir more (~180 us). The owner is the process that
waits for the container: the Python CLI, the engine, an API process, and for a detached
container its monitor, to which the starter hands the entry once the monitor runs.

The next fastbox command sweeps the entries whose owner is dead (its pid gone, or reused:
the start time differs): one readdir of owners/ and one read of /proc/<pid>/stat per
owner (~3 us with a few entries), which is all a command pays when nothing died. For each such entry it kills what
is left in the container's cgroups, removes them, and settles the record: a `run` that
never got its container running leaves no record; a container whose owner died is
marked exited (removed if it was --rm).

What to do with one dead owner's entry is in fastbox/state/janitor.py, imported only then.

An entry is also flock'ed by whoever must keep it: a detached container's entry is held
by the starter and, through an inherited fd, by the process that becomes the monitor,
for as long as that lives. A sweeper takes the lock before it touches an entry, so it
never touches a running detached container (the monitor holds it), nor one whose start
is still under way in an orphaned intermediate, nor an entry another sweeper is on.
"""
import os

from fastbox import config
from fastbox.state import process

OWNERS = "owners"
RUN, DETACHED, EXEC, POOL = "run", "detached", "exec", "pool"
KINDS = (RUN, DETACHED, EXEC, POOL)
KEEP_FREE = 4  # released slots a process keeps open per FASTBOX_RUN, for its next starts
_me = []  # [pid, key] of this process (a fork has its own)
_swept = set()  # (pid, root, run) this process has swept (the API's first use)


def owners_dir():
    return os.path.join(config.run_dir(), OWNERS)


def my_key():
    pid = os.getpid()
    if not _me or _me[0] != pid:
        _me[:] = [pid, key_of(pid, process.start_time(pid))]
    return _me[1]


def key_of(pid, started):
    return f"{pid}-{started}"


class Claim:
    """One entry of ours. fd: open while the entry is locked (a detached start) or kept
    for reuse (slot)."""

    __slots__ = ("path", "name", "fd", "slot")

    def __init__(self, path, name, fd=-1, slot=False):
        self.path, self.name, self.fd, self.slot = path, name, fd, slot

    def hand_to(self, pid, started):
        """Move the entry under another owner (a detached container's monitor, which
        already holds its lock through the inherited fd): ours no longer."""
        os.rename(self.path, entry_path(key_of(pid, started), self.name))
        self.close()

    def release(self):
        """The container is torn down: nothing of it is left to sweep. A slot is emptied
        and kept for our next container (an empty entry names nothing)."""
        if self.slot:
            os.ftruncate(self.fd, 0)
            _slots.put(self.path, self.fd)
            self.fd = -1
            return
        _unlink(self.path)
        self.close()

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Slots:
    """Entry files this process keeps open for reuse: a claim that overwrites one costs
    a write (~5 us), where a file made and unlinked costs ~30 us and more when the disk
    is busy. A fork has none of its parent's (they are named for the parent)."""

    def __init__(self):
        import _thread
        self.lock, self.pid, self.free, self.made = _thread.allocate_lock(), 0, {}, 0

    def take(self):
        """(path, fd) of a free slot in this FASTBOX_RUN, or of a new one."""
        where = owners_dir()
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.free, self.made = os.getpid(), {}, 0
            if self.free.get(where):
                return self.free[where].pop()
            self.made += 1
            n = self.made
        path = entry_path(my_key(), f"slot{n}")
        return path, _open_entry(path)

    def put(self, path, fd):
        with self.lock:
            if self.pid == os.getpid():
                free = self.free.setdefault(os.path.dirname(path), [])
                if len(free) < KEEP_FREE:
                    free.append((path, fd))
                    return
                _unlink(path)  # a burst is over: an engine keeps no more than KEEP_FREE
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_slots = _Slots()


def entry_path(key, name):
    return os.path.join(owners_dir(), f"{key}-{name}")


def _open_entry(path):
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        config.private_dir(owners_dir())
        return os.open(path, flags, 0o600)


def claim(name, kind, cgroups=(), store=None, record_name=None, created=False, locked=False,
          pids=()):
    """Write this process's entry for name (a container id, or a pool's) before anything
    is made. cgroups: the directories the start will make; store: the containers dir
    holding its record (None: no record); record_name: a name reserved for it; created:
    the record is made by this start (a `run`), so a start that never ran leaves none.
    locked: the entry is flock'ed and its fd kept (for a detached start, whose monitor
    inherits it). pids: (pid, start time) of processes to kill (an exec'd one)."""
    lines = [kind, name] + [f"cgroup {d}" for d in cgroups]
    lines += [f"pid {pid} {started}" for pid, started in pids]
    if store:
        lines.append(f"store {store}")
    if record_name:
        lines.append(f"name {record_name}")
    if created:
        lines.append("created")
    data = ("\n".join(lines) + "\n").encode(errors="surrogateescape")
    if not locked:
        path, fd = _slots.take()
        try:
            os.pwrite(fd, data, 0)
        except BaseException:
            _slots.put(path, fd)
            raise
        return Claim(path, name, fd, slot=True)
    path = entry_path(my_key(), name)
    fd = _open_entry(path)
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return Claim(path, name, fd)


# ---------------------------------------------------------------- the janitor

def begin():
    """What every fastbox command does first: tighten an old store once, and sweep. A
    root we may not touch (a user's `fastbox --help`) is the command's to report."""
    _swept.add(_where())
    try:
        if not os.path.exists(os.path.join(config.root(), ".private")):  # modes.MARKER
            from fastbox.state import modes
            modes.ensure_private()
        sweep()
    except PermissionError:
        pass


def begin_once():
    """For the API: begin() on a process's first use (of these directories) only."""
    if _where() not in _swept:
        begin()


def _where():
    return os.getpid(), config.root(), config.run_dir()


def sweep():
    """Clean up after every dead owner; returns how many entries were swept."""
    try:
        names = os.listdir(owners_dir())
    except FileNotFoundError:
        return 0
    me, alive, swept = my_key(), {}, 0
    for name in names:
        pid, _, rest = name.partition("-")
        started, _, _ = rest.partition("-")
        key = f"{pid}-{started}"
        if key == me:
            continue
        if key not in alive:
            alive[key] = _owner_alive(key)
        if not alive[key]:
            from fastbox.state import janitor
            swept += janitor.sweep_entry(os.path.join(owners_dir(), name), key)
    return swept


def _owner_alive(key):
    pid, _, started = key.partition("-")
    if not pid.isdigit():
        return True  # not ours to judge
    return started.isdigit() and process.start_time(int(pid)) == int(started)
