"""Container commands other than the fast `run`. Each parses, calls one library
function, prints."""
import json
import os
import sys
import time
from typing import List, Optional

import typer


PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app):
    for command in (start, ps, logs, stop, kill, rm, wait, inspect, stats, top, rename, info):
        app.command()(command)
    app.command(context_settings=PASSTHROUGH)(create)
    app.command("exec", context_settings={**PASSTHROUGH, "help_option_names": []})(exec_)
    container = typer.Typer(help="Manage containers.", no_args_is_help=True)
    container.command("prune")(prune)
    container.command("ls")(ps)
    app.add_typer(container, name="container")
    # `fastbox container CMD` is `fastbox CMD`, as with Docker
    for command in (start, stop, kill, rm, wait, inspect, stats, top, rename, logs):
        container.command()(command)
    container.command("list")(ps)
    container.command(context_settings=PASSTHROUGH)(create)
    container.command("exec", context_settings={**PASSTHROUGH, "help_option_names": []})(exec_)
    container.command("run", context_settings={**PASSTHROUGH, "help_option_names": []})(_run)
    return container


def _run(ctx: typer.Context):
    """Run a command in a new container (see `fastbox run --help`)."""
    from fastbox.cli.run_command import main as run_main
    raise typer.Exit(run_main(list(ctx.args)))


def _opts(args):
    """`fastbox create` takes `run`'s options: parse them with run's own parser."""
    from fastbox.cli import run_args
    from fastbox.errors import SpecError
    opts, image, command = run_args.parse(args)
    if image is None:
        raise SpecError("'fastbox create' requires at least 1 argument (an image); "
                        "see 'fastbox create --help'")
    tty = opts.pop("tty")
    for key in ("help", "timings", "detach"):
        opts.pop(key)
    if opts["entrypoint"] is not None:
        opts["entrypoint"] = [opts["entrypoint"]] if opts["entrypoint"] else []
    return image, command, tty, {k: v for k, v in opts.items() if v is not None and v != []}


def create(ctx: typer.Context):
    """Create a container (same options as run) without starting it; print its id."""
    from fastbox import containers
    from fastbox.cli import run_command
    image, command, tty, opts = _opts(list(ctx.args))
    req = _Created(image, opts.pop("pull", None), opts.pop("cidfile", None))
    interactive = opts.pop("interactive", False)
    caller = run_command.Caller()
    run_command.discard_ports(opts, 2)
    run_command._before_create(req, caller)
    c = containers.create(image, command, tty=tty, interactive=interactive,
                          **run_command._as_caller(opts, caller))
    run_command._write_cidfile(req.cidfile, c.id, caller)
    print(c.id)


class _Created:
    """What run_command._before_create reads of a `create`."""

    def __init__(self, image, pull, cidfile):
        self.image, self.pull, self.cidfile = image, pull or "missing", cidfile


def for_each(refs, action):
    """Docker's multi-name commands: act on each name, report a bad one on stderr and go
    on; exit 1 at the end if any failed."""
    from fastbox.errors import FastboxError
    failed = False
    for ref in refs:
        try:
            action(ref)
        except FastboxError as e:
            print(f"fastbox: {e}", file=sys.stderr)
            failed = True
    if failed:
        raise typer.Exit(1)


def start(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
          attach: bool = typer.Option(False, "--attach", "-a", help="Follow output; return the exit code")):
    """Start created or stopped containers (one already running is left as it is)."""
    from fastbox import containers
    from fastbox.state import status

    def start_one(ref):
        c = containers.get(ref)
        if c.status != status.RUNNING:  # Docker: starting a running container is a no-op
            offset = c.log_position()  # attach to this run's output, not a previous run's
            c.start()
            if attach:
                _print_logs(c.logs(follow=True, offset=offset))
                raise typer.Exit(c.wait())
        print(ref)

    for_each(containers_, start_one)


def ps(all: bool = typer.Option(False, "--all", "-a", help="Show stopped containers too"),
       quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show ids"),
       format: Optional[str] = typer.Option(None, "--format",
                                            help="table, json, or a Go template: '{{.Names}}'"),
       filter_: List[str] = typer.Option([], "--filter", "-f",
                                         help="name, id, status, label, ancestor, exited=VALUE"),
       no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate ids and commands"),
       latest: bool = typer.Option(False, "--latest", "-l", help="Only the newest container"),
       last: int = typer.Option(-1, "--last", "-n", help="The N newest containers (any state)")):
    """List containers."""
    for line in ps_lines(all, quiet, format, filter_, no_trunc, latest, last):
        print(line)


