"""`fastbox bench startup|copyup` and `fastbox burst`: each parses, calls one library
function (fastbox.bench.*, fastbox.burst), prints."""
import sys
from typing import List, Optional

import typer

OUTPUTS = ("table", "json", "csv")


def register(app):
    bench = typer.Typer(help="Measure container startup latency and copy-up cost.",
                        no_args_is_help=True)
    bench.command("startup")(startup)
    bench.command("copyup")(copyup)
    app.add_typer(bench, name="bench")
    # Everything after the image is the command, its dashes included.
    app.command("burst", context_settings={"allow_interspersed_args": False})(burst)


def _usage(message):
    """A bad option: one line and Docker's 125 (not a click usage error, whose handling
    in app.main needs the click package)."""
    _fail(message, 125)


def _check_output(output, choices=OUTPUTS):
    if output not in choices:
        _usage(f"invalid --output {output!r}: choose from {', '.join(choices)}")


def _check_plot(plot):
    """Fail before the benchmark, not after it, when the plot cannot be drawn."""
    if plot:
        from fastbox.bench import report
        try:
            report._pyplot()
        except report.PlotUnavailable as e:
            _fail(str(e))


def _fail(message, code=1):
    print(f"fastbox: {message}", file=sys.stderr)
    raise typer.Exit(code)


class _Progress:
    """A rich progress bar on stderr while it is a terminal; nothing otherwise."""

    def __init__(self, what):
        self.what, self.bar, self.task = what, None, None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
        return self

    def __call__(self, done, total):
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(self.what, total=total)
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def startup(
        n: int = typer.Option(100, "-n", help="Timed containers per contender"),
        concurrency: int = typer.Option(1, "--concurrency", "-c",
                                        help="fastbox containers at a time (above 1: a fastbox.Pool)"),
        image: str = typer.Option("busybox", "--image", help="Image to run /bin/true in"),
        network: str = typer.Option("none", "--network", help="none or host"),
        warmup: int = typer.Option(5, "--warmup", help="Untimed containers per contender first"),
        compare: Optional[str] = typer.Option(
            None, "--compare", help="Peers to time on the same rootfs: runc,crun,bwrap,podman"),
        pool: Optional[bool] = typer.Option(
            None, "--pool/--no-pool",
            help="fastbox through a Pool (pre-made cgroups and network namespaces); "
                 "default: only when --concurrency is above 1"),
        output: str = typer.Option("table", "--output", "-o", help="table, json or csv"),
        plot: Optional[str] = typer.Option(None, "--plot",
                                           help="Write latency distributions and phases: FILE.png or FILE.html")):
    """Time whole /bin/true containers: median, p90, p99, min, max, the per-phase breakdown,
    and ratios to the peers."""
    from fastbox.bench import report, startup as bench
    _check_output(output)
    try:
        peers = bench.parse_compare(compare)
    except ValueError as e:
        _usage(f"invalid --compare: {e}")
    if network not in ("none", "host"):
        _usage(f"invalid --network {network!r}: choose none or host")
    _check_plot(plot)
    result = _measure("startup", lambda progress: bench.run(
        n=n, concurrency=concurrency, image=image, network=network, warmup=warmup,
        compare=peers, pool=pool, progress=progress))
    _report(result, output, report.startup_table, report.startup_csv, report.plot_startup, plot)
    if result["leftovers"]:
        raise typer.Exit(1)


def copyup(
        sizes: str = typer.Option("4k,64k,1m,16m,128m", "--sizes",
                                  help="File sizes, e.g. 4k,64k,1m,16m,128m,512m"),
        rounds: int = typer.Option(3, "--rounds", help="Containers per variant (the median is shown)"),
        output: str = typer.Option("table", "--output", "-o", help="table, json or csv"),
        plot: Optional[str] = typer.Option(None, "--plot", help="FILE.png or FILE.html")):
    """First-write cost through the overlay by file size: upper on tmpfs (--rm) or disk,
    volatile, metacopy=on; chmod with and without metacopy; a volume as the baseline."""
    from fastbox.bench import copyup as bench, report
    _check_output(output)
    try:
        parsed = bench.parse_sizes(sizes)
    except ValueError as e:
        _usage(f"invalid --sizes: {e}")
    _check_plot(plot)
    result = _measure("copyup", lambda progress: bench.run(parsed, rounds=rounds,
                                                           progress=progress))
    _report(result, output, report.copyup_table, report.copyup_csv, report.plot_copyup, plot)


