"""Pull + unpack of a multi-layer image from a local docker-registry (see pull_compare.py):
fastbox's API and CLI against skopeo copy + umoci unpack, each round into an empty store.

Benchmarks report; they never assert on time. Rounds come from FASTBOX_BENCH_PULL_ROUNDS
(default 3): every round moves ~50 MB and writes ~130 MB.
"""
import os
import shutil
import tempfile

import pytest

import pull_compare

ROUNDS = max(int(os.environ.get("FASTBOX_BENCH_PULL_ROUNDS", "3")), 1)

pytestmark = pytest.mark.benchmark(group="pull + unpack, 4 layers, ~130 MB")


@pytest.fixture(scope="module")
def pulled_image():
    if os.geteuid() != 0:
        pytest.skip("umoci unpack and fastbox's store need root")
    workdir = tempfile.mkdtemp(prefix="fb-pull-bench-")
    try:
        setup = pull_compare.Setup(workdir)
    except RuntimeError as e:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.skip(str(e))
    yield setup
    setup.close()
    shutil.rmtree(workdir, ignore_errors=True)


def _bench(benchmark, setup, timed):
    """Each round gets an empty scratch dir, made and removed outside the timing."""
    scratch = []

    def fresh():
        while scratch:
            shutil.rmtree(scratch.pop(), ignore_errors=True)
        pull_compare.settle()
        scratch.append(tempfile.mkdtemp(dir=setup.workdir))
        return (setup.ref, scratch[-1]), {}

    try:
        benchmark.pedantic(timed, setup=fresh, rounds=ROUNDS, iterations=1)
    finally:
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)


def test_pull_skopeo_umoci(benchmark, pulled_image):
    _bench(benchmark, pulled_image, pull_compare.time_peer)


def test_pull_fastbox_api(benchmark, pulled_image):
    _bench(benchmark, pulled_image, pull_compare.time_fastbox_api)


def test_pull_fastbox_cli(benchmark, pulled_image):
    if pull_compare.fastbox_exe() is None:
        pytest.skip("no fastbox script next to the interpreter or on PATH")
    _bench(benchmark, pulled_image, pull_compare.time_fastbox_cli)