def ps_lines(all=False, quiet=False, format=None, filter_=(), no_trunc=False, latest=False,
             last=-1):
    """What `ps` prints, as lines (the engine serves `ps` in a thread with it)."""
    from fastbox import containers
    from fastbox.cli import go_template, ps_view
    filters = ps_view.parse_filters(filter_)
    if latest:
        last = 1
    # As Docker: -n and a status or exited filter look at stopped containers too.
    every = all or last > 0 or "status" in filters or "exited" in filters
    # Docker's default lists restarting containers (Running, waiting to start again) too
    from fastbox.state import status
    records = [c.attrs for c in containers.list_containers(all=True)
               if every or c.status == status.RUNNING or status.restarting(c.attrs)]
    records.sort(key=lambda r: r.get("created_at") or "", reverse=True)
    records = [r for r in records if ps_view.matches(r, filters)]
    if last > 0:
        records = records[:last]
    if quiet:
        return [r["id"] if no_trunc else r["id"][:12] for r in records]
    rows = [ps_view.ContainerRow(r, trunc=not no_trunc) for r in records]
    return go_template.format_rows(format, rows, default=ps_view.DEFAULT_TABLE,
                                   titles=ps_view.TITLES)


def _print_logs(chunks):
    for stream, data in chunks:
        out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        out.write(data)
        out.flush()


def logs(container: str,
         follow: bool = typer.Option(False, "--follow", "-f", help="Follow new output"),
         tail: Optional[int] = typer.Option(None, "--tail", "-n", help="Only the last N lines"),
         timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Prefix each line with its time"),
         since: Optional[str] = typer.Option(None, "--since",
                                             help="Only lines since a time (2026-12-07T10:00:00Z, "
                                                  "a Unix time, or 10m before now)"),
         until: Optional[str] = typer.Option(None, "--until",
                                             help="Only lines before a time (same forms)")):
    """Print a container's output (stdout to stdout, stderr to stderr)."""
    from fastbox import containers
    from fastbox.runtime import logs as log_files
    start, end = _time_bound("--since", since), _time_bound("--until", until)
    c = containers.get(container)
    entries = log_files.read(c._store.log_path(c.id), follow=follow, tail=tail,
                             running=lambda: c.reload().status == "running")
    if start is not None or end is not None:
        entries = _between(entries, start, end)
    _print_logs(log_files.format_entry(e, timestamps) for e in entries)


def _time_bound(flag, value):
    from fastbox.errors import SpecError
    from fastbox.state import timestamps
    if value is None:
        return None
    try:
        return timestamps.point_in_time(value)
    except ValueError:
        raise SpecError(f"invalid value for {flag}: {value!r} (a time such as "
                        "2026-12-07T10:00:00Z, a Unix time, or a duration such as 10m)") from None


def _between(entries, start, end):
    """Entries logged at or after start and before end (Docker's --since/--until); with
    --follow, an --until in the past ends the stream at the first later line."""
    from fastbox.state import timestamps
    for e in entries:
        when = timestamps.parse(e["time"])
        if end is not None and when >= end:
            return
        if start is None or when >= start:
            yield e


def stop(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         time_: Optional[int] = typer.Option(None, "--time", "-t",
                                             help="Seconds to wait before SIGKILL (default: "
                                                  "the container's --stop-timeout, or 10)")):
    """Stop containers: SIGTERM, then SIGKILL after the timeout."""
    from fastbox import containers

    def stop_one(ref):
        containers.get(ref).stop(timeout=time_)
        print(ref)

    for_each(containers_, stop_one)


def kill(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
         signal: str = typer.Option("KILL", "--signal", "-s", help="Signal name or number")):
    """Send a signal to containers' main process."""
    from fastbox import containers
    from fastbox.containers import _signal_number
    sig = _signal_number(signal)  # a bad signal is one error, not one per container

    def kill_one(ref):
        containers.get(ref).kill(sig)
        print(ref)

    for_each(containers_, kill_one)


def rm(containers_: List[str] = typer.Argument(..., metavar="CONTAINER..."),
       force: bool = typer.Option(False, "--force", "-f", help="Kill it first if it runs"),
       volumes: bool = typer.Option(False, "--volumes", "-v", help="Remove its anonymous volumes")):
    """Remove containers, their writable layers and logs."""
    from fastbox import containers

    def remove_one(ref):
        containers.get(ref).remove(force=force, volumes=volumes)
        print(ref)

    for_each(containers_, remove_one)


def wait(containers_: List[str] = typer.Argument(..., metavar="CONTAINER...")):
    """Block until containers stop; print their exit codes."""
    from fastbox import containers
    for_each(containers_, lambda ref: print(containers.get(ref).wait()))


def inspect(refs: List[str] = typer.Argument(..., metavar="NAME|ID..."),
            format: Optional[str] = typer.Option(None, "--format", "-f",
                                                 help="A Go template: '{{.State.Status}}'"),
            type_: Optional[str] = typer.Option(None, "--type",
                                                help="container or image (default: either)")):
    """Low-level information on containers (or images) as JSON."""
    from fastbox.cli import go_template
    from fastbox.errors import SpecError
    if type_ not in (None, "container", "image"):
        raise SpecError(f'"{type_}" is not a valid value for --type')
    template = go_template.Template(go_template.unescape(format)) if format else None
    out = []

    def inspect_one(ref):
        found = _inspect_object(ref, type_)
        if template is None:
            out.append(found)
        else:
            print(template.execute(found))

    try:
        for_each(refs, inspect_one)
    finally:
        if template is None:
            print(json.dumps(out, indent=4))


