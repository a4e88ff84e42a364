"""Running another process in a running container (`fastbox exec`): the core clones it
into the container's pid namespace, joins its cgroups, enters its other namespaces
(mount included, which makes the container's root its root), and execs."""
import os

from fastbox import _core
from fastbox.runtime import cgroup, container, user
from fastbox.runtime.container import (NEWCGROUP, NEWIPC, NEWNET, NEWNS, NEWUTS, Plan,
                                       Started)

JOINED = NEWNS | NEWUTS | NEWIPC | NEWNET | NEWCGROUP
# The process that enters the container is forked by this small static helper, run from a
# sealed memfd copy: never a clone of ours (csrc/fb_exec.c says why).
ENTER_HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "libexec", "fastbox-enter")


def start(record, image, argv, env=(), workdir=None, user_spec=None, stdio=(-1, -1, -1),
          tty=False, pidfd=None):
    """Start argv in the container described by record (whose init pidfd is given);
    returns a Started the caller waits on like a container."""
    from fastbox.spec import parse_env, spec_from_dict
    spec = spec_from_dict(record["spec"])
    ident = user.resolve(user_spec or spec.user or image.user, image.layer_dirs)
    base = container._env(spec, image, ident, spec.hostname or record["id"][:12], tty)
    for item in parse_env(list(env)):
        k, _, v = item.partition("=")
        base[k] = v
    plan = _plan(record, argv, base, workdir or spec.workdir or image.working_dir or "/",
                 ident, stdio, tty, pidfd)
    console = container.Console(plan, tty) if tty else None
    try:
        pid, child_pidfd, times = _core.spawn(plan)
    except _core.CoreError as e:
        if console:
            console.ours.close()
        raise container.start_error(e, argv) from None
    finally:
        if console:
            console.sent()
    s = Started()
    s.terminal = console.receive() if console else None
    s.id, s.name, s.pid, s.pidfd = record["id"], record.get("name"), pid, child_pidfd
    s.cgroups, s.container_dir, s.times, s.t0 = [], None, times, None
    return s


def _plan(record, argv, env, cwd, ident, stdio, tty, pidfd):
    lay = cgroup.layout()
    dirs = record.get("cgroups") or []
    return Plan(
        ns_flags=0, lowers=[], scratch=None, scratch_data=None, upper=None, work=None,
        rootfs=None, overlay_opts=[], readonly_root=False, mounts=[], masked=[], masked_dirs=[],
        readonly_paths=[], mount_cgroup2=False, cgroup_v1_mounts=[], cg_mkdirs=[],
        cg_writes=[], cg_join=[d + "/tasks" for d in dirs] if lay.v1 else [],
        cg_into=dirs[0] if dirs and not lay.v1 else None, unshare_cgroupns=False,
        hostname=None, argv=list(argv), envp=[f"{k}={v}" for k, v in env.items()],
        path=env.get("PATH", container.DEFAULT_PATH), cwd=cwd, uid=ident.uid, gid=ident.gid,
        groups=ident.groups, caps=container.DEFAULT_CAPS, no_new_privs=True, seccomp=True,
        loopback_up=False,
        stdio=list(stdio), join_pidfd=pidfd, join_ns_flags=JOINED, enter_helper=ENTER_HELPER)


def open_init(record):
    """A pidfd for the container's init, checked to be the recorded process."""
    from fastbox.errors import ContainerStateError
    from fastbox.state import process
    try:
        fd = os.pidfd_open(record["pid"])
    except (ProcessLookupError, TypeError):
        raise ContainerStateError(f"container {record['id'][:12]} is not running") from None
    if process.start_time(record["pid"]) != record.get("pid_start"):
        os.close(fd)
        raise ContainerStateError(f"container {record['id'][:12]} is not running")
    return fd
