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


def create(image, command=None, *, tty=False, interactive=False, **options):
    """A container record with its spec, its name reserved; nothing runs yet.
    interactive (`-i`): its stdin stays open for `attach`."""
    from fastbox.runtime.container import new_id
    c = _create(new_id(), image, command, tty, options, interactive=interactive)
    c._made = None  # a later start reads the record as it is then (update, rename)
    return c


def _create(cid, image, command, tty, options, cgroups=(), interactive=False):
    from fastbox.api import resolve_image
    from fastbox.spec import RunSpec, spec_to_dict
    from fastbox.state import owners
    owners.begin_once()
    spec = RunSpec(image, command, **options)
    log_config = _log_config(spec)
    img = resolve_image(spec.image)
    spec.add_image_volumes(img.volumes)
    _make_volumes(spec)
    store = StateStore()
    name = _reserve_name(store, spec, cid)
    record = {"id": cid, "name": name, "image": spec.image, "image_id": img.id,
              "command": list(spec.command or ()), "spec": spec_to_dict(spec),
              "tty": bool(tty), "interactive": bool(interactive),
              "status": status.CREATED, "exit_code": None,
              "created_at": _now(), "started_at": None, "finished_at": None,
              "pid": 0, "cgroups": list(cgroups), "owner": owners.my_key(),
              "log_config": log_config, "image_exposed": list(img.exposed)}
    try:
        store.create(record)
    except BaseException:
        store.release_name(name)
        raise
    c = Container(cid, store, record)
    c._made = (spec, img)  # run's start uses them as they are, not read back
    c._event("create")
    return c


def _make_volumes(spec):
    """Docker makes a container's volumes as it creates it (anonymous ones marked so,
    for `rm -v` and `volume prune`)."""
    if any(v.kind == "volume" for v in spec.volumes):
        from fastbox.volumes import store
        for v in spec.volumes:
            if v.kind == "volume":
                store.data_path(v.source, v.anonymous)


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