def _measure(name, run):
    """run(progress) under a progress display: bad input is 125, a failed run 1."""
    try:
        with _Progress(name) as progress:
            return run(progress)
    except ValueError as e:
        _fail(str(e), 125)
    except RuntimeError as e:
        _fail(str(e))


def _report(result, output, table, csv, plot_to, plot):
    _emit(result, output, table, csv)
    if plot:
        plot_to(result, plot)
        print(f"plot written to {plot}", file=sys.stderr)


def _emit(result, output, table, csv):
    from fastbox.bench import report
    if output == "json":
        print(report.to_json(result))
    elif output == "csv":
        sys.stdout.write(csv(result))
    else:
        print(table(result))


def burst(
        image: str = typer.Argument(..., help="Image to run"),
        command: Optional[List[str]] = typer.Argument(None, help="Command and its arguments"),
        n: int = typer.Option(100, "-n", "--count", help="Containers to start"),
        concurrency: int = typer.Option(2, "--concurrency", "-c", help="Containers at a time"),
        memory: Optional[str] = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 256m"),
        cpus: Optional[str] = typer.Option(None, "--cpus", help="CPUs, e.g. 0.5"),
        pids_limit: Optional[int] = typer.Option(None, "--pids-limit", help="Process limit"),
        network: str = typer.Option("none", "--network", "--net", help="none or host"),
        env: List[str] = typer.Option([], "--env", "-e", help="KEY=VALUE"),
        netns: str = typer.Option("pooled", "--netns",
                                  help="pooled: one network namespace per slot, reused; fresh: one per container"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Discard the containers' output"),
        output: str = typer.Option("table", "--output", "-o", help="table or json"),
        rm: bool = typer.Option(True, "--rm", hidden=True, help="Implied: burst containers are removed")):
    """Start N containers (--rm implied) through a pool, CONCURRENCY at a time; print the
    throughput, the failures and the latency."""
    import json
    import os
    import time
    from fastbox import burst as fb_burst
    from fastbox.bench import report
    _check_output(output, ("table", "json"))
    if n < 1 or concurrency < 1:
        _usage("-n and --concurrency must be at least 1")
    codes, errors = {}, {}

    def count_error(e):
        key = f"{type(e).__name__}: {e}"
        errors[key] = errors.get(key, 0) + 1

    sink = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if quiet else None
    try:
        with fb_burst.Pool(image, size=concurrency, netns=netns, memory=memory, cpus=cpus,
                           pids_limit=pids_limit, network=network, env=env) as pool:
            with _Progress(f"burst {n}") as progress:
                done = [0]

                def tick(result):
                    done[0] += 1
                    progress(done[0], n)

                def failed(e):
                    count_error(e)
                    tick(None)

                t = time.perf_counter()
                results = pool.run_many(command or None, count=n, concurrency=concurrency,
                                        on_result=tick, on_error=failed,
                                        stdout=sink, stderr=sink)
                elapsed = time.perf_counter() - t
    finally:
        if sink is not None:
            os.close(sink)
    for r in results:
        codes[r.exit_code] = codes.get(r.exit_code, 0) + 1
    lat = report.summarize([r.timings["total"] for r in results]) if results else None
    nonzero = sum(v for k, v in codes.items() if k != 0)
    summary = {"image": pool.image.ref, "count": n, "concurrency": concurrency,
               "netns": pool.netns, "seconds": elapsed, "per_second": n / elapsed,
               "started": len(results), "exit_codes": {str(k): v for k, v in sorted(codes.items())},
               "failed_to_start": sum(errors.values()), "errors": errors,
               "failures": nonzero + sum(errors.values()),
               "latency_ms": {k: lat[k] for k in ("median", "p90", "p99", "min", "max")} if lat else None,
               "pool_setup_ms": pool.setup_ms}
    if output == "json":
        print(json.dumps(summary, indent=2))
    else:
        where = "host network" if network == "host" else f"{pool.netns} network namespaces"
        print(f"{n} containers in {elapsed:.3f} s: {n / elapsed:.1f} containers/s "
              f"(concurrency {concurrency}, {where})")
        print(f"failures: {summary['failures']}"
              + (f" (exit codes: {', '.join(f'{k}: {v}' for k, v in sorted(codes.items()) if k != 0)})"
                 if nonzero else "")
              + (f" (failed to start: {summary['failed_to_start']})" if errors else ""))
        for message, count in list(errors.items())[:5]:
            print(f"  {count} x {message}")
        if lat:
            print(f"latency: median {lat['median']:.2f} ms, p90 {lat['p90']:.2f} ms, "
                  f"p99 {lat['p99']:.2f} ms")
    if summary["failures"]:
        raise typer.Exit(1)
