"""Many containers from one Python process: pools, run_many, and asyncio's arun.

Nothing here forks Python: the core spawns every container (GIL released) and waits are
on pids/pidfds. A Pool keeps what a burst would otherwise redo per container ready and
visible: the image resolved once, `size` cgroups made once with their limits, and (with
`--network none`, the default) `size` network namespaces made once with their loopback
up; each slot serves one container at a time. Everything it made is removed when it
closes, and what making it cost is in `pool.setup_ms`.

    with fastbox.Pool("busybox", size=2, memory="64m") as pool:
        results = pool.run_many(["/bin/true"], count=1000)

Why pool network namespaces: creating one (in clone) and destroying one (the kernel's
cleanup_net, which serialises on rtnl and RCU) is the costliest part of a container's
start; on the project's 2-vCPU machine pooling them takes a /bin/true burst with
concurrency 2 from ~430 to ~630 containers/s (interleaved runs). A slot's namespace is
reused by the containers of that slot one after another, never by two at once. What one
of them could leave in it for the next is limited by the default capabilities (no
NET_ADMIN: no addresses, routes or firewall rules; /proc/sys read-only): sockets die with
their processes (a TCP TIME_WAIT may outlive them, as on any host). `netns="fresh"` gives
every container its own, as fastbox.run does.
"""
import asyncio
import os
import queue
import threading

from fastbox import _core, api
from fastbox.runtime import cgroup, container, devices, network
from fastbox.runtime.stdio import devnull
from fastbox.spec import RunSpec
from fastbox.state import owners

LIMITS = ("memory", "cpus", "pids_limit", "memory_swap", "memory_reservation", "cpu_shares",
          "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems")
DEVICE_OPTIONS = ("devices", "device_cgroup_rules")  # the pool's cgroups' device policy
PER_RUN = ("capture_output", "stdout", "stderr")  # fastbox.run's options that are not the spec's
NETNS_MODES = ("pooled", "fresh")


