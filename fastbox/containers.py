"""Containers that outlive the call that started them: create, start, stop, kill,
remove, wait, logs, stats, top, rename, prune — the engine's lifecycle (what containerd
is to runc), over the state store and the per-container monitor.

    c = fastbox.containers.run("busybox", ["sleep", "60"], name="web")
    c.logs(); c.stats(); c.stop(timeout=5); c.remove()
"""
import os
import time

from fastbox.errors import ContainerStateError
from fastbox.state import process, status
from fastbox.state.store import StateStore


def create(image, command=None, *, tty=False, **options):
    """A container record with its spec, its name reserved; nothing runs yet."""
    from fastbox.runtime.container import new_id
    return _create(new_id(), image, command, tty, options)


def _create(cid, image, command, tty, options, cgroups=()):
    from fastbox.api import resolve_image
    from fastbox.spec import RunSpec, spec_to_dict
    from fastbox.state import owners
    owners.begin_once()
    spec = RunSpec(image, command, **options)
    log_config = _log_config(spec)
    img = resolve_image(spec.image)
    store = StateStore()
    name = _reserve_name(store, spec, cid)
    try:
        store.create({"id": cid, "name": name, "image": spec.image, "image_id": img.id,
                      "command": list(spec.command or ()), "spec": spec_to_dict(spec),
                      "tty": bool(tty), "status": status.CREATED, "exit_code": None,
                      "created_at": _now(), "started_at": None, "finished_at": None,
                      "pid": 0, "cgroups": list(cgroups), "owner": owners.my_key(),
                      "log_config": log_config})
    except BaseException:
        store.release_name(name)
        raise
    return Container(cid, store)


def _reserve_name(store, spec, cid):
    """--name, or a generated one ("focused_hopper"), as Docker names every container."""
    if spec.name:
        store.reserve_name(spec.name, cid)
        return spec.name
    from fastbox.state import names
    return names.reserve_generated(store, cid)


def _log_config(spec):
    """The configured default log options under the container's own --log-opt."""
    from fastbox import config, log_options
    return log_options.effective(spec.log_opts, config.log_opts(),
                                 f"{config.config_file()} log-opts")


def run(image, command=None, *, tty=False, **options):
    """create + start: `fastbox run -d`. Ours from before the record is made: if we
    die before the monitor has it, the next fastbox command sweeps what we made."""
    from fastbox.runtime.container import new_id
    from fastbox.runtime import cgroup
    cid = new_id()
    claim = _claim(cid, created=True)
    try:
        # The cgroups from the start: a record adopted from the monitor's started.json
        # (we died before marking it running) still names them for stats, rm and sweeps.
        c = _create(cid, image, command, tty, options, cgroup.dirs_for(cid))
    except BaseException:
        claim.release()
        raise
    try:
        c._start(claim)
    except BaseException:
        try:
            c._discard()
        finally:
            claim.release()
        raise
    return c


def _claim(cid, created=False):
    """A detached start's entry, locked: the monitor inherits the lock and holds it for
    as long as it lives, so no sweep touches a container that has its monitor."""
    from fastbox import config
    from fastbox.runtime import cgroup
    from fastbox.state import owners
    return owners.claim(cid, owners.DETACHED, cgroups=cgroup.dirs_for(cid),
                        store=os.path.abspath(config.containers_dir()), created=created,
                        locked=True)


def get(ref):
    from fastbox.state import owners
    owners.begin_once()
    store = StateStore()
    record = store.lookup(ref)
    return Container(record["id"], store, record)


def list_containers(all=False):
    from fastbox.state import owners
    owners.begin_once()
    store = StateStore()
    return [Container(r["id"], store, r) for r in store.list()
            if all or r["status"] == status.RUNNING]


def prune():
    """Remove every container that is not running; returns their ids."""
    removed = []
    for c in list_containers(all=True):
        if c.status != status.RUNNING:
            c.remove()
            removed.append(c.id)
    return removed


