"""Startup latency of a /bin/true container: fastbox's API against runc, crun and bwrap.

Benchmarks report; they never assert on time. Rounds and warmup come from
FASTBOX_BENCH_ROUNDS (default 100) and FASTBOX_BENCH_WARMUP (default 10).
"""
import os
import statistics
import threading

import pytest

import peers

ROUNDS = max(int(os.environ.get("FASTBOX_BENCH_ROUNDS", "100")), 1)
WARMUP = int(os.environ.get("FASTBOX_BENCH_WARMUP", "10"))

pytestmark = pytest.mark.benchmark(group="start /bin/true")


def _pedantic(benchmark, fn):
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


def _bench_peer(benchmark, ws, peer):
    if peer in ws.skipped:
        pytest.skip(ws.skipped[peer])
    argv = ws.argv(peer)
    try:
        _pedantic(benchmark, lambda: peers.run_once(argv))
    except peers.PeerError:
        if peer != "bwrap":  # a failed run may leave its container behind
            peers.force_delete(peer, ws.state(peer), ws.cid(peer))
        raise


# Peers first: crun's in-process namespace switch needs a single-threaded process, and
# fastbox may leave helper threads behind.

def test_runc_start(benchmark, peer_workspace):
    _bench_peer(benchmark, peer_workspace, "runc")


def test_crun_start(benchmark, peer_workspace):
    if threading.active_count() != 1:
        pytest.skip("crun needs a mount-namespace switch, which a threaded process cannot do")
    with peers.crun_namespace():  # crun 1.8 refuses hybrid cgroups; pytest times it here
        _bench_peer(benchmark, peer_workspace, "crun")


def test_bwrap_start(benchmark, peer_workspace):
    _bench_peer(benchmark, peer_workspace, "bwrap")


def _bench_api(benchmark, fastbox, **options):
    phases = []

    def start():
        result = fastbox.run("busybox", ["/bin/true"], remove=True,
                             **peers.FASTBOX_LIMITS, **options)
        phases.append(result.timings)
        return result

    result = _pedantic(benchmark, start)
    assert result.exit_code == 0
    timed = [t for t in phases[-ROUNDS:] if t]
    for key in dict.fromkeys(k for t in timed for k in t):
        benchmark.extra_info[f"{key}_ms"] = statistics.median(t[key] for t in timed if key in t)


def test_api_start_true(benchmark, fastbox):
    _bench_api(benchmark, fastbox)


def test_api_start_network_host(benchmark, fastbox):
    _bench_api(benchmark, fastbox, network="host")


def test_cli_start_true_with_engine(benchmark, engine):
    """`fastbox run --rm busybox /bin/true` from a shell-like parent, the engine running."""
    argv = [engine, "run", "--rm", *peers.FASTBOX_CLI_LIMITS, "busybox", "/bin/true"]
    _pedantic(benchmark, lambda: peers.run_once(argv))


def test_cli_start_true_python(benchmark, fastbox):
    """The same command with no engine: the Python CLI."""
    argv = [peers.fastbox_cli(), "run", "--rm", *peers.FASTBOX_CLI_LIMITS, "busybox",
            "/bin/true"]
    env = {**os.environ, "FASTBOX_NO_ENGINE": "1"}
    _pedantic(benchmark, lambda: peers.run_once(argv, env))
