"""What each typer command does: call one library function, print the result."""
import json
import os
import time

from fastbox.errors import SpecError


def import_image(tarball, reference, changes):
    from fastbox.images.store import ImageStore
    image = ImageStore().import_tar(tarball, reference, changes=_parse_changes(changes))
    print(image.id)


def _parse_changes(changes):
    """Docker's --change subset: CMD, ENTRYPOINT (JSON array or shell form), ENV, WORKDIR, USER."""
    out = {}
    for change in changes:
        key, _, value = change.strip().partition(" ")
        key, value = key.upper(), value.strip()
        if key in ("CMD", "ENTRYPOINT"):
            try:
                argv = json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]
            except ValueError:
                raise SpecError(f"invalid --change {change!r}: bad JSON array") from None
            out["Cmd" if key == "CMD" else "Entrypoint"] = argv
        elif key == "ENV":
            k, _, v = value.replace(" ", "=", 1).partition("=") if "=" not in value else value.partition("=")
            out.setdefault("Env", []).append(f"{k}={v}")
        elif key in ("WORKDIR", "USER"):
            out["WorkingDir" if key == "WORKDIR" else "User"] = value
        else:
            raise SpecError(f"invalid --change {change!r}: supported are CMD, ENTRYPOINT, ENV, WORKDIR, USER")
    return out


def list_images(quiet, fmt):
    from fastbox.images.store import ImageStore
    rows = ImageStore().list()
    if quiet:
        for r in rows:
            print(r["id"].split(":")[-1][:12])
    elif fmt == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'REPOSITORY':<40} {'TAG':<12} {'IMAGE ID':<14} {'CREATED':<22} SIZE")
        for r in rows:
            print(f"{r['repository']:<40} {r['tag']:<12} {r['id'].split(':')[-1][:12]:<14} "
                  f"{str(r.get('created', ''))[:19]:<22} {_human(r.get('size', 0))}")


def _human(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


def list_containers(all_, quiet):
    from fastbox.state.store import StateStore
    records = [r for r in StateStore().list() if all_ or r["status"] == "running"]
    if quiet:
        for r in records:
            print(r["id"][:12])
        return
    print(f"{'CONTAINER ID':<14} {'IMAGE':<24} {'COMMAND':<24} {'STATUS':<16} NAMES")
    for r in records:
        status = r["status"] + (f" ({r['exit_code']})" if r["status"] == "exited" else "")
        print(f"{r['id'][:12]:<14} {r['image'][:23]:<24} {' '.join(r['command'])[:23]:<24} "
              f"{status:<16} {r.get('name') or ''}")


def remove_containers(refs, force):
    from fastbox.state.store import StateStore
    store = StateStore()
    for ref in refs:
        store.remove(ref, force=force)
        print(ref)


def show_info():
    from fastbox import config
    from fastbox.runtime import cgroup
    lay = cgroup.layout()
    print(f"kernel:        {os.uname().release}")
    print(f"cgroup mode:   {lay.mode}")
    print(f"cgroup v2:     {lay.v2 or '-'}")
    print(f"cgroup v1:     {', '.join(f'{k}={v}' for k, v in sorted(lay.v1.items())) or '-'}")
    print(f"root:          {config.root()}")
    print(f"run dir:       {config.run_dir()}")
    print(f"time:          {time.strftime('%Y-%m-%d %H:%M:%S')}")