def run(image, command=None, *, tty=False, interactive=False, client_fd=-1, on_started=None,
        **options):
    """create + start: `fastbox run -d`. Ours from before the record is made: if we
    die before the monitor has it, the next fastbox command sweeps what we made.
    tty: True or the terminal's (rows, columns); client_fd: a socket the monitor takes
    as an attached client from the start (`run -it`). on_started(container): called once
    the program runs and the record says so to any reader (`ps`, `stop`), before the rest
    of the bookkeeping: the engine answers its client there."""
    from fastbox.runtime.container import new_id
    from fastbox.runtime import cgroup
    cid = new_id()
    claim = _claim(cid, created=True)
    try:
        # The cgroups from the start: a record adopted from the monitor's started.json
        # (we died before marking it running) still names them for stats, rm and sweeps.
        c = _create(cid, image, command, tty, options, cgroup.dirs_for(cid), interactive)
    except BaseException:
        claim.release()
        raise
    try:
        c._start(claim, tty, client_fd, on_started)
    except BaseException:
        if c.attrs.get("status") == status.RUNNING:
            raise  # it runs under its monitor, which holds the claim now
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
        self._made = None

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

    def start(self, by_policy=False):
        """by_policy: the restart policy's start (fastbox.restarter), which leaves a
        user's stop in force; a user's start lifts it."""
        claim = _claim(self.id)
        try:
            return self._start(claim, by_policy=by_policy)
        except BaseException:
            claim.release()
            raise

    def _start(self, claim, tty=None, client_fd=-1, on_started=None, by_policy=False):
        """Start under claim (our entry), then hand it to the monitor."""
        from fastbox.api import resolve_image
        from fastbox.runtime import monitor
        from fastbox.spec import spec_from_dict
        from fastbox.state import owners
        made, self._made = self._made, None  # `run`: the record just written, unread
        record = self.attrs if made else self.reload().attrs
        if not status.can_start(record["status"]) or "spec" not in record:
            raise ContainerStateError(f"container {self.id[:12]} is {record['status']}: "
                                      "only a created or stopped container can be started")
        from fastbox.runtime import cgroup
        me, dirs = owners.my_key(), cgroup.dirs_for(self.id)
        if record["status"] == status.EXITED:
            self._store.reset_for_restart(self.id, owner=me, by_policy=by_policy)
        if record.get("owner") != me or record.get("cgroups") != dirs or (
                record.get("stopped_by_user") and not by_policy):
            # the janitor sweeps it if we die now; its cgroups are named from the start
            fields = {} if by_policy else {"stopped_by_user": False}
            self._store.update(self.id, owner=me, cgroups=dirs, **fields)
        spec = made[0] if made else spec_from_dict(record["spec"])
        log_config = record.get("log_config") or _log_config(spec)  # older records have none
        pid, monitor_pid, times, cgroups = monitor.start_detached(
            self.id, spec, made[1] if made else resolve_image(spec.image), self._store,
            tty=tty or record.get("tty", False), log_config=log_config, keep_fds=(claim.fd,),
            interactive=record.get("interactive", False), client_fd=client_fd)
        monitor_start = process.start_time(monitor_pid)
        started = {"pid": pid, "pid_start": process.start_time(pid), "monitor_pid": monitor_pid,
                   "monitor_start": monitor_start, "started_at": _now()}
        if on_started is not None:
            # what the monitor writes too, written now: a reader adopts it (store.get)
            self._store.write_started(self.id, started)
            self.attrs = dict(self.attrs, status=status.RUNNING, **started)
        self._event("start")
        if on_started is not None:
            on_started(self)
        self._mark_running(started, cgroups, owners.key_of(monitor_pid, monitor_start))
        # The record names the monitor as owner first: a sweep that finds the entry
        # under the monitor then finds them agreeing.
        claim.hand_to(monitor_pid, monitor_start)
        return self

    def _mark_running(self, started, cgroups, owner):
        """The record says this run runs, unless a reader has already seen it exit
        (after on_started, a `stop` or `rm` may have come first)."""
        try:
            self._store.mark_running(self.id, cgroups=cgroups, owner=owner,
                                     restarting=False, paused=False, **started)
            self.reload()
        except (ContainerStateError, FileNotFoundError):
            # --rm: the monitor may already have removed a short-lived container.
            self.attrs = dict(self.attrs, status=status.EXITED)

    def kill(self, signal=9):
        sig = _signal_number(signal)
        record = self.reload().attrs
        if not status.can_kill(record["status"]):
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        if record.get("paused") and sig != 9:
            raise ContainerStateError(f"container {self.id[:12]} is paused: unpause it "
                                      "before stopping or killing it")
        if not process.signal_process(record["pid"], record.get("pid_start"), sig):
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        self._event("kill", signal=sig)
        if record.get("paused"):  # SIGKILL reaches frozen tasks only once thawed (v1)
            self.unpause()
        return self

    def stop(self, timeout=None):
        """The stop signal (--stop-signal, SIGTERM by default), then SIGKILL after timeout
        seconds (--stop-timeout, 10 by default); returns the exit code. A paused
        container is killed at once, as Docker does."""
        record = self.reload().attrs
        spec = record.get("spec") or {}
        if timeout is None:
            timeout = spec.get("stop_timeout")
            timeout = 10 if timeout is None else timeout
        if spec.get("restart", "no") != "no":
            from fastbox.runtime import restart_policy
            restart_policy.mark_stopped(self._store, self.id)  # a pending restart too
            record = self._await_restart(record)
        if record["status"] == status.RUNNING:
            if record.get("paused"):
                _kill_now(record)
                self.unpause()
            else:
                sig = _signal_number(spec.get("stop_signal") or "SIGTERM")
                process.signal_process(record["pid"], record.get("pid_start"), sig)
            if timeout < 0 or not self._wait_monitor(timeout):
                if timeout >= 0:
                    _kill_now(record)
                self._wait_monitor(None)
            self._event("stop")
        from fastbox.network import endpoints
        endpoints.release_dead_extras(self.id)  # its monitor released its first network
        return self.reload().attrs.get("exit_code")

    def _await_restart(self, record, timeout=30.0):
        """A restart past its back-off when our stop was marked goes on to a run (or
        gives up): wait for that run, which this stop then stops."""
        deadline = time.monotonic() + timeout
        while (record.get("restarting") and record["status"] != status.RUNNING
               and process.alive(record.get("monitor_pid"), record.get("monitor_start"))
               and time.monotonic() < deadline):
            time.sleep(0.01)
            record = self.reload().attrs
        return record

    def restart(self, timeout=None):
        """stop (if it runs), then start again on the same writable layer."""
        self.stop(timeout=timeout)
        self.start()
        self._event("restart")
        return self

    def pause(self):
        """Freeze every process of the container (its cgroup's freezer)."""
        from fastbox.runtime import freezer
        record = self._running_record()
        if record.get("paused"):
            raise ContainerStateError(f"container {self.id[:12]} is already paused")
        freezer.freeze(record.get("cgroups") or [])
        self.attrs = self._store.update(self.id, paused=True)
        self._event("pause")
        return self

    def unpause(self):
        from fastbox.runtime import freezer
        record = self._running_record()
        if not record.get("paused") and not freezer.frozen(record.get("cgroups") or []):
            raise ContainerStateError(f"container {self.id[:12]} is not paused")
        freezer.thaw(record.get("cgroups") or [])
        self.attrs = self._store.update(self.id, paused=False)
        self._event("unpause")
        return self

    def update(self, **limits):
        """New limits (RunSpec's names: memory, memory_swap, memory_reservation, cpus,
        cpu_shares, cpu_period, cpu_quota, cpuset_cpus, cpuset_mems, pids_limit,
        restart) on the container: written into its cgroups if it runs, and kept in its
        record for its next starts."""
        from fastbox.runtime import limits_update
        from fastbox.spec import spec_from_dict, spec_to_dict, merged_limits
        record = self.reload().attrs
        spec = spec_from_dict(merged_limits(record["spec"], limits))
        if record["status"] == status.RUNNING:
            limits_update.apply(self.id, record.get("cgroups") or [], spec)
        self.attrs = self._store.update(self.id, spec=spec_to_dict(spec))
        self._event("update")
        return self

    def commit(self, repository=None, changes=(), message="", author="", pause=True):
        """The container's writable layer as a new image on its own (`docker commit`);
        a running container is paused meanwhile, as Docker does by default."""
        from fastbox.api import resolve_image
        from fastbox.images.commit import commit
        record = self.reload().attrs
        upper = os.path.join(self._store.container_dir(self.id), "upper")
        if not os.path.isdir(upper):
            raise ContainerStateError(f"container {self.id[:12]} has no writable layer yet")
        spec = record.get("spec") or {}
        image = resolve_image(record["image_id"])
        kept = {"Cmd": spec.get("command"), "Entrypoint": spec.get("entrypoint"),
                "Env": list(image.env) + [e for e in spec.get("env") or ()] if spec.get("env") else None,
                "WorkingDir": spec.get("workdir"), "User": spec.get("user")}
        paused_here = (pause and record["status"] == status.RUNNING
                       and not record.get("paused"))
        if paused_here:
            self.pause()
        try:
            return commit(upper, image, repository, changes, message, author, kept)
        finally:
            if paused_here:
                self.unpause()

    def _event(self, action, **attributes):
        from fastbox.state import events
        events.append(action, self.attrs, **attributes)

    def _running_record(self):
        record = self.reload().attrs
        if record["status"] != status.RUNNING:
            raise ContainerStateError(f"container {self.id[:12]} is not running")
        return record

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

    def _wait_process_gone(self, record, timeout):
        """Wait for the monitor's pid itself to end, whatever the status says."""
        deadline = time.monotonic() + timeout
        while (process.alive(record.get("monitor_pid"), record.get("monitor_start"))
               and time.monotonic() < deadline):
            time.sleep(0.01)

    def remove(self, force=False, volumes=False):
        """volumes (`rm -v`): its anonymous volumes go too."""
        record = self.reload().attrs
        if not force and status.restarting(record):
            raise ContainerStateError(
                f"cannot remove restarting container {self.id[:12]}: stop it first or use -f")
        under_policy = (record.get("spec") or {}).get("restart", "no") != "no"
        if force and under_policy:
            from fastbox.runtime import restart_policy
            restart_policy.mark_stopped(self._store, self.id)
            record = self._await_restart(record)
        if record["status"] == status.RUNNING:
            if not force:
                raise ContainerStateError(
                    f"cannot remove running container {self.id[:12]}: stop it first or use -f")
            _kill_now(record)
            if record.get("paused"):
                self.unpause()
            self._wait_monitor(10)
            record = self.reload().attrs
        if under_policy:
            # its monitor became the restarter at the exit: it reads the stop and ends,
            # but only once Python is up, which can take seconds on a slow machine
            self._wait_process_gone(record, 10)
        self._discard(record)
        self._event("destroy")
        if volumes:
            from fastbox.volumes import store
            store.remove_anonymous((record.get("spec") or {}).get("volumes"))

    def _discard(self, record=None):
        """Delete everything of this container: cgroups a dead monitor left, the
        record, its directory and its name."""
        from fastbox.runtime import cgroup
        record = record or self.attrs
        cgroup.kill_all(record.get("cgroups") or [])
        cgroup.remove(record.get("cgroups") or [])
        from fastbox.network import endpoints
        endpoints.release(self.id)
        self._store.delete(record)

    def rename(self, new_name):
        from fastbox.spec import RunSpec
        RunSpec("x", name=new_name)  # validates the name
        old = self.attrs.get("name") or ""
        self.attrs = self._store.rename(self.id, new_name)
        if old:
            from fastbox.network import endpoints  # its name on user networks, as Docker's DNS
            endpoints.rename(self.id, old, new_name)
        self._event("rename", oldName="/" + old)
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
        record = self._running_record()
        if record.get("paused"):
            raise ContainerStateError(f"container {self.id[:12]} is paused: unpause it first")
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
            # Docker: a container waiting out its restart back-off is Running and
            # Restarting, Status "restarting"
            "State": {"Status": status.docker_state(r),
                      "Running": r["status"] == status.RUNNING or status.restarting(r),
                      "Paused": _paused(r), "Restarting": status.restarting(r),
                      "Pid": r.get("pid", 0), "ExitCode": r.get("exit_code") or 0,
                      "OOMKilled": bool(r.get("oom_killed")),
                      # Docker's zero time for what has not happened yet
                      "StartedAt": r.get("started_at") or ZERO_TIME,
                      "FinishedAt": r.get("finished_at") or ZERO_TIME,
                      "Error": r.get("error", "")},
            "Config": {"Image": r["image"], "Cmd": spec.get("command"),
                       "Entrypoint": spec.get("entrypoint"), "Env": spec.get("env"),
                       "WorkingDir": spec.get("workdir"), "User": spec.get("user"),
                       "Hostname": spec.get("hostname") or r["id"][:12], "Tty": r.get("tty"),
                       "Labels": dict(spec.get("labels") or {}),
                       "StopSignal": spec.get("stop_signal") or "SIGTERM",
                       "StopTimeout": spec.get("stop_timeout"),
                       "ExposedPorts": _exposed_ports(r)},
            "HostConfig": {**_resources(spec), "Binds": spec.get("volumes"),
                           "Tmpfs": spec.get("tmpfs"), "ReadonlyRootfs": spec.get("read_only"),
                           "NetworkMode": spec.get("network"), "AutoRemove": spec.get("remove"),
                           "PortBindings": _port_bindings(spec),
                           "SecurityOpt": spec.get("security_opt") or None,
                           "CapAdd": spec.get("cap_add") or None,
                           "CapDrop": spec.get("cap_drop") or None,
                           "Privileged": bool(spec.get("privileged")),
                           "Devices": [dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"),
                                                d.split(":"))) for d in spec.get("devices") or ()],
                           "DeviceCgroupRules": spec.get("device_cgroup_rules") or None,
                           "LogConfig": r.get("log_config"),
                           "RestartPolicy": _restart_policy(spec.get("restart")),
                           "Init": bool(spec.get("init")) or None,
                           "ShmSize": spec.get("shm_size") or 64 << 20},
            "RestartCount": r.get("restart_count", 0),
            "LogPath": self._store.log_path(self.id),
            "MonitorPid": r.get("monitor_pid"),
            "Cgroups": r.get("cgroups"),
            "NetworkSettings": _network_settings(self.id),
        }