def _inspect_object(ref, type_):
    """The container, else the image, that ref names; Docker's "No such object"."""
    from fastbox import containers
    from fastbox.errors import ContainerStateError, ImageError, FastboxError
    if type_ != "image":
        try:
            return containers.get(ref).inspect()
        except ContainerStateError as e:
            if not str(e).startswith("no such container"):
                raise
    if type_ != "container":
        from fastbox.cli import image_commands
        try:
            return image_commands.inspect_image(ref)
        except ImageError:
            pass
    what = {"container": "container", "image": "image"}.get(type_, "object")
    raise FastboxError(f"No such {what}: {ref}")


def stats(containers_: Optional[List[str]] = typer.Argument(None, metavar="[CONTAINER...]"),
          no_stream: bool = typer.Option(False, "--no-stream", help="One reading, then exit"),
          interval: float = typer.Option(1.0, "--interval", help="Seconds between readings"),
          format: Optional[str] = typer.Option(None, "--format",
                                               help="table, json, or a Go template: '{{.Name}} {{.MemPerc}}'"),
          no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate ids")):
    """Live CPU %, memory, block I/O and pids of running containers (Docker's columns)."""
    from fastbox import containers
    from fastbox.cli import go_template
    found = [containers.get(r) for r in containers_] if containers_ else containers.list_containers()
    named = dict(zip((c.id for c in found), containers_ or ()))
    template = (go_template.Template(go_template.unescape(format))
                if format and format != "json" and not format.startswith("table") else None)
    before = {c.id: c.stats() for c in found}
    while True:
        time.sleep(interval if not no_stream else min(interval, 0.5))
        rows = []
        for c in found:
            now = c.stats()
            cells = _stats_row(c, before[c.id], now)
            if no_trunc:
                cells = (c.id,) + cells[1:]
            rows.append({"Container": named.get(c.id, cells[0]),
                         **dict(zip(STATS_FIELDS, cells))})
            before[c.id] = now
        if template is None and format is None:
            print(_table([STATS_HEADER] + [tuple(r[f] for f in STATS_FIELDS) for r in rows]))
        else:
            for line in go_template.format_rows(format, rows, default=STATS_TABLE,
                                                titles=STATS_TITLES):
                print(line)
        sys.stdout.flush()
        if no_stream:
            return


STATS_FIELDS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
STATS_HEADER = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                "BLOCK I/O", "PIDS")
STATS_TITLES = {"Container": "CONTAINER", **dict(zip(STATS_FIELDS, STATS_HEADER))}
STATS_TABLE = "\t".join("{{." + f + "}}" for f in STATS_FIELDS)


def _stats_row(c, before, now):
    """One container's row, formatted as `docker stats` does: memory in binary units,
    I/O in decimal ones; NET I/O of the container's namespace, lo left out."""
    from fastbox.runtime import stats as cg_stats
    cpu = cg_stats.cpu_percent(before, now)
    mem = cg_stats.memory_percent(now)
    io = ((f"{_decimal_size(now['blkio_read'])} / {_decimal_size(now['blkio_write'])}")
          if now.get("blkio_read") is not None else "--")
    net = cg_stats.net_io(c.pid)
    net = f"{_decimal_size(net[0])} / {_decimal_size(net[1])}" if net else "--"
    return (c.id[:12], c.name or "--", f"{cpu:.2f}%" if cpu is not None else "--",
            f"{_size(cg_stats.memory_used(now))} / {_size(now['memory_limit'])}",
            f"{mem:.2f}%" if mem is not None else "--", net, io, str(now["pids"] or 0))


def _table(rows):
    """Columns three spaces apart, as Docker's tabwriter lays them out."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def _size(n):
    if n is None:
        return "--"
    if n >= 1 << 60:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n:.4g}TiB"


def _decimal_size(n):
    """Docker's HumanSizeWithPrecision(n, 3): 1.05MB, 0B."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}PB"


def top(container: str):
    """The processes running in a container."""
    from fastbox import containers
    print(f"{'UID':<8} {'PID':>8} {'PPID':>8} {'S':<2} CMD")
    for p in containers.get(container).top():
        print(f"{p['uid']:<8} {p['pid']:>8} {p['ppid']:>8} {p['state']:<2} {p['command']}")


def rename(container: str, new_name: str):
    """Rename a container."""
    from fastbox import containers
    containers.get(container).rename(new_name)


def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation")):
    """Remove every stopped container."""
    from fastbox import containers
    from fastbox.cli import prompts
    if not force and not prompts.confirm(
            "WARNING! This will remove all stopped containers.\n"
            "Are you sure you want to continue?"):
        raise typer.Exit(0)
    sizes = {c.id: _disk_usage(c._store.container_dir(c.id))
             for c in containers.list_containers(all=True)}
    removed = containers.prune()
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    from fastbox.cli.image_commands import human_size
    print(f"Total reclaimed space: {human_size(sum(sizes.get(cid, 0) for cid in removed))}")


def _disk_usage(path):
    """Bytes of the files under path (its writable layer, its log), not following links."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def exec_(ctx: typer.Context):
    """Run a command in a running container: fastbox exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD..."""
    from fastbox.cli import exec_command
    raise typer.Exit(exec_command.main(list(ctx.args)))


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