class Pool:
    """size ready slots (cgroups with the pool's limits, a network namespace); run()
    borrows one per container.

    netns: "pooled" (the default with network="none") or "fresh" (a new namespace per
    container). With network="host" there is none to pool. A container in a pooled
    namespace gets a random 12-hex-digit hostname unless one is given (fastbox.run's
    default, the id's first 12 digits, is chosen where the id is made, inside run).
    `setup_ms` holds what making the pool cost, in ms: image, cgroups, netns.
    """

    def __init__(self, image, size=2, *, netns=None, **run_options):
        from fastbox.errors import SpecError
        if size < 1:
            raise SpecError(f"invalid pool size {size}: must be at least 1")
        if netns not in (None,) + NETNS_MODES:
            raise SpecError(f"invalid netns {netns!r}: use one of {', '.join(NETNS_MODES)}")
        self.options = {k: v for k, v in run_options.items() if k != "remove"}
        owners.begin_once()
        t0 = container.now()
        probe = RunSpec(image, None, remove=True, **self.options)  # validates once
        self.image = api.resolve_image(probe.image)
        self.size = size
        self.netns = "fresh" if probe.network == "host" else (netns or "pooled")
        self.setup_ms = {"image": _ms_since(t0)}
        self._free = queue.SimpleQueue()
        self._made = []       # cgroup plans
        self._netns_fds = []  # one per slot when pooled
        self._endpoints = []  # bridge: one veth and address per pooled namespace
        self._closed = False
        self._live = _Running()
        self._claim = None
        try:
            t = container.now()
            ids = [container.new_id() for _ in range(size)]
            # The pool's cgroups are ours from before they are made: if we die, the next
            # fastbox command kills what runs in them and removes them.
            self._claim = owners.claim(f"pool-{ids[0][:12]}", owners.POOL,
                                       cgroups=[d for cid in ids for d in cgroup.dirs_for(cid)])
            for cid in ids:
                plan = cgroup.plan(cid, probe.memory, probe.cpus, probe.pids_limit,
                                   device_rules=devices.rules_for(probe),
                                   **probe.cgroup_limits)
                self._made.append(plan)
                plan.make()
            self.setup_ms["cgroups"] = _ms_since(t)
            if self.netns == "pooled":
                t = container.now()
                for _ in range(size):
                    self._netns_fds.append(_new_netns())
                self.setup_ms["netns"] = _ms_since(t)
                if network.pools_endpoints(probe):
                    t = container.now()
                    self._endpoints = [network.pool_endpoint(f"pool{cid[:12]}", probe, fd)
                                       for cid, fd in zip(ids, self._netns_fds)]
                    self.setup_ms["veths"] = _ms_since(t)
            for i, plan in enumerate(self._made):
                self._free.put(_Slot(plan, self._netns_fds[i] if self._netns_fds else -1))
        except BaseException:
            self.close()
            raise

    def run(self, command=None, capture_output=False, *, stdout=None, stderr=None, **options):
        """One container in a free slot (blocks while all are busy); a RunResult.
        stdout/stderr: file descriptors (or objects with fileno()) for the container's
        output, which is otherwise inherited (or captured with capture_output=True)."""
        from fastbox.errors import SpecError
        overridden = set(options) & set(LIMITS + DEVICE_OPTIONS)
        if overridden:
            raise SpecError(f"{', '.join(sorted(overridden))}: limits are the pool's, set at creation")
        if self._closed:
            raise SpecError("this pool is closed")
        t0 = container.now()
        opts = {**self.options, **options}
        slot = self._free.get()
        live = _Live(self._live)
        try:
            kwargs = dict(cgroups=slot.cgroups.reused(), capture_output=capture_output,
                          stdout=stdout, stderr=stderr, on_start=live.started)
            spec = RunSpec(self.image.ref, command, remove=True, **opts)
            spec.add_image_volumes(self.image.volumes)  # its VOLUME paths, as run()'s
            try:
                return api.run_spec(spec, self.image, t0,
                                    netns_fd=slot.netns if slot.netns >= 0 else None, **kwargs)
            finally:
                api.remove_anonymous_volumes(spec)
        finally:
            live.done()
            self._free.put(slot)

    def kill(self):
        """SIGKILL every container of this pool that is running now (from any thread);
        each is then reaped and torn down by the run() that started it."""
        self._live.kill_all()

    def run_many(self, command=None, count=1, concurrency=None, on_result=None,
                 on_error=None, **options):
        """count containers, `concurrency` at a time (default: the pool's size); the
        RunResults in completion order. The first container that fails to start stops
        the burst and its error is raised, unless on_error(exception) is given: then
        the burst goes on, and the failed ones are left out of the results. Interrupted
        (KeyboardInterrupt), it kills the running containers and waits for their
        teardown before raising."""
        return _in_threads(lambda: self.run(command, **options), count,
                           concurrency or self.size, on_result, on_error, on_interrupt=self.kill)

    def close(self):
        """Remove every cgroup the pool made and drop its namespaces; safe to call twice.
        A container still running in it (another thread's run()) is killed first. Every
        cgroup is tried; the first failure is raised once all were."""
        self._closed = True
        self._live.kill_all()
        first = None
        for plan in self._made:
            try:
                cgroup.remove(plan.dirs)
            except Exception as e:
                first = first or e
        self._made = []
        for ep in self._endpoints:
            network.pool_endpoint_close(ep)
        self._endpoints = []
        for fd in self._netns_fds:
            os.close(fd)
        self._netns_fds = []
        if first is not None:
            raise first
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Running:
    """pidfds of the containers running now, so that an interrupted burst can kill them
    (a pidfd, unlike a pid, never names another process once the container is reaped)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fds = set()

    def kill_all(self):
        import signal
        with self.lock:
            for fd in self.fds:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:  # already exited
                    pass


class _Live:
    """One container's entry in _Running, from its exec to its return."""

    __slots__ = ("running", "fd")

    def __init__(self, running):
        self.running, self.fd = running, -1

    def started(self, pid):
        fd = os.pidfd_open(pid)
        with self.running.lock:
            self.fd = fd
            self.running.fds.add(fd)

    def done(self):
        if self.fd >= 0:
            with self.running.lock:
                self.running.fds.discard(self.fd)
                os.close(self.fd)
                self.fd = -1


class _Slot:
    __slots__ = ("cgroups", "netns")

    def __init__(self, cgroups, netns):
        self.cgroups, self.netns = cgroups, netns


