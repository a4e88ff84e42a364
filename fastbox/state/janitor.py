"""The janitor's work on one entry of a dead owner (fastbox.state.owners finds them):
imported only when a sweep finds one, so that a command that finds none pays nothing
for this code."""
import os

from fastbox.state import process
from fastbox.state.owners import DETACHED, KINDS, entry_path, key_of


def _unlink(path):
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:  # another sweeper was first
        return 0


def sweep_entry(path, key):
    """1 if the entry at path (of the dead owner key) was swept."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        if os.fstat(fd).st_size == 0:  # names nothing: a released slot, or a claim
            return _unlink(path)       # whose owner died before writing it
        import fcntl
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a monitor holds it, or a start goes on, or a sweeper
            _hand_to_monitor(path, fd)
            return 0
        if os.fstat(fd).st_nlink == 0:  # swept or handed on while we waited
            return 0
        entry = Entry(os.read(fd, 65536).decode(errors="surrogateescape"), key)
        if entry.kind not in KINDS or clean(entry):
            return _unlink(path)
        return 0
    finally:
        os.close(fd)


class Entry:
    __slots__ = ("kind", "id", "owner", "cgroups", "store", "name", "created", "pids")

    def __init__(self, text, owner):
        lines = text.split("\n")
        self.kind = lines[0] if len(lines) > 1 else ""
        self.id, self.owner = lines[1] if len(lines) > 1 else "", owner
        self.cgroups, self.pids = [], []
        self.store = self.name = None
        self.created = False
        for line in lines[2:]:
            field, _, value = line.partition(" ")
            if field == "cgroup":
                self.cgroups.append(value)
            elif field == "store":
                self.store = value
            elif field == "name":
                self.name = value
            elif field == "created":
                self.created = True
            elif field == "pid":
                pid, _, started = value.partition(" ")
                self.pids.append((int(pid), int(started) if started.isdigit() else None))


def clean(entry):
    """Kill and remove what entry names; True once nothing of it is left."""
    import signal
    for pid, started in entry.pids:
        process.signal_process(pid, started, signal.SIGKILL)
    if entry.store:
        return _clean_record(entry)
    return _clean_cgroups(entry) and _release_name(entry)


def _clean_cgroups(entry):
    from fastbox.errors import ContainerStateError
    from fastbox.runtime import cgroup
    if not entry.cgroups:
        return True
    cgroup.kill_all(entry.cgroups)
    try:
        cgroup.remove(entry.cgroups)
    except (ContainerStateError, OSError):
        return False  # still busy: the next sweep tries again
    return True


def _clean_record(entry):
    """A kept container: its processes and cgroups go only while its record still says
    the dead owner has it (a restart by someone else has made them theirs); then the
    record is settled: removed if the start never ran and made it, or --rm; else
    reconciled to exited by the store (its monitor is dead)."""
    from fastbox.errors import ContainerStateError
    from fastbox.state.store import StateStore
    store = StateStore(entry.store)
    try:
        with store.locked(entry.id):
            record = store.read_raw(entry.id)
            if record.get("owner") != entry.owner:
                return True  # stale: the container is someone else's now
            if not _clean_cgroups(entry):
                return False
    except ContainerStateError:  # no record (a --rm container removed itself)
        return _clean_cgroups(entry) and _release_name(entry)
    try:
        record = store.get(entry.id)
    except ContainerStateError:
        return True
    never_ran = record["status"] == "created" and entry.created
    if never_ran or (record.get("spec") or {}).get("remove"):
        store.delete(record)
    elif (record.get("spec") or {}).get("restart", "no") != "no":
        from fastbox import restarter
        restarter.after_sweep(store, record)
    return True


def _release_name(entry):
    """A foreground --rm container's name, if it still names this container."""
    if entry.name:
        from fastbox.state.store import StateStore
        store = StateStore()
        if store.name_owner(entry.name) == entry.id:
            store.release_name(entry.name)
    return True


def _hand_to_monitor(path, fd):
    """A locked entry in a dead starter's directory: a detached container whose monitor
    runs (the starter died before handing it over). Give it to the monitor, so that
    later sweeps do not try it again."""
    try:
        entry = Entry(os.pread(fd, 65536, 0).decode(errors="surrogateescape"), "")
    except (OSError, ValueError):
        return
    if entry.kind != DETACHED or not entry.store:
        return
    import json
    try:
        with open(os.path.join(entry.store, entry.id, "started.json")) as f:
            started = json.load(f)
    except (OSError, ValueError):
        return  # its start still goes on: the next sweep looks again
    pid, start = started.get("monitor_pid"), started.get("monitor_start")
    if not process.alive(pid, start):
        return
    try:
        os.rename(path, entry_path(key_of(pid, start), entry.id))
    except OSError:
        return
    from fastbox.state.store import StateStore
    from fastbox.errors import ContainerStateError
    try:
        StateStore(entry.store).update(entry.id, owner=key_of(pid, start))
    except ContainerStateError:
        pass
