"""Container commands other than the fast `run`: ps, rm, info (and, as they land,
create, start, exec, logs, stop, kill, stats...). Each parses, calls one library
function, prints."""
import os
from typing import List

import typer


def register(app):
    app.command()(ps)
    app.command()(rm)
    app.command()(info)


def ps(all: bool = typer.Option(False, "--all", "-a", help="Show exited containers too"),
       quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show ids")):
    """List containers kept on disk (those run without --rm)."""
    from fastbox.state.store import StateStore
    records = [r for r in StateStore().list() if all or r["status"] == "running"]
    if quiet:
        for r in records:
            print(r["id"][:12])
        return
    print(f"{'CONTAINER ID':<14} {'IMAGE':<24} {'COMMAND':<24} {'STATUS':<16} NAMES")
    for r in records:
        status = r["status"] + (f" ({r['exit_code']})" if r["status"] == "exited" else "")
        print(f"{r['id'][:12]:<14} {r['image'][:23]:<24} {' '.join(r['command'])[:23]:<24} "
              f"{status:<16} {r.get('name') or ''}")


def rm(containers: List[str] = typer.Argument(..., help="Names or ids"),
       force: bool = typer.Option(False, "--force", "-f", help="Remove even if running")):
    """Remove containers and their writable layers."""
    from fastbox.state.store import StateStore
    store = StateStore()
    for ref in containers:
        store.remove(ref, force=force)
        print(ref)


def info():
    """Show how this host is set up: cgroup mode, kernel, storage paths."""
    from fastbox import config
    from fastbox.runtime import cgroup
    lay = cgroup.layout()
    print(f"kernel:        {os.uname().release}")
    print(f"cgroup mode:   {lay.mode}")
    print(f"cgroup v2:     {lay.v2 or '-'}")
    print(f"cgroup v1:     {', '.join(f'{k}={v}' for k, v in sorted(lay.v1.items())) or '-'}")
    print(f"root:          {config.root()}")
    print(f"run dir:       {config.run_dir()}")
