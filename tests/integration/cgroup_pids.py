"""What is in a container's cgroups, read from the host."""
import os


def pids_in(dirs):
    """Pids in any of the cgroup dirs (that still exist)."""
    pids = set()
    for d in dirs:
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def container_cgroups():
    """Every container cgroup below this session's parent, in every hierarchy."""
    import glob
    parent = os.environ["FASTBOX_CGROUP_PARENT"]
    return sorted(glob.glob(f"/sys/fs/cgroup/*/{parent}/*/")
                  + glob.glob(f"/sys/fs/cgroup/{parent}/*/"))
