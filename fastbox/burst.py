"""Many containers from one Python process: pools, run_many, and asyncio's arun.

Nothing here forks Python: the core spawns every container (GIL released) and waits are
on pids/pidfds. A Pool keeps what a burst would otherwise redo per container ready and
visible: the image resolved once, and `size` cgroups made once with their limits and
reused, one container at a time each. Everything it made is removed when it closes.

    with fastbox.Pool("busybox", size=2, memory="64m") as pool:
        results = pool.run_many(["/bin/true"], count=1000)
"""
import asyncio
import os
import queue
import threading

from fastbox import api
from fastbox.runtime import cgroup, container
from fastbox.spec import RunSpec

LIMITS = ("memory", "cpus", "pids_limit")


class Pool:
    """size ready cgroup slots with the pool's limits; run() borrows one per container."""

    def __init__(self, image, size=2, **run_options):
        if size < 1:
            from fastbox.errors import SpecError
            raise SpecError(f"invalid pool size {size}: must be at least 1")
        self.options = {k: v for k, v in run_options.items() if k != "remove"}
        probe = RunSpec(image, None, remove=True, **self.options)  # validates once
        self.image = api.resolve_image(probe.image)
        self.size = size
        self._free = queue.SimpleQueue()
        self._made = []
        try:
            for _ in range(size):
                plan = cgroup.plan(container.new_id(), probe.memory, probe.cpus, probe.pids_limit)
                self._made.append(plan)
                plan.make()
                self._free.put(plan)
        except BaseException:
            self.close()
            raise

    def run(self, command=None, capture_output=False, **options):
        """One container in a free slot (blocks while all are busy); a RunResult."""
        overridden = set(options) & set(LIMITS)
        if overridden:
            from fastbox.errors import SpecError
            raise SpecError(f"{', '.join(sorted(overridden))}: limits are the pool's, set at creation")
        t0 = container.now()
        spec = RunSpec(self.image.ref, command, remove=True, **{**self.options, **options})
        slot = self._free.get()
        try:
            return api.run_spec(spec, self.image, t0, cgroups=slot.reused(),
                                capture_output=capture_output)
        finally:
            self._free.put(slot)

    def run_many(self, command=None, count=1, concurrency=None, on_result=None, **options):
        """count containers, `concurrency` at a time (default: the pool's size)."""
        return _in_threads(lambda: self.run(command, **options), count,
                           concurrency or self.size, on_result)

    def close(self):
        for plan in self._made:
            cgroup.remove(plan.dirs)
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_many(image, command=None, count=1, concurrency=2, on_result=None, **run_options):
    """fastbox.run count times, concurrency at a time, through a Pool of that size.
    Returns the RunResults in completion order."""
    with Pool(image, size=concurrency, **run_options) as pool:
        return pool.run_many(command, count, concurrency, on_result)


def _in_threads(job, count, concurrency, on_result):
    """Run job count times on `concurrency` threads; the GIL is released in the core's
    spawn and in waitpid, so the containers really overlap."""
    results, lock = [], threading.Lock()
    remaining = iter(range(count))
    errors = []

    def worker():
        while not errors:
            with lock:
                if next(remaining, None) is None:
                    return
            try:
                result = job()
            except BaseException as e:  # stop the burst; re-raised below
                errors.append(e)
                return
            with lock:
                results.append(result)
            if on_result:
                on_result(result)

    threads = [threading.Thread(target=worker, name=f"fastbox-burst-{i}")
               for i in range(min(concurrency, count))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


async def arun(image, command=None, **options):
    """fastbox.run for asyncio: the spawn runs in the default executor (the core
    releases the GIL), the wait is on the container's pidfd in the event loop."""
    loop = asyncio.get_running_loop()
    t0 = container.now()
    spec = RunSpec(image, command, remove=True, **options)
    img = api.resolve_image(spec.image)
    cid = container.new_id()
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        started = await loop.run_in_executor(
            None, lambda: container.start(cid, spec, img, (null, -1, -1), t0))
    finally:
        os.close(null)
    try:
        await _readable(loop, started.pidfd)
        code = container.wait(started)
    except BaseException:
        container.kill_and_wait(started)
        raise
    finally:
        t_exit = container.now()
        container.teardown(started)
    return api.RunResult(cid, spec.name, code, None, None,
                         container.timings(started, t_exit, container.now()))


def _readable(loop, fd):
    """A future done when fd polls readable (a pidfd: when the process has exited)."""
    done = loop.create_future()

    def ready():
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    done.add_done_callback(lambda _: loop.remove_reader(fd))
    return done
