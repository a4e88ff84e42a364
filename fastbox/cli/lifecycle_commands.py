"""`version`, `restart`, `pause`, `unpause`, `update`: each parses, calls one library
function, prints what Docker prints."""
import os
import sys
from typing import List, Optional

import typer


def register(app, container_group):
    app.callback()(_main_options)
    app.command()(version)
    for command in (restart, pause, unpause, update):
        app.command()(command)
        container_group.command()(command)


def _print_version(value: bool):
    if value:
        import fastbox
        print(f"fastbox version {fastbox.__version__}")
        raise typer.Exit(0)


def _main_options(version_: bool = typer.Option(False, "--version", "-v", is_eager=True,
                                                callback=_print_version,
                                                help="Print the version and exit")):
    """fastbox: containers from Linux primitives, started in milliseconds."""


def version():
    """Show the fastbox version, and what it runs on."""
    import platform
    import fastbox
    from fastbox.runtime import cgroup
    print("Client:")
    print(f" Version:           {fastbox.__version__}")
    print(f" Python version:    {platform.python_version()}")
    print(f" OS/Arch:           linux/{_arch()}")
    print("")
    print("Engine:")
    print(f" Version:           {fastbox.__version__}")
    print(f" Kernel Version:    {os.uname().release}")
    print(f" Cgroups:           {cgroup.layout().mode}")
    print(f" Running:           {_engine_state()}")


def _arch():
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _engine_state():
    try:
        from fastbox.state import engine_process
        pid = engine_process.running()
    except Exception:  # noqa: BLE001 - version must print whatever the engine's state
        pid = None
    return f"yes (pid {pid})" if pid else "no (commands run in-process)"


def restart(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
            time_: Optional[int] = typer.Option(None, "--time", "-t",
                                                help="Seconds to wait before SIGKILL")):
    """Restart containers: stop (if running), then start on the same writable layer."""
    from fastbox import containers
    from fastbox.cli.container_commands import for_each
    for_each(containers_, lambda ref: (containers.get(ref).restart(timeout=time_), print(ref)))


def pause(containers_: List[str] = typer.Argument(..., metavar="CONTAINER...")):
    """Freeze every process of containers (the cgroup freezer)."""
    from fastbox import containers
    from fastbox.cli.container_commands import for_each
    for_each(containers_, lambda ref: (containers.get(ref).pause(), print(ref)))


def unpause(containers_: List[str] = typer.Argument(..., metavar="CONTAINER...")):
    """Thaw paused containers."""
    from fastbox import containers
    from fastbox.cli.container_commands import for_each
    for_each(containers_, lambda ref: (containers.get(ref).unpause(), print(ref)))


def update(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
           memory: Optional[str] = typer.Option(None, "--memory", "-m", help="Memory limit"),
           memory_swap: Optional[str] = typer.Option(None, "--memory-swap",
                                                     help="Memory plus swap (-1: unlimited)"),
           memory_reservation: Optional[str] = typer.Option(None, "--memory-reservation",
                                                            help="Soft memory limit"),
           cpus: Optional[str] = typer.Option(None, "--cpus", help="Number of CPUs"),
           cpu_shares: Optional[str] = typer.Option(None, "--cpu-shares", "-c",
                                                    help="Relative CPU weight"),
           cpu_period: Optional[str] = typer.Option(None, "--cpu-period", help="CFS period (us)"),
           cpu_quota: Optional[str] = typer.Option(None, "--cpu-quota", help="CFS quota (us)"),
           cpuset_cpus: Optional[str] = typer.Option(None, "--cpuset-cpus", help="CPUs allowed"),
           cpuset_mems: Optional[str] = typer.Option(None, "--cpuset-mems", help="Nodes allowed"),
           pids_limit: Optional[str] = typer.Option(None, "--pids-limit", help="Process limit"),
           restart: Optional[str] = typer.Option(None, "--restart", help="Restart policy")):
    """Change the limits of containers (running ones at once, in their cgroups)."""
    from fastbox import containers
    from fastbox.errors import SpecError
    limits = {k: v for k, v in dict(
        memory=memory, memory_swap=memory_swap, memory_reservation=memory_reservation, cpus=cpus,
        cpu_shares=cpu_shares, cpu_period=cpu_period, cpu_quota=cpu_quota,
        cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems, pids_limit=pids_limit,
        restart=restart).items() if v is not None}
    if not limits:
        raise SpecError("you must provide one or more flags when using this command")
    from fastbox.cli.container_commands import for_each
    try:
        for_each(containers_, lambda ref: (containers.get(ref).update(**limits), print(ref)))
    finally:
        sys.stdout.flush()
