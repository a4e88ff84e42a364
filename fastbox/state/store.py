"""One JSON record per kept container under $FASTBOX_ROOT/containers/<id>/state.json,
written atomically (temp + rename) under a per-container flock. Names are reserved by
creating names/<name> with O_EXCL, so two concurrent runs with one name cannot both win.
Ephemeral (--rm) foreground containers keep no record: nothing to clean after a crash.
"""
import fcntl
import json
import os
import shutil

from fastbox import config
from fastbox.errors import ContainerStateError
from fastbox.state import status


class StateStore:
    def __init__(self, root=None):
        self.root = root or config.containers_dir()
        self.names = os.path.join(self.root, "names")

    def _record_path(self, cid):
        return os.path.join(self.root, cid, "state.json")

    def reserve_name(self, name, cid):
        """names/<name> holds "<id> <pid of the process running it>". An ephemeral
        container keeps no record, so its name is stale once that process is gone."""
        os.makedirs(self.names, exist_ok=True)
        path = os.path.join(self.names, name)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale_name(name):
                    raise ContainerStateError(
                        f'the container name "/{name}" is already in use by container '
                        f'"{self._name_owner(name)}": remove or rename that container') from None
                self.release_name(name)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{cid} {os.getpid()}")
            return
        raise ContainerStateError(f'the container name "/{name}" is being taken concurrently')

    def _name_entry(self, name):
        try:
            with open(os.path.join(self.names, name)) as f:
                cid, _, pid = f.read().strip().partition(" ")
                return cid, int(pid or 0)
        except (OSError, ValueError):
            return "?", 0

    def _name_owner(self, name):
        return self._name_entry(name)[0]

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

    def create(self, record):
        os.makedirs(os.path.join(self.root, record["id"]), exist_ok=True)
        self._write(record)

    def _write(self, record):
        path = self._record_path(record["id"])
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, path)

    def update(self, cid, **fields):
        with self._locked(cid):
            record = self.get(cid)
            record.update(fields)
            self._write(record)
        return record

    def _locked(self, cid):
        return _Flock(os.path.join(self.root, cid, "lock"))

    def get(self, cid):
        try:
            with open(self._record_path(cid)) as f:
                return json.load(f)
        except FileNotFoundError:
            raise ContainerStateError(f"no such container: {cid}") from None

    def list(self):
        out = []
        for entry in sorted(os.listdir(self.root)) if os.path.isdir(self.root) else ():
            if len(entry) == 64:
                try:
                    out.append(self.get(entry))
                except (ContainerStateError, ValueError):
                    continue
        return out

    def lookup(self, ref):
        """A full id, a unique id prefix, or a name, as Docker resolves them."""
        path = os.path.join(self.names, ref)
        if os.path.isfile(path):
            return self.get(self._name_owner(ref))
        matches = [r for r in self.list() if r["id"].startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ContainerStateError(f"multiple containers match {ref!r}: use more of the id")
        raise ContainerStateError(f"no such container: {ref}")

    def remove(self, ref, force=False):
        record = self.lookup(ref)
        if not status.can_delete(record["status"]) and not force:
            raise ContainerStateError(
                f"cannot remove container {record['id'][:12]}: it is {record['status']}")
        cid = record["id"]
        with self._locked(cid):
            shutil.rmtree(os.path.join(self.root, cid), ignore_errors=True)
        if record.get("name"):
            try:
                os.unlink(os.path.join(self.names, record["name"]))
            except FileNotFoundError:
                pass
        return record

    def release_name(self, name):
        try:
            os.unlink(os.path.join(self.names, name))
        except FileNotFoundError:
            pass


class _Flock:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
