"""The public Python API: `fastbox.run(image, command, **options)`.

One call validates the spec, resolves the image, starts the container through the core,
waits for it and tears it down, returning the exit code, captured output if asked, and
the phase timings.
"""
import os

from fastbox.runtime import container
from fastbox.runtime.stdio import Stdio
from fastbox.spec import RunSpec

DEFAULT_IMAGE = "docker.io/library/busybox:latest"


class RunResult:
    """What a finished container left: its exit code, output, and phase timings (ms)."""

    __slots__ = ("id", "name", "exit_code", "stdout", "stderr", "timings", "oom_killed")

    def __init__(self, cid, name, exit_code, stdout, stderr, timings, oom_killed=False):
        self.id, self.name, self.exit_code = cid, name, exit_code
        self.stdout, self.stderr, self.timings = stdout, stderr, timings
        self.oom_killed = oom_killed  # the OOM killer killed one of its processes

    def __repr__(self):
        return f"RunResult(id={self.id[:12]!r}, exit_code={self.exit_code})"


def resolve_image(ref):
    """The store's image for ref; the built-in busybox is made on first use."""
    from fastbox import config
    from fastbox.images.lookup import find
    root = os.path.abspath(config.images_dir())
    image = find(root, ref)  # the run path: a tag's records, no store module
    if image is not None:
        return image
    from fastbox.errors import ImageNotFound
    from fastbox.images.store import ImageStore
    store = ImageStore(root)
    try:
        return store.resolve(ref)
    except ImageNotFound:
        from fastbox.errors import SpecError
        from fastbox.images.reference import normalize
        try:
            default = normalize(ref) == DEFAULT_IMAGE
        except SpecError:  # e.g. a bare image id: not the default
            default = False
        if not default:
            raise
        return store.ensure_default()


def run(image, command=None, *, remove=True, capture_output=False, stdin=None, stdout=None,
        stderr=None, on_start=None, tty=False, on_terminal=None, cid=None, **options):
    """Run a container to completion and return a RunResult.

    options are RunSpec's: entrypoint, env, env_file, workdir, user, hostname, memory,
    cpus, pids_limit, memory_swap, memory_reservation, cpu_shares, cpu_period, cpu_quota,
    cpuset_cpus, cpuset_mems (Docker's --memory ... --cpuset-mems), volumes, tmpfs, read_only,
    network ("none", the default; "host", "bridge", "container:NAME" or a network's name),
    publish, publish_all, expose, dns, dns_search, dns_option, add_host, network_alias, ip and
    ip6 (on a user network), mac_address, sysctls ({"net.core.somaxconn": "1024"}: namespaced
    ones), name, storage_opts, security_opt (("seccomp=PROFILE.json",), ("seccomp=unconfined",),
    ("no-new-privileges=false",), ("devices=unconfined",)), cap_add, cap_drop
    (("SYS_ADMIN",), ("ALL",)), privileged (every capability, no seccomp filter, /proc
    unmasked, every device), devices (("/dev/fuse", "/dev/sdb:/dev/xvdb:r")) and
    device_cgroup_rules (("c 10:229 rwm",)). stdin/stdout/stderr take file descriptors or objects with fileno();
    by default stdin is /dev/null and output is inherited (or captured when
    capture_output=True). on_start(pid) is called once the program has been exec'd.
    tty=True gives the program a terminal made in the container (its stdin, stdout,
    stderr and controlling tty); tty=(rows, columns) gives it that size from the start
    (else it starts at 0x0); on_terminal(master_fd) gets the master, closed when
    run() returns.
    The result's oom_killed says whether the OOM killer killed the program (exit code
    137 under a memory limit).
    Raises a FastboxError subclass when the container cannot start; the program's own
    failure is just its exit code. If anything interrupts the wait (an exception in
    on_start, KeyboardInterrupt), the container is killed and torn down first.
    """
    t0 = container.now()
    spec = RunSpec(image, command, remove=remove, **options)
    img = resolve_image(spec.image)
    spec.add_image_volumes(img.volumes)
    try:
        return run_spec(spec, img, t0, capture_output=capture_output, stdin=stdin,
                        stdout=stdout, stderr=stderr, on_start=on_start, tty=tty,
                        on_terminal=on_terminal, cid=cid)
    finally:
        if spec.remove:
            remove_anonymous_volumes(spec)


def remove_anonymous_volumes(spec):
    """What `docker run --rm` removes with the container: its anonymous volumes (an
    image's VOLUME paths among them)."""
    if any(v.anonymous for v in spec.volumes):
        from fastbox.spec import spec_to_dict
        from fastbox.volumes import store
        store.remove_anonymous(spec_to_dict(spec)["volumes"])


