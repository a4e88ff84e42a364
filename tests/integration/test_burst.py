"""The burst API (fastbox/burst.py): run_many, Pool, arun. Every test is also checked by
conftest's leak check (cgroups, mounts, child processes); these check what the pool made
while it is open, and that it is gone once it closes, failures included."""
import asyncio
import glob
import os
import signal
import threading
import time

import pytest
from cgroup_pids import container_cgroups

import fastbox
from fastbox.errors import CommandNotFound, SpecError
from fastbox.runtime import cgroup

LIMITS = {"memory": "256m", "cpus": 1, "pids_limit": 1024}
# The memory limit as the container sees it at the root of its cgroup namespace.
MEMORY_LIMIT_FILE = ("/sys/fs/cgroup/memory.max" if cgroup.layout().mode == "v2"
                     else "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def thread_netns():
    return os.readlink("/proc/thread-self/ns/net")


def test_run_many_returns_count_results_with_exit_codes(busybox):
    results = fastbox.run_many("busybox", ["sh", "-c", "exit 3"], count=7, concurrency=2, **LIMITS)
    assert len(results) == 7
    assert [r.exit_code for r in results] == [3] * 7
    assert len({r.id for r in results}) == 7
    for r in results:
        assert {"cgroup_ready", "cloned", "execed", "exited", "total"} <= set(r.timings)
        assert 0 < r.timings["execed"] <= r.timings["exited"] <= r.timings["total"]


def test_burst_leaves_nothing(busybox):
    threads = threading.active_count()
    assert container_cgroups() == []
    results = fastbox.run_many("busybox", ["/bin/true"], count=60, concurrency=2, **LIMITS)
    assert [r.exit_code for r in results] == [0] * 60
    assert container_cgroups() == []
    assert threading.active_count() == threads  # every burst thread joined


def test_pool_cgroups_exist_while_open_and_go_after_failures(busybox):
    with pytest.raises(RuntimeError, match="boom"):
        with fastbox.Pool("busybox", size=3, **LIMITS) as pool:
            hierarchies = len({d.split("/")[4] for d in container_cgroups()})
            assert len(container_cgroups()) == 3 * hierarchies
            with pytest.raises(CommandNotFound):
                pool.run(["/no/such/program"])
            assert pool.run(["sh", "-c", "exit 4"]).exit_code == 4
            with pytest.raises(CommandNotFound):
                pool.run_many(["/no/such/program"], count=5)
            raise RuntimeError("boom")
    assert container_cgroups() == []
    pool.close()  # twice is fine
    with pytest.raises(SpecError, match="closed"):
        pool.run(["/bin/true"])


def test_pool_setup_cost_is_visible(busybox):
    with fastbox.Pool("busybox", size=2, **LIMITS) as pool:
        assert set(pool.setup_ms) == {"image", "cgroups", "netns"}
        assert pool.netns == "pooled"
    with fastbox.Pool("busybox", size=2, network="host") as pool:
        assert "netns" not in pool.setup_ms and pool.netns == "fresh"


@pytest.mark.parametrize("options, words", [
    ({"network": "bridge", "publish": ["8080:80"]}, "cannot publish ports"),
    ({"network": "appnet", "ip": "10.70.0.5"}, "cannot share one --ip"),
])
def test_pool_refuses_what_one_address_or_port_cannot_serve(busybox, options, words):
    """Refused before any veth or address is made (what the pool made goes with it)."""
    with pytest.raises(SpecError, match=words):
        fastbox.Pool("busybox", size=2, **options)


def test_run_many_on_error_goes_on(busybox):
    errors = []
    with fastbox.Pool("busybox", size=2) as pool:
        results = pool.run_many(["/no/such/program"], count=4, on_error=errors.append)
    assert results == [] and len(errors) == 4
    assert all(isinstance(e, CommandNotFound) for e in errors)


def test_pooled_netns_is_private_reused_per_slot_and_up(busybox):
    host = thread_netns()
    script = "readlink /proc/self/ns/net; hostname; cat /sys/class/net/lo/operstate; ip -o link | wc -l"
    with fastbox.Pool("busybox", size=2) as pool:
        results = pool.run_many(["sh", "-c", script], count=6, capture_output=True)
    assert thread_netns() == host  # the caller's threads are back in their own namespace
    outs = [r.stdout.decode().split() for r in results]
    namespaces = {o[0] for o in outs}
    assert host not in namespaces
    assert 1 <= len(namespaces) <= 2  # one per slot, reused
    assert all(o[1] != os.uname().nodename for o in outs)  # not the host's name
    assert all(o[2] == "unknown" and o[3] == "1" for o in outs)  # only lo, and it is up


def test_fresh_netns_gives_each_container_its_own(busybox):
    host = thread_netns()
    results = fastbox.run_many("busybox", ["readlink", "/proc/self/ns/net"], count=4,
                               concurrency=2, netns="fresh", capture_output=True)
    assert all(r.exit_code == 0 for r in results)
    assert host not in {r.stdout.decode().strip() for r in results}


def test_netns_mode_is_checked(busybox):
    with pytest.raises(SpecError, match="netns"):
        fastbox.Pool("busybox", netns="shared")


def test_limits_are_the_pools(busybox):
    with fastbox.Pool("busybox", size=1, **LIMITS) as pool:
        with pytest.raises(SpecError, match="limits are the pool's"):
            pool.run(["/bin/true"], memory="64m")
        r = pool.run(["cat", MEMORY_LIMIT_FILE], capture_output=True)
    assert r.stdout.strip() == str(256 << 20).encode()


def test_arun_under_gather(busybox):
    async def main():
        return await asyncio.gather(*[fastbox.arun("busybox", ["sh", "-c", f"exit {i}"], **LIMITS)
                                      for i in range(6)])
    results = asyncio.run(main())
    assert [r.exit_code for r in results] == list(range(6))
    assert all("execed" in r.timings and "total" in r.timings for r in results)
    assert container_cgroups() == []


def test_arun_cancelled_kills_its_container(busybox):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fastbox.arun("busybox", ["sleep", "30"]), timeout=0.3)
    t = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t < 10
    assert container_cgroups() == []


def test_interrupted_burst_kills_and_removes_everything(busybox):
    """Ctrl-C during run_many: the running containers are killed and torn down, then
    KeyboardInterrupt is raised."""
    pool = fastbox.Pool("busybox", size=2)
    finished = threading.Event()

    def interrupt_once_both_run():
        while not finished.is_set():
            if len(pool._live.fds) == 2:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.01)

    t = threading.Thread(target=interrupt_once_both_run)
    start = time.monotonic()
    try:
        t.start()
        with pytest.raises(KeyboardInterrupt):
            pool.run_many(["sleep", "30"], count=6)
    finally:
        finished.set()
        t.join()
        pool.close()
    assert time.monotonic() - start < 10
    assert container_cgroups() == []
