"""Where fastbox keeps its data, read from the environment at each call so that tests
(and users) can point one process at several roots.

FASTBOX_ROOT holds what persists (images, containers); FASTBOX_RUN holds what dies with
the machine (locks, scratch mount points). FASTBOX_CGROUP_PARENT names the cgroup under
which every container cgroup is made, at the root of each hierarchy, never relative to
the caller's own cgroup.
"""
import os


def root():
    return os.environ.get("FASTBOX_ROOT", "/var/lib/fastbox")


def run_dir():
    return os.environ.get("FASTBOX_RUN", "/run/fastbox")


def cgroup_parent():
    return os.environ.get("FASTBOX_CGROUP_PARENT", "fastbox").strip("/")


def images_dir():
    return os.path.join(root(), "images")


def containers_dir():
    return os.path.join(root(), "containers")


def private_dir(path):
    """Make path, and any of its missing parents, root's alone (0700: Docker keeps
    /var/lib/docker 0710); an existing directory is left as it is (fastbox.state.modes
    tightens a store made before this rule once)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        private_dir(parent)
        private_dir(path)