def run_spec(spec, img, t0, *, capture_output=False, stdin=None, stdout=None, stderr=None,
             on_start=None, tty=False, on_terminal=None, cgroups=None, netns_fd=None,
             cid=None):
    """run() once the spec is validated and the image resolved; cgroups and netns_fd
    are a pool's ready-made cgroup plan and network namespace (fastbox.burst.Pool),
    None to make the container's own."""
    from fastbox.state import owners
    owners.begin_once()
    remove = spec.remove
    t_image = container.now()
    cid = cid or container.new_id()  # given: the id `run --cidfile` wrote
    with Stdio(stdin, stdout, stderr, capture_output, tty=tty) as io:
        # Ours before anything is made: if we die, the next fastbox command sweeps it.
        claim = owners.claim(cid, owners.RUN,
                             cgroups=() if cgroups is not None else container.cgroup.dirs_for(cid),
                             store=None if remove else _containers_dir(),
                             record_name=spec.name, created=not remove)
        try:
            started = _start(cid, spec, img, io, t0, tty, cgroups, netns_fd)
        except BaseException:
            claim.release()
            raise
        actor = _event_actor(cid, spec)
        try:
            if started.record:
                _mark_running(started.record, started)
            _events(("create", actor, None, {}), ("start", actor, None, {}))
            code, out, err = container.supervise(started, io, on_terminal, on_start)
        finally:
            t_exit = container.now()
            try:
                container.teardown(started)
                if started.names:
                    started.names.release_name(spec.name)
                if started.record:
                    started.record.update(cid, status="exited", exit_code=started.exit_code,
                                          oom_killed=started.oom_killed, finished_at=_iso(),
                                          pid=0)
            finally:
                claim.release()
                code_seen = 137 if started.exit_code is None else started.exit_code  # killed
                ended = [("die", actor, None, {"exitCode": code_seen})]
                _events(*ended, *([("destroy", actor, None, {})] if remove else []))
    timings = container.timings(started, t_exit, container.now())
    timings["image"] = (t_image - t0) / 1e6
    return RunResult(cid, spec.name, code, out, err, timings, started.oom_killed)


def _event_actor(cid, spec):
    """What `fastbox events` shows of a foreground container (a --rm one has no record)."""
    return {"id": cid, "name": spec.name, "image": spec.image,
            "spec": {"labels": dict(spec.labels)} if spec.labels else None}


def _events(*events):
    """Docker's events of a foreground container, appended in one write (its create and
    start once it runs, its die and destroy once it is gone)."""
    from fastbox.state import events as log
    log.append_many(events)


def _start(cid, spec, img, io, t0, tty, cgroups, netns_fd):
    """The record (kept containers) or the name (--rm), then the container."""
    remove = spec.remove
    record = _record(cid, spec, img) if not remove else None
    names = _reserve_ephemeral_name(spec, cid) if remove and spec.name else None
    try:
        started = container.start(cid, spec, img, io.child_fds(), t0, tty=tty, cg=cgroups,
                                  netns_fd=netns_fd, unnamed=record is None)
    except BaseException:
        if record:  # never ran: keep nothing of it, its name included
            record.remove(cid, force=True)
        if names:
            names.release_name(spec.name)
        raise
    started.record, started.names = record, names
    return started


def _containers_dir():
    from fastbox import config
    return os.path.abspath(config.containers_dir())


def _record(cid, spec, img):
    """A kept container gets a state record (and its name reserved) before it starts."""
    from fastbox.spec import spec_to_dict
    from fastbox.state.status import CREATED
    from fastbox.state.store import StateStore
    from fastbox.state.owners import my_key
    from fastbox.containers import _reserve_name
    store = StateStore()
    name = _reserve_name(store, spec, cid)
    store.create({"id": cid, "name": name, "image": spec.image, "image_id": img.id,
                  "command": list(spec.command or ()), "spec": spec_to_dict(spec),
                  "tty": False, "status": CREATED, "exit_code": None,
                  "created_at": _iso(), "pid": 0, "owner": my_key()})
    return store


def _mark_running(store, started):
    """A foreground container's monitor is this process: if it dies, the record is
    reconciled to exited."""
    from fastbox.state import process
    store.update(started.id, status="running", pid=started.pid,
                 pid_start=process.start_time(started.pid), monitor_pid=os.getpid(),
                 monitor_start=process.start_time(os.getpid()), cgroups=started.cgroups,
                 started_at=_iso())


def _reserve_ephemeral_name(spec, cid):
    """Docker reserves a --rm container's name while it runs too."""
    from fastbox.state.store import StateStore
    store = StateStore()
    store.reserve_name(spec.name, cid)
    return store


def _iso():
    from fastbox.state import timestamps
    return timestamps.now()