class Container:
    def __init__(self, cid, store, record=None):
        self.id = cid
        self._store = store
        self.attrs = record or store.get(cid)

    def __repr__(self):
        return f"<Container {self.id[:12]} {self.name or ''} {self.status}>"

    @property
    def name(self):
        return self.attrs.get("name")

    @property
    def status(self):
        return self.attrs["status"]

    @property
    def pid(self):
        return self.attrs.get("pid", 0)

    def reload(self):
        try:
            self.attrs = self._store.get(self.id)
        except ContainerStateError:
            if not (self.attrs.get("spec") or {}).get("remove"):
                raise
            # --rm: the monitor removed the record as the container exited.
            self.attrs = dict(self.attrs, status=status.EXITED, pid=0)
        return self

    def start(self):
        claim = _claim(self.id)
        try:
            return self._start(claim)
        except BaseException:
            claim.release()
            raise

    def _start(self, claim):
        """Start under claim (our entry), then hand it to the monitor."""
        from fastbox.api import resolve_image
        from fastbox.runtime import monitor
        from fastbox.spec import spec_from_dict
        from fastbox.state import owners
        record = self.reload().attrs
        if not status.can_start(record["status"]) or "spec" not in record:
            raise ContainerStateError(f"container {self.id[:12]} is {record['status']}: "
                                      "only a created or stopped container can be started")
        from fastbox.runtime import cgroup
        me, dirs = owners.my_key(), cgroup.dirs_for(self.id)
        if record["status"] == status.EXITED:
            self._store.reset_for_restart(self.id, owner=me)
        if record.get("owner") != me or record.get("cgroups") != dirs:
            # the janitor sweeps it if we die now; its cgroups are named from the start
            self._store.update(self.id, owner=me, cgroups=dirs)
        spec = spec_from_dict(record["spec"])
        log_config = record.get("log_config") or _log_config(spec)  # older records have none
        pid, monitor_pid, times, cgroups = monitor.start_detached(
            self.id, spec, resolve_image(spec.image), self._store, tty=record.get("tty", False),
            log_config=log_config, keep_fds=(claim.fd,))
        monitor_start = process.start_time(monitor_pid)
        self._mark_running(pid, monitor_pid, monitor_start, cgroups,
                           owners.key_of(monitor_pid, monitor_start))
        # The record names the monitor as owner first: a sweep that finds the entry
        # under the monitor then finds them agreeing.
        claim.hand_to(monitor_pid, monitor_start)
        return self

    def _mark_running(self, pid, monitor_pid, monitor_start, cgroups, owner):
        try:
            self._store.update(self.id, status=status.RUNNING, pid=pid,
                               pid_start=process.start_time(pid), monitor_pid=monitor_pid,
                               monitor_start=monitor_start,
                               cgroups=cgroups, started_at=_now(), owner=owner)
            self.reload()
        except (ContainerStateError, FileNotFoundError):
            # --rm: the monitor may already have removed a short-lived container.
            self.attrs = dict(self.attrs, status=status.EXITED)

    def kill(self, signal=9):
        sig = _signal_number(signal)
        record = self.reload().attrs
        if not status.can_kill(record["status"]):
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        if not process.signal_process(record["pid"], record.get("pid_start"), sig):
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        return self

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit code."""
        record = self.reload().attrs
        if record["status"] == status.RUNNING:
            process.signal_process(record["pid"], record.get("pid_start"), 15)
            if not self._wait_monitor(timeout):
                _kill_now(record)
                self._wait_monitor(None)
        return self.reload().attrs.get("exit_code")

    def wait(self, timeout=None):
        """Block until the container exits; returns its exit code."""
        if not self._wait_monitor(timeout):
            raise TimeoutError(f"container {self.id[:12]} still running after {timeout}s")
        return self.reload().attrs.get("exit_code")

    def _wait_monitor(self, timeout):
        """True once the monitor is gone (it exits after recording the exit code)."""
        record = self.reload().attrs
        if record["status"] != status.RUNNING:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            fd = os.pidfd_open(record["monitor_pid"])
        except ProcessLookupError:
            return True
        try:
            if process.start_time(record["monitor_pid"]) != record.get("monitor_start"):
                return True
            import select
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if select.select([fd], [], [], left)[0]:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            os.close(fd)

    def remove(self, force=False):
        record = self.reload().attrs
        if record["status"] == status.RUNNING:
            if not force:
                raise ContainerStateError(
                    f"cannot remove running container {self.id[:12]}: stop it first or use -f")
            _kill_now(record)
            self._wait_monitor(10)
            record = self.reload().attrs
        self._discard(record)

    def _discard(self, record=None):
        """Delete everything of this container: cgroups a dead monitor left, the
        record, its directory and its name."""
        from fastbox.runtime import cgroup
        record = record or self.attrs
        cgroup.kill_all(record.get("cgroups") or [])
        cgroup.remove(record.get("cgroups") or [])
        self._store.delete(record)

    def rename(self, new_name):
        from fastbox.spec import RunSpec
        RunSpec("x", name=new_name)  # validates the name
        self.attrs = self._store.rename(self.id, new_name)
        return self

    def logs(self, follow=False, tail=None, timestamps=False, stdout=True, stderr=True,
             offset=0):
        """Bytes of the container's output, read across its rotated log files, oldest
        first; with follow, an iterator of chunks that goes on across rotations. offset:
        log_position() before a start (only that run's output), or a byte position in
        the current log file."""
        from fastbox.runtime import logs
        entries = logs.read(self._store.log_path(self.id), follow=follow, tail=tail,
                            running=lambda: self.reload().status == status.RUNNING,
                            offset=offset)
        chunks = (logs.format_entry(e, timestamps) for e in entries
                  if (stdout and e["stream"] == "stdout") or (stderr and e["stream"] == "stderr"))
        return chunks if follow else b"".join(c for _, c in chunks)

    def exec_run(self, command, *, env=(), workdir=None, user=None, tty=False,
                 capture_output=True, stdin=None, stdout=None, stderr=None, on_start=None,
                 on_terminal=None, privileged=False):
        """Run command inside the container and wait for it: an ExecResult with its
        exit code and, when captured, its output. It runs with the container's
        capabilities, no_new_privs and seccomp filter; privileged=True gives it every
        capability (the container's seccomp filter still applies, as with Docker)."""
        from fastbox.api import resolve_image
        from fastbox.runtime.stdio import Stdio
        from fastbox.runtime import container, exec as execs
        if isinstance(command, str):
            command = ["/bin/sh", "-c", command]
        record = self.reload().attrs
        if record["status"] != status.RUNNING:
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        image = resolve_image(record["image_id"])
        pidfd = execs.open_init(record)
        try:
            with Stdio(stdin, stdout, stderr, capture_output, tty=tty) as io:
                s = execs.start(record, image, command, env, workdir, user, io.child_fds(),
                                tty, pidfd, privileged)
                claim = _claim_exec(s)
                try:
                    code, out, err = container.supervise(s, io, on_terminal, on_start)
                finally:
                    claim.release()
        finally:
            os.close(pidfd)
        return ExecResult(code, out, err)

    exec = exec_run  # c.exec(["ls"]) reads as the CLI does

    def logs_size(self):
        """Bytes in the current log file (rotated files not counted)."""
        from fastbox.runtime import logs
        return logs.size(self._store.log_path(self.id))

    def log_position(self):
        """Where the log ends now, for logs(offset=...): it stays right across rotations."""
        from fastbox.runtime import logs
        return logs.position(self._store.log_path(self.id))

    def stats(self):
        from fastbox.runtime import stats
        return stats.sample(self.reload().attrs.get("cgroups") or [])

    def top(self):
        from fastbox.runtime import stats
        return stats.processes(self.reload().attrs.get("cgroups") or [])

    def inspect(self):
        r = self.reload().attrs
        spec = r.get("spec") or {}
        return {
            "Id": r["id"], "Name": "/" + (r.get("name") or ""), "Created": r["created_at"],
            "Image": r.get("image_id"),
            "State": {"Status": r["status"], "Running": r["status"] == status.RUNNING,
                      "Pid": r.get("pid", 0), "ExitCode": r.get("exit_code") or 0,
                      "OOMKilled": bool(r.get("oom_killed")),
                      # Docker's zero time for what has not happened yet
                      "StartedAt": r.get("started_at") or ZERO_TIME,
                      "FinishedAt": r.get("finished_at") or ZERO_TIME,
                      "Error": r.get("error", "")},
            "Config": {"Image": r["image"], "Cmd": spec.get("command"),
                       "Entrypoint": spec.get("entrypoint"), "Env": spec.get("env"),
                       "WorkingDir": spec.get("workdir"), "User": spec.get("user"),
                       "Hostname": spec.get("hostname") or r["id"][:12], "Tty": r.get("tty")},
            "HostConfig": {**_resources(spec), "Binds": spec.get("volumes"),
                           "Tmpfs": spec.get("tmpfs"), "ReadonlyRootfs": spec.get("read_only"),
                           "NetworkMode": spec.get("network"), "AutoRemove": spec.get("remove"),
                           "SecurityOpt": spec.get("security_opt") or None,
                           "CapAdd": spec.get("cap_add") or None,
                           "CapDrop": spec.get("cap_drop") or None,
                           "Privileged": bool(spec.get("privileged")),
                           "Devices": [dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"),
                                                d.split(":"))) for d in spec.get("devices") or ()],
                           "DeviceCgroupRules": spec.get("device_cgroup_rules") or None,
                           "LogConfig": r.get("log_config")},
            "LogPath": self._store.log_path(self.id),
            "MonitorPid": r.get("monitor_pid"),
            "Cgroups": r.get("cgroups"),
        }


