"""Lifecycle latency with pytest-benchmark: exec /bin/true into a running container
(fastbox API and CLI, runc exec, crun exec), and starting a detached container (fastbox API
and CLI). The monitor's resident memory goes into extra_info of the detached-start rows.

Benchmarks report; they never assert on time. Rounds and warmup come from
FASTBOX_BENCH_ROUNDS (default 100) and FASTBOX_BENCH_WARMUP (default 10).
benchmarks/lifecycle_compare.py prints the same comparison (plus conmon) as one table.
"""
import os
import statistics
import subprocess
import threading

import pytest

import lifecycle_compare
import peers

ROUNDS = max(int(os.environ.get("FASTBOX_BENCH_ROUNDS", "100")), 1)
WARMUP = int(os.environ.get("FASTBOX_BENCH_WARMUP", "10"))
EXEC_GROUP = "exec /bin/true into a running container"
START_GROUP = "start a detached container (sleep 3600)"


def _pedantic(benchmark, fn, **kw):
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1, **kw)


@pytest.fixture(scope="module")
def target(fastbox):
    """One running fastbox container to exec into."""
    from fastbox import containers
    c = containers.run("busybox", lifecycle_compare.LONG_RUNNING, **peers.FASTBOX_LIMITS)
    yield c
    c.remove(force=True)


@pytest.fixture(scope="module")
def oci(peer_workspace, tmp_path_factory):
    """tool -> (OciPeer, id of a running `sleep 3600` container in it)."""
    made, running = [], {}
    workdir = str(tmp_path_factory.mktemp("lifecycle-peers"))
    try:
        for tool in ("runc", "crun"):
            if tool in peer_workspace.skipped:
                continue
            peer = lifecycle_compare.OciPeer(tool, workdir, peer_workspace.rootfs)
            made.append(peer)
            cid = f"lcb-{tool}-{os.getpid()}"
            peer.run_detached(cid)
            running[tool] = (peer, cid)
        yield running
    finally:
        for peer in made:
            peer.delete_all()


# Peers first: crun's namespace switch needs a single-threaded process.

@pytest.mark.benchmark(group=EXEC_GROUP)
def test_crun_exec(benchmark, oci):
    if "crun" not in oci:
        pytest.skip("crun not installed")
    if threading.active_count() != 1:
        pytest.skip("crun needs a mount-namespace switch, which a threaded process cannot do")
    peer, cid = oci["crun"]
    _pedantic(benchmark, lambda: peer.exec_true(cid))


@pytest.mark.benchmark(group=EXEC_GROUP)
def test_runc_exec(benchmark, oci):
    if "runc" not in oci:
        pytest.skip("runc not installed")
    peer, cid = oci["runc"]
    _pedantic(benchmark, lambda: peer.exec_true(cid))


@pytest.mark.benchmark(group=EXEC_GROUP)
def test_fastbox_exec_api(benchmark, target):
    def once():
        result = target.exec_run(["/bin/true"])
        assert result.exit_code == 0
    _pedantic(benchmark, once)


@pytest.mark.benchmark(group=EXEC_GROUP)
def test_fastbox_exec_cli_with_engine(benchmark, target, engine):
    """`fastbox exec` as users run it, the engine running: a warm forked worker runs it."""
    argv = [engine, "exec", target.id, "/bin/true"]
    _pedantic(benchmark, lambda: subprocess.run(argv, check=True, **lifecycle_compare.QUIET))


@pytest.mark.benchmark(group=EXEC_GROUP)
def test_fastbox_exec_cli_python(benchmark, target):
    """The same with no engine: the Python CLI."""
    argv = [peers.fastbox_cli(), "exec", target.id, "/bin/true"]
    env = {**os.environ, "FASTBOX_NO_ENGINE": "1"}
    _pedantic(benchmark, lambda: subprocess.run(argv, check=True, env=env,
                                                **lifecycle_compare.QUIET))


def _bench_start(benchmark, start):
    """Time start(); the previous round's container is removed in the (untimed) setup."""
    made = []
    rss = []

    def setup():
        while made:
            c = made.pop()
            rss.append(lifecycle_compare.memory_of(c.inspect()["MonitorPid"]))
            c.remove(force=True)

    def once():
        made.append(start())

    try:
        _pedantic(benchmark, once, setup=setup)
    finally:
        setup()
    for key in ("rss_kb", "pss_kb"):
        benchmark.extra_info[f"monitor_{key}_median"] = statistics.median(m[key] for m in rss)


@pytest.mark.benchmark(group=START_GROUP)
def test_fastbox_start_detached_api(benchmark, fastbox):
    from fastbox import containers
    _bench_start(benchmark, lambda: containers.run("busybox", lifecycle_compare.LONG_RUNNING,
                                                   **peers.FASTBOX_LIMITS))


@pytest.mark.benchmark(group=START_GROUP)
def test_fastbox_start_detached_cli(benchmark, fastbox):
    from fastbox import containers
    argv = [peers.fastbox_cli(), "run", "-d", *peers.FASTBOX_CLI_LIMITS, "busybox",
            *lifecycle_compare.LONG_RUNNING]

    def start():
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
        return containers.get(r.stdout.strip())

    _bench_start(benchmark, start)
