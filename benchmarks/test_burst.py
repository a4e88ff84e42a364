"""Burst throughput: 200 /bin/true containers (pid, mount, uts, ipc, net and cgroup
namespaces, overlay, 256 MiB / 1 CPU / 1024 pids) started from one Python process, two at a
time, through fastbox.run_many (a Pool: cgroups and network namespaces made once), with a
fresh network namespace per container, through plain threads calling fastbox.run, and
through asyncio's fastbox.arun.

Benchmarks report; they never assert on time. extra_info carries containers/s of the median
round. Rounds come from FASTBOX_BENCH_BURST_ROUNDS (default 5), warmup rounds from
FASTBOX_BENCH_BURST_WARMUP (default 1).
"""
import asyncio
import os
import threading

import pytest

import peers

COUNT = 200
CONCURRENCY = 2
ROUNDS = max(int(os.environ.get("FASTBOX_BENCH_BURST_ROUNDS", "5")), 1)
WARMUP = int(os.environ.get("FASTBOX_BENCH_BURST_WARMUP", "1"))
COMMAND = ["/bin/true"]

pytestmark = pytest.mark.benchmark(group=f"burst of {COUNT} /bin/true, concurrency {CONCURRENCY}")


def _bench(benchmark, burst):
    results = benchmark.pedantic(burst, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    assert len(results) == COUNT and all(r.exit_code == 0 for r in results)
    median = benchmark.stats.stats.median
    benchmark.extra_info["containers"] = COUNT
    benchmark.extra_info["concurrency"] = CONCURRENCY
    benchmark.extra_info["containers_per_second"] = round(COUNT / median, 1)
    totals = sorted(r.timings["total"] for r in results)
    benchmark.extra_info["last_round_latency_median_ms"] = round(totals[len(totals) // 2], 3)


@pytest.mark.parametrize("netns", ["pooled", "fresh"])
def test_run_many(benchmark, fastbox, netns):
    _bench(benchmark, lambda: fastbox.run_many("busybox", COMMAND, count=COUNT,
                                               concurrency=CONCURRENCY, netns=netns,
                                               **peers.FASTBOX_LIMITS))


def test_threads_calling_run(benchmark, fastbox):
    def burst():
        results, lock = [], threading.Lock()
        left = iter(range(COUNT))

        def worker():
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                r = fastbox.run("busybox", COMMAND, remove=True, **peers.FASTBOX_LIMITS)
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    _bench(benchmark, burst)


def test_arun(benchmark, fastbox):
    async def burst():
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one():
            async with gate:
                return await fastbox.arun("busybox", COMMAND, **peers.FASTBOX_LIMITS)

        return await asyncio.gather(*[one() for _ in range(COUNT)])

    _bench(benchmark, lambda: asyncio.run(burst()))