def run_many(image, command=None, count=1, concurrency=2, on_result=None, on_error=None,
             netns=None, **run_options):
    """fastbox.run count times, concurrency at a time, through a Pool of that size.
    run_options are fastbox.run's (capture_output, stdout and stderr included). Returns
    the RunResults in completion order (see Pool.run_many for on_error)."""
    per_run = {k: run_options.pop(k) for k in PER_RUN if k in run_options}
    with Pool(image, size=concurrency, netns=netns, **run_options) as pool:
        return pool.run_many(command, count, concurrency, on_result, on_error, **per_run)


def _in_threads(job, count, concurrency, on_result, on_error=None, on_interrupt=None):
    """Run job count times on `concurrency` threads; the GIL is released in the core's
    spawn and in waitpid, so the containers really overlap. If the calling thread is
    interrupted while it waits, no new job starts, on_interrupt() is called, and the
    threads are waited for before the interruption is raised."""
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
            except Exception as e:
                if on_error is None:
                    errors.append(e)  # stop the burst; re-raised below
                    return
                try:
                    on_error(e)
                except BaseException as e2:
                    errors.append(e2)
                    return
                continue
            except BaseException as e:
                errors.append(e)
                return
            with lock:
                results.append(result)
            if on_result:
                try:
                    on_result(result)
                except BaseException as e:
                    errors.append(e)
                    return

    threads = [threading.Thread(target=worker, name=f"fastbox-burst-{i}")
               for i in range(min(concurrency, count))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException as e:
        errors.insert(0, e)
        if on_interrupt:
            on_interrupt()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------- network namespaces

def _new_netns():
    """A new network namespace with its loopback up, held by the returned fd only (the
    core makes it on a short-lived thread)."""
    return _core.new_netns()



def _ms_since(t):
    return (container.now() - t) / 1e6


# ---------------------------------------------------------------- asyncio

async def arun(image, command=None, **options):
    """fastbox.run for asyncio: the spawn runs in the default executor (the core
    releases the GIL), the wait is on the container's pidfd in the event loop.
    Cancelled at any point (asyncio.wait_for, a TaskGroup's failure), it kills and
    removes its container, even one whose spawn was still running in the executor."""
    loop = asyncio.get_running_loop()
    t0 = container.now()
    spec = RunSpec(image, command, remove=True, **options)
    img = api.resolve_image(spec.image)
    cid = container.new_id()
    owners.begin_once()
    claim = owners.claim(cid, owners.RUN, cgroups=cgroup.dirs_for(cid))
    handoff = _Handoff(claim)

    def start():
        try:
            s = container.start(cid, spec, img, (devnull(), -1, -1), t0, unnamed=True)
        except BaseException:
            handoff.failed()
            raise
        return handoff.deliver(s)

    try:
        started = await loop.run_in_executor(None, start)
    except asyncio.CancelledError:
        handoff.abandon()
        raise
    except BaseException:  # the start failed and removed what it made
        claim.release()
        raise
    try:
        await _readable(loop, started.pidfd)
        code = container.wait(started)
    except BaseException:
        loop.remove_reader(started.pidfd)  # before the fd is closed and its number reused
        container.kill_and_wait(started)
        raise
    finally:
        t_exit = container.now()
        try:
            container.teardown(started)
        finally:
            claim.release()
    return api.RunResult(cid, spec.name, code, None, None,
                         container.timings(started, t_exit, container.now()))


class _Handoff:
    """A started container passed from the executor thread to a coroutine that may have
    been cancelled meanwhile: whichever side comes second discards it."""

    def __init__(self, claim):
        self.lock = threading.Lock()
        self.started = None
        self.abandoned = False
        self.claim = claim  # released by whoever discards the container

    def deliver(self, started):
        with self.lock:
            if not self.abandoned:
                self.started = started
                return started
        _discard(started, self.claim)
        return None

    def abandon(self):
        with self.lock:
            self.abandoned = True
            started, self.started = self.started, None
        if started is not None:
            _discard(started, self.claim)

    def failed(self):
        """The start failed (and removed what it made): a coroutine that gave up no
        longer drops the entry, so we do."""
        with self.lock:
            if self.abandoned:
                self.claim.release()


def _discard(started, claim):
    try:
        container.kill_and_wait(started)
    finally:
        try:
            container.teardown(started)
        finally:
            claim.release()


def _readable(loop, fd):
    """A future done when fd polls readable (a pidfd: when the process has exited)."""
    done = loop.create_future()

    def ready():
        loop.remove_reader(fd)
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    return done
