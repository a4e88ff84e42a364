"""Costs of the Docker-parity commands and options (pytest-benchmark; reports, never
asserts on time): `run --init` against a plain run (the init's fork and exec inside
the container), pause+unpause of a running container (the freezer round trip), and
`cp` of a 16 MiB file out of a container (openat2-resolved, fd to fd).

FASTBOX_BENCH_ROUNDS (default 100) and FASTBOX_BENCH_WARMUP (default 10) set the rounds.
"""
import os
import subprocess

import pytest

import peers

ROUNDS = max(int(os.environ.get("FASTBOX_BENCH_ROUNDS", "100")), 1)
WARMUP = int(os.environ.get("FASTBOX_BENCH_WARMUP", "10"))


def _pedantic(benchmark, fn):
    return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)


@pytest.mark.benchmark(group="run /bin/true: plain vs --init")
@pytest.mark.parametrize("init", [False, True], ids=["plain", "init"])
def test_run_true(benchmark, fastbox, init):
    def once():
        r = fastbox.run("busybox", ["/bin/true"], init=init, **peers.FASTBOX_LIMITS)
        assert r.exit_code == 0
    _pedantic(benchmark, once)


@pytest.fixture(scope="module")
def running(fastbox):
    from fastbox import containers
    c = containers.run("busybox", ["sh", "-c", "head -c 16777216 /dev/zero > /big; sleep 3600"],
                       **peers.FASTBOX_LIMITS)
    c.exec_run(["sh", "-c", "while [ $(stat -c %s /big) -lt 16777216 ]; do sleep 0.01; done"])
    yield c
    c.remove(force=True)


@pytest.mark.benchmark(group="pause + unpause a running container")
def test_pause_unpause(benchmark, running):
    def once():
        running.pause()
        running.unpause()
    _pedantic(benchmark, once)


@pytest.mark.benchmark(group="cp a 16 MiB file out of a container (CLI)")
def test_cp_out(benchmark, running, tmp_path):
    cli = peers.fastbox_cli()
    dest = str(tmp_path / "big")

    def once():
        if os.path.exists(dest):
            os.unlink(dest)
        subprocess.run([cli, "cp", f"{running.id}:/big", dest], check=True)
    _pedantic(benchmark, once)