ZERO_TIME = "0001-01-01T00:00:00Z"


def _resources(spec):
    """HostConfig's resource fields as Docker names them (0 or "" when unset);
    MemorySwap as the daemon settles it: twice Memory when only Memory is given."""
    from fastbox.runtime.cgroup import swap_total
    memory = spec.get("memory")
    return {"Memory": memory or 0,
            "MemorySwap": swap_total(memory, spec.get("memory_swap")) or 0,
            "MemoryReservation": spec.get("memory_reservation") or 0,
            "NanoCpus": int(round((spec.get("cpus") or 0) * 1e9)),
            "CpuShares": spec.get("cpu_shares") or 0, "CpuPeriod": spec.get("cpu_period") or 0,
            "CpuQuota": spec.get("cpu_quota") or 0, "CpusetCpus": spec.get("cpuset_cpus") or "",
            "CpusetMems": spec.get("cpuset_mems") or "", "PidsLimit": spec.get("pids_limit")}


def _kill_now(record):
    """SIGKILL a running container: every process of its cgroups at once where the
    kernel has cgroup.kill (v2), else its init (its pid namespace dies with it)."""
    from fastbox.runtime import cgroup
    if not cgroup.kill(record.get("cgroups") or []):
        process.signal_process(record["pid"], record.get("pid_start"), 9)


def _claim_exec(s):
    """The exec'd process is ours: if we die, the next fastbox command kills it (the core
    also ties it to us with a parent-death signal; this covers what that cannot, such
    as a setuid program, for which the kernel clears it)."""
    from fastbox.state import owners
    return owners.claim(f"exec-{s.pid}-{s.id[:12]}", owners.EXEC,
                        pids=[(s.pid, process.start_time(s.pid))])


class ExecResult:
    __slots__ = ("exit_code", "stdout", "stderr")

    def __init__(self, exit_code, stdout, stderr):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    @property
    def output(self):
        return (self.stdout or b"") + (self.stderr or b"")

    def __repr__(self):
        return f"ExecResult(exit_code={self.exit_code})"


def _signal_number(sig):
    if isinstance(sig, int):
        return sig
    import signal as signals
    name = str(sig).upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signals.Signals, name))
    except AttributeError:
        from fastbox.errors import SpecError
        raise SpecError(f"invalid signal: {sig}") from None


def _now():
    from fastbox.state import timestamps
    return timestamps.now()
