"""Volumes on disk: $FASTBOX_ROOT/volumes/<name>/{_data/, volume.json}, as Docker's
local driver lays them out. A volume is made whole or not at all (built under a
hidden name, then renamed), and removed only while no container record names it.

`python -I -m fastbox.volumes.store ROOT VOLUME...` (its -v strings): a detached --rm container's
monitor runs this once it has exited and its record is gone (runtime/monitor.py): its
anonymous volumes go, as `docker run --rm` removes them."""
import datetime
import json
import os
import shutil
import sys

from fastbox import config
from fastbox.errors import ContainerStateError, SpecError

_BUILDING = ".new-"


class VolumeNotFound(ContainerStateError):
    exit_code = 1


def volumes_dir():
    return os.path.join(config.root(), "volumes")


def _dir(name):
    return os.path.join(volumes_dir(), name)


def new_anonymous_name():
    return os.urandom(32).hex()


def create(name=None, labels=(), anonymous=False, exist_ok=True):
    """The volume's record ({"Name", "Driver", "Mountpoint", ...}), made if missing."""
    from fastbox.run_options import volume_name_ok
    name = name or new_anonymous_name()
    if not volume_name_ok(name):
        raise SpecError(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    if os.path.isdir(_dir(name)):
        if not exist_ok:
            raise SpecError(f"volume {name} already exists")
        return inspect(name)
    config.private_dir(volumes_dir())
    building = os.path.join(volumes_dir(), f"{_BUILDING}{os.getpid()}-{name}")
    os.mkdir(building, 0o701)  # containers' users reach _data through it, nobody lists it
    os.mkdir(os.path.join(building, "_data"), 0o755)
    meta = {"CreatedAt": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "Driver": "local", "Labels": dict(labels) or None, "Name": name, "Options": None,
            "Scope": "local", "Anonymous": bool(anonymous)}
    with open(os.path.join(building, "volume.json"), "w") as f:
        json.dump(meta, f)
    try:
        os.rename(building, _dir(name))
    except OSError:  # made meanwhile by another run: theirs stands
        shutil.rmtree(building, ignore_errors=True)
    return inspect(name)


def data_path(name, anonymous=False):
    """The host directory a container binds for volume name, made if missing (as
    `docker run -v name:/x` makes name)."""
    return create(name, anonymous=anonymous)["Mountpoint"]


def inspect(name):
    try:
        with open(os.path.join(_dir(name), "volume.json")) as f:
            meta = json.load(f)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        raise VolumeNotFound(f"no such volume: {name}") from None
    meta["Mountpoint"] = os.path.join(_dir(name), "_data")
    return meta


def list_volumes():
    d = volumes_dir()
    out = []
    for entry in sorted(os.listdir(d)) if os.path.isdir(d) else ():
        if entry.startswith(_BUILDING):
            _sweep(entry)
            continue
        try:
            out.append(inspect(entry))
        except VolumeNotFound:
            continue
    return out


def _sweep(entry):
    pid = entry[len(_BUILDING):].partition("-")[0]
    if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
        shutil.rmtree(os.path.join(volumes_dir(), entry), ignore_errors=True)


def users(name):
    """Ids of the containers whose records name volume name."""
    from fastbox.state.store import StateStore
    found = []
    for record in StateStore().list():
        for v in (record.get("spec") or {}).get("volumes") or ():
            if v.split(":")[0] == name:
                found.append(record["id"])
    return found


def remove(name, force=False):
    inspect(name)
    in_use = users(name)
    if in_use:
        raise ContainerStateError(f"remove {name}: volume is in use - "
                                  f"[{', '.join(c[:12] for c in in_use)}]")
    gone = os.path.join(volumes_dir(), f"{_BUILDING}0-{name}")
    try:
        os.rename(_dir(name), gone)
    except FileNotFoundError:  # removed meanwhile (a --rm container's monitor and its CLI)
        raise VolumeNotFound(f"no such volume: {name}") from None
    shutil.rmtree(gone, ignore_errors=True)


def prune(all=False):
    """Remove volumes no container uses: anonymous ones, or every one with all (Docker
    23's `volume prune` and `-a`). Returns their names."""
    removed = []
    for meta in list_volumes():
        if (all or meta.get("Anonymous")) and not users(meta["Name"]):
            remove(meta["Name"])
            removed.append(meta["Name"])
    return removed


def remove_anonymous(volume_strings):
    """`rm -v`, `run --rm`: the anonymous volumes among a container's -v strings, if no
    other container uses them."""
    for v in volume_strings or ():
        name = v.split(":")[0]
        if name.startswith("/"):
            continue
        try:
            if inspect(name).get("Anonymous") and not users(name):
                remove(name)
        except (VolumeNotFound, ContainerStateError):
            continue


if __name__ == "__main__":
    os.environ["FASTBOX_ROOT"] = sys.argv[1]
    remove_anonymous(sys.argv[2:])
