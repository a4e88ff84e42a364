"""Container records on disk: $FASTBOX_ROOT/containers/<id>/state.json, written
atomically (temp + rename) under a per-container flock.

Names are reserved by creating names/<name> with O_EXCL, so of two concurrent runs with
one name exactly one wins. A record says "running" only while its monitor lives: the
monitor writes exit.json when the container exits, and a record whose monitor is gone
without one is reconciled to exited, never running forever.
"""
import fcntl
import json
import os
import shutil

from fastbox import config
from fastbox.errors import ContainerStateError
from fastbox.state import process, status

UNKNOWN_EXIT = 255  # the monitor died before it could record the exit code
_BUILDING = ".new-"  # .new-<pid>-<id>: a record being created by <pid>
_REMOVING = ".gone-"  # .gone-<id>: a record being removed


class StateStore:
    def __init__(self, root=None):
        self.root = root or config.containers_dir()
        self.names = os.path.join(self.root, "names")

    # paths
    def container_dir(self, cid):
        return os.path.join(self.root, cid)

    def _record_path(self, cid):
        return os.path.join(self.root, cid, "state.json")

    def log_path(self, cid):
        return os.path.join(self.root, cid, "container.log")

    def exit_path(self, cid):
        return os.path.join(self.root, cid, "exit.json")

    def started_path(self, cid):
        return os.path.join(self.root, cid, "started.json")

    def name_path(self, name):
        return os.path.join(self.names, name)

    # names
    def reserve_name(self, name, cid):
        """names/<name> holds "<id> <pid of the process running it>". An ephemeral
        foreground container keeps no record, so its name is stale once that process
        is gone."""
        config.private_dir(self.names)
        if self._create_name(name, cid):
            return
        # Taking over a stale name is check-then-replace: serialise it, or two takers
        # could each delete the other's fresh entry.
        with _Flock(os.path.join(self.names, ".lock")):
            if self._stale_name(name):
                self.release_name(name)
                if self._create_name(name, cid):
                    return
        raise ContainerStateError(
            f'the container name "/{name}" is already in use by container '
            f'"{self._name_owner(name)}": remove or rename that container')

    def _create_name(self, name, cid):
        try:
            fd = os.open(self.name_path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{cid} {os.getpid()}")
        return True

    def _name_entry(self, name):
        try:
            with open(self.name_path(name)) as f:
                cid, _, pid = f.read().strip().partition(" ")
                return cid, int(pid or 0)
        except (OSError, ValueError):
            return "?", 0

    def _name_owner(self, name):
        return self._name_entry(name)[0]

    name_owner = _name_owner

    def _stale_name(self, name):
        cid, pid = self._name_entry(name)
        if os.path.exists(self._record_path(cid)) or pid <= 0:
            return False
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    def release_name(self, name):
        try:
            os.unlink(self.name_path(name))
        except FileNotFoundError:
            pass

    def rename(self, cid, new_name):
        record = self.get(cid)
        self.reserve_name(new_name, cid)
        if record.get("name"):
            self.release_name(record["name"])
        with self.locked(cid):  # and the spec its next starts use (its names on networks)
            record = self._read(cid)
            record["name"] = new_name
            if isinstance(record.get("spec"), dict):
                record["spec"] = dict(record["spec"], name=new_name)
            self._write(record)
        return record

    # records
    def create(self, record):
        """The record's directory appears whole or not at all: it is built under a
        hidden name that says who builds it, then renamed into place, so a creator
        killed half-way leaves nothing that looks like a container (list() sweeps it)."""
        cid = record["id"]
        config.private_dir(self.root)
        building = os.path.join(self.root, f"{_BUILDING}{os.getpid()}-{cid}")
        os.mkdir(building, 0o700)  # its upper layer may hold setuid binaries
        os.close(os.open(os.path.join(building, "lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                         0o600))
        self._write(record, os.path.join(building, "state.json"))
        os.rename(building, self.container_dir(cid))

    def _write(self, record, path=None):
        path = path or self._record_path(record["id"])
        tmp = path + ".tmp"
        # 0600: a record holds the container's environment (-e SECRET=...).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            # one string from the C encoder: json.dump (or any indent) runs the
            # pure-Python one, a few hundred microseconds per write on the start path
            f.write(json.dumps(record))
        os.replace(tmp, path)

    def update(self, cid, **fields):
        with self.locked(cid):
            record = self._read(cid)
            record.update(fields)
            self._write(record)
        return record

    def mark_running(self, cid, **fields):
        """The starter's record of a run it started (fields: pid, monitor_pid, ...):
        applied to a record still created, or already adopted from this run's
        started.json; one a reader has seen exit (or removed) stays as it is."""
        with self.locked(cid):
            record = self._read(cid)
            if record["status"] == status.CREATED or (
                    record["status"] == status.RUNNING and record.get("pid") == fields["pid"]):
                record.update(status=status.RUNNING, **fields)
                self._write(record)
        return record

    def write_started(self, cid, started):
        """started.json as the monitor writes it (pid, pid_start, monitor_pid,
        monitor_start, started_at), by the starter, which can then answer before it has
        updated the record: readers adopt it. Its own temp file: the monitor may be
        writing its own copy at the same moment. Under the record's lock: a --rm
        container's monitor may be removing the directory (then it is gone: nothing to
        write)."""
        path = self.started_path(cid)
        tmp = path + ".new"
        try:
            with self.locked(cid):
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                try:
                    os.write(fd, json.dumps(started).encode())
                finally:
                    os.close(fd)
                os.replace(tmp, path)
        except ContainerStateError:
            pass

    def locked(self, cid):
        """The record's lock. It is made with the record and never recreated: a record
        being removed (its lock unlinked under the lock) is then gone to writers too."""
        return _Flock(os.path.join(self.container_dir(cid), "lock"), cid)

    def _read(self, cid):
        try:
            with open(self._record_path(cid)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise ContainerStateError(f"no such container: {cid}") from None

    def read_raw(self, cid):
        """The record as written, not reconciled (a janitor holding its lock)."""
        return self._read(cid)

    def get(self, cid):
        """The record, reconciled with what the monitor left."""
        record = self._read(cid)
        if record["status"] == status.CREATED:
            record = self._adopt_started(record)
        if record["status"] == status.RUNNING:
            record = self._reconcile(record)
        return record

    def reset_for_restart(self, cid, owner=None, by_policy=False):
        """An exited container about to start again: its last run's exit and start
        records go, so that reconciling reads the new run's. owner: the starter's
        fastbox.state.owners key, which the janitor checks before it sweeps. by_policy:
        the restart policy starts it, which a user's stop overrules, checked here under
        the lock that the stop's mark takes too."""
        with self.locked(cid):
            if by_policy and self._read(cid).get("stopped_by_user"):
                raise ContainerStateError(f"container {cid[:12]} was stopped: no restart")
            for path in (self.exit_path(cid), self.started_path(cid)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            record = self._read(cid)
            record.update(status=status.CREATED, exit_code=None, finished_at=None, pid=0,
                          oom_killed=False)
            if owner:
                record["owner"] = owner
            self._write(record)

    def _adopt_started(self, record):
        """The monitor's started.json says the container runs, even if whoever started
        it died before recording so."""
        try:
            with open(self.started_path(record["id"])) as f:
                started = json.load(f)
        except (FileNotFoundError, ValueError):
            return record
        with self.locked(record["id"]):
            current = self._read(record["id"])
            if current["status"] == status.CREATED:
                current.update(status=status.RUNNING, **started)
                self._write(current)
        return current

    def _reconcile(self, record):
        exited = self._exit_record(record["id"])
        if exited is None:
            if process.alive(record.get("monitor_pid"), record.get("monitor_start")):
                return record
            # it writes the exit record, then exits: between our two reads, the record came
            exited = self._exit_record(record["id"])
        fields = exited or {"exit_code": UNKNOWN_EXIT, "finished_at": None,
                            "error": "the container's monitor died"}
        with self.locked(record["id"]):
            current = self._read(record["id"])
            if current["status"] != status.RUNNING:
                return current
            current.update(status=status.EXITED, pid=0, **fields)
            self._write(current)
        from fastbox.state import events
        events.append("die", current, _ns(current.get("finished_at")),
                      exitCode=current.get("exit_code"))
        return current

    def _exit_record(self, cid):
        try:
            with open(self.exit_path(cid)) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        return {"exit_code": data["exit_code"], "finished_at": data["finished_at"],
                "oom_killed": bool(data.get("oom_killed"))}

    def list(self):
        out = []
        for entry in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else ():
            if entry.startswith((_BUILDING, _REMOVING)):
                self._sweep(entry)
            elif len(entry) == 64:
                try:
                    out.append(self.get(entry))
                except (ContainerStateError, ValueError, KeyError):
                    continue
        return out

    def lookup(self, ref):
        """A full id, a unique id prefix, or a name, as Docker resolves them."""
        if ref and os.path.isfile(self.name_path(ref)):
            cid = self._name_owner(ref)
            if os.path.exists(self._record_path(cid)):
                return self.get(cid)
        if len(ref) == 64 and os.path.exists(self._record_path(ref)):
            return self.get(ref)
        ids = [e for e in os.listdir(self.root) if len(e) == 64 and e.startswith(ref)] \
            if ref and os.path.isdir(self.root) else []
        if len(ids) == 1:
            return self.get(ids[0])
        if len(ids) > 1:
            raise ContainerStateError(f"multiple containers match {ref!r}: use more of the id")
        raise ContainerStateError(f"no such container: {ref}")

    def _sweep(self, entry):
        """What a killed creator or remover left: a record half-built by a process now
        gone, or one already renamed away for removal."""
        if entry.startswith(_BUILDING):
            pid = entry[len(_BUILDING):].partition("-")[0]
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                return
        shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)

    def delete(self, record):
        """Remove the record, its directory (writable layer, log) and its name. The
        directory is first renamed away, so a remover killed half-way leaves no record
        without its state.json (list() sweeps the rest)."""
        cid = record["id"]
        try:
            with self.locked(cid):
                self._remove_dir(cid)
        except ContainerStateError:  # a --rm container's monitor removed it already
            self._remove_dir(cid)
        if record.get("name"):
            owner = self._name_owner(record["name"])
            if owner == cid:
                self.release_name(record["name"])

    def _remove_dir(self, cid):
        gone = os.path.join(self.root, f"{_REMOVING}{cid}")
        try:
            os.rename(self.container_dir(cid), gone)
        except FileNotFoundError:
            return
        except OSError:  # a half-removed namesake in the way: remove in place
            gone = self.container_dir(cid)
        shutil.rmtree(gone, ignore_errors=True)

    def remove(self, ref, force=False):
        """For records of foreground containers; fastbox.containers.remove handles the
        running ones (stop, then this)."""
        record = self.lookup(ref)
        if not status.can_delete(record["status"]) and not force:
            raise ContainerStateError(
                f"cannot remove container {record['id'][:12]}: it is {record['status']}")
        self.delete(record)
        return record


def _ns(rfc3339):
    """When the monitor saw the exit (its finished_at), for the die event; None: now."""
    from fastbox.state import events
    try:
        return events.rfc3339_to_ns(rfc3339)
    except (TypeError, ValueError, AttributeError):
        return None


class _Flock:
    def __init__(self, path, cid=None):
        self.path, self.cid = path, cid

    def __enter__(self):
        flags = os.O_RDWR | os.O_CLOEXEC | (0 if self.cid else os.O_CREAT)
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            raise ContainerStateError(f"no such container: {self.cid}") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        if self.cid and os.fstat(self.fd).st_nlink == 0:  # removed while we waited
            os.close(self.fd)
            raise ContainerStateError(f"no such container: {self.cid}")
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
