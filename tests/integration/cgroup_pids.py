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
