"""`fastbox volume create/ls/inspect/rm/prune` (fastbox.volumes.store)."""
from typing import List, Optional

import typer


def register(app):
    volume = typer.Typer(help="Manage volumes.", no_args_is_help=True)
    volume.command()(create)
    volume.command("ls")(ls)
    volume.command("list")(ls)
    volume.command()(inspect)
    volume.command("rm")(rm)
    volume.command("remove")(rm)
    volume.command()(prune)
    app.add_typer(volume, name="volume")


def create(name: Optional[str] = typer.Argument(None, metavar="[VOLUME]"),
           label: List[str] = typer.Option([], "--label", "-l", help="KEY=VALUE")):
    """Create a volume (a generated name if none is given); print its name."""
    from fastbox.run_options import labels
    from fastbox.volumes import store
    print(store.create(name, labels=labels(label))["Name"])


def ls(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only names"),
       format: Optional[str] = typer.Option(None, "--format",
                                            help="table, json, or a Go template: '{{.Name}}'")):
    """List volumes."""
    from fastbox.cli import go_template
    from fastbox.volumes import store
    found = store.list_volumes()
    if quiet:
        for v in found:
            print(v["Name"])
        return
    for line in go_template.format_rows(format, [_row(v) for v in found],
                                        default="{{.Driver}}\t{{.Name}}", titles=VOLUME_TITLES):
        print(line)


VOLUME_TITLES = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                 "Labels": "LABELS", "Scope": "SCOPE", "Links": "LINKS", "Size": "SIZE",
                 "CreatedAt": "CREATED AT"}


def _row(v):
    """A volume as `volume ls --format` sees it (Docker's fields; labels as k=v,...)."""
    labels = v.get("Labels") or {}
    return {"Driver": v.get("Driver", "local"), "Name": v["Name"],
            "Mountpoint": v.get("Mountpoint", ""), "Scope": v.get("Scope", "local"),
            "Labels": ",".join(f"{k}={labels[k]}" for k in sorted(labels)),
            "Links": "N/A", "Size": "N/A", "CreatedAt": v.get("CreatedAt", "")}


def inspect(names: List[str] = typer.Argument(..., metavar="VOLUME..."),
            format: Optional[str] = typer.Option(None, "--format", "-f",
                                                 help="A Go-template subset: {{.Mountpoint}}")):
    """Volumes' details as JSON, or each through --format."""
    from fastbox.cli import go_template
    from fastbox.volumes import store
    print(go_template.inspect_text(format, [store.inspect(n) for n in names]))


def rm(names: List[str] = typer.Argument(..., metavar="VOLUME..."),
       force: bool = typer.Option(False, "--force", "-f", help="No error for a missing volume")):
    """Remove volumes no container uses."""
    from fastbox.volumes import store
    for name in names:
        try:
            store.remove(name)
        except store.VolumeNotFound:
            if not force:
                raise
            continue
        print(name)


def prune(all: bool = typer.Option(False, "--all", "-a", help="Every unused volume, named too"),
          force: bool = typer.Option(False, "--force", "-f", help="Do not ask")):
    """Remove unused anonymous volumes (every unused volume with --all)."""
    import sys
    from fastbox.volumes import store
    if not force:
        what = "all volumes" if all else "all anonymous local volumes"
        sys.stdout.write(f"WARNING! This will remove {what} not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            raise typer.Exit(0)
    removed = store.prune(all=all)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)
        print("")
    print("Total reclaimed space: 0B" if not removed else f"Total reclaimed space: {len(removed)} volumes")
