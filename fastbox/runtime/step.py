"""A build step's container (fastbox build's RUN): the same plan, security defaults and
start as `run`'s, with its overlay upper layer in a directory the caller keeps.

The upper directory is the step's diff. It is mounted without metacopy and without
redirect_dir (a layer must hold whole files and real directories, not overlay's
pointers to the layers below), and the caller turns it into the step's layer after exit.
"""
import os

from fastbox import _core
from fastbox.runtime import container, spare

# A layer must be self-contained: whole copied-up files, no redirects into lower layers.
LAYER_OVERLAY_OPTIONS = ("metacopy=off", "redirect_dir=off")


def start(cid, spec, image, base, stdio):
    """Start spec's program on image's layers, its upper layer in base/upper (base/work
    and base/rootfs are overlay's work dir and mount point); returns container.Started.
    spec must be ephemeral (remove=True) with LAYER_OVERLAY_OPTIONS as storage_opts."""
    net = spare.netns(spec)  # a Spare (fastbox.runtime.spare), or None
    plan = None
    try:
        plan, cg, fs, argv = container.prepare(cid, spec, image, stdio, False, None,
                                               net.fd if net is not None else None, net)
        plan.scratch = plan.scratch_data = None  # no tmpfs: the upper layer stays on disk
        plan.etc_files = ()  # the step's layer must not keep a container's /etc files
        plan.upper, plan.work, plan.rootfs = base + "/upper", base + "/work", base + "/rootfs"
        for d in (plan.upper, plan.work, plan.rootfs):
            os.makedirs(d, 0o755, exist_ok=True)
        os.chmod(plan.upper, 0o755)  # the container's "/"
        plan.overlay_opts = list(LAYER_OVERLAY_OPTIONS)
        try:
            pid, pidfd, times = _core.spawn(plan)
        except _core.CoreError as e:
            container.cgroup.remove(cg.dirs)
            container.network_failed(plan, cid)
            raise container.start_error(e, argv) from None
    finally:
        if net is not None:
            net.close()
        if plan is not None and plan.own_netns_fd is not None:
            os.close(plan.own_netns_fd)
    spare.started(spec)
    s = container.Started()
    s.id, s.name, s.pid, s.pidfd = cid, spec.name, pid, pidfd
    s.cgroups, s.container_dir, s.times, s.t0 = cg.dirs, base, times, container.now()
    s.oom_file = cg.oom_file
    s.endpoint = plan.endpoint  # a RUN step on a bridge: released at its teardown
    return s
