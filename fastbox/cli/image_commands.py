"""Image commands: import, images (and, as they land, pull, push, save, load, tag, rmi...).
Each parses, calls one library function, prints."""
import json
from typing import List, Optional

import typer

from fastbox.errors import SpecError


def register(app):
    app.command("import")(import_)
    app.command()(images)


def import_(tarball: str = typer.Argument(..., help="A rootfs tarball (plain or gzip)"),
            reference: str = typer.Argument(..., help="NAME[:TAG] for the new image"),
            change: List[str] = typer.Option([], "--change", "-c",
                                             help='Set CMD, ENTRYPOINT, ENV, WORKDIR or USER, e.g. CMD ["sh"]')):
    """Create a one-layer image from a root filesystem tarball."""
    from fastbox.images.store import ImageStore
    image = ImageStore().import_tar(tarball, reference, changes=parse_changes(change))
    print(image.id)


def parse_changes(changes):
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
            k, sep, v = value.partition("=")
            if not sep:
                k, _, v = value.partition(" ")
            out.setdefault("Env", []).append(f"{k}={v.strip()}")
        elif key in ("WORKDIR", "USER"):
            out["WorkingDir" if key == "WORKDIR" else "User"] = value
        else:
            raise SpecError(f"invalid --change {change!r}: supported are CMD, ENTRYPOINT, ENV, WORKDIR, USER")
    return out


def images(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show image ids"),
           format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines")):
    """List images in the local store."""
    from fastbox.images.store import ImageStore
    rows = ImageStore().list()
    if quiet:
        for r in rows:
            print(r["id"].split(":")[-1][:12])
    elif format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'REPOSITORY':<40} {'TAG':<12} {'IMAGE ID':<14} {'CREATED':<22} SIZE")
        for r in rows:
            print(f"{r['repository']:<40} {r['tag']:<12} {r['id'].split(':')[-1][:12]:<14} "
                  f"{str(r.get('created', ''))[:19]:<22} {human_size(r.get('size', 0))}")


def human_size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"