def _exposed_ports(record):
    """Docker's Config.ExposedPorts: the image's EXPOSE, --expose and -p's container ports."""
    from fastbox.network import container_ports
    return {f"{port}/{proto}": {} for port, proto in sorted(container_ports.exposed(record))} or None


def _port_bindings(spec):
    """Docker's HostConfig.PortBindings, from -p (a random host port is "")."""
    out = {}
    for item in spec.get("publish") or ():
        ip, host, cport = item.split(":")
        out.setdefault(cport, []).append({"HostIp": "" if ip == "0.0.0.0" else ip, "HostPort": host})
    return out


def _network_settings(cid):
    """Docker's NetworkSettings, from the container's endpoint while it has one; the
    networks it was connected to (network connect) as well."""
    from fastbox.network import connect, endpoints
    ep = endpoints.load(cid)
    if ep is None:
        return {"IPAddress": "", "Gateway": "", "MacAddress": "", "Ports": {},
                "Networks": connect.settings(cid)}
    ports = {}
    for proto, ip, hp, cp in endpoints.shown_ports(ep):
        ports.setdefault(f"{cp}/{proto}", []).append({"HostIp": ip, "HostPort": str(hp)})
    v6 = endpoints.ipv6_settings(ep)
    return {"IPAddress": ep.ip, "Gateway": ep.gateway, "IPPrefixLen": ep.prefix, **v6,
            "MacAddress": ep.mac_address, "Ports": ports,
            "Networks": {ep.network: {"NetworkID": ep.network_id, "IPAddress": ep.ip,
                                      "Gateway": ep.gateway, "IPPrefixLen": ep.prefix, **v6,
                                      "MacAddress": ep.mac_address, "Aliases": ep.names},
                         **connect.settings(cid)}}


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


def _paused(record):
    return bool(record.get("paused")) and record["status"] == status.RUNNING


def _restart_policy(value):
    name, _, count = (value or "no").partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


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
