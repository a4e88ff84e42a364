"""Helpers shared by the integration tests (imported as `fbtest`)."""
import os

DOCKER_CAPS = 0x00000000A80425FB  # Docker's 14 default capabilities
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_capbnd():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise AssertionError("no CapBnd in /proc/self/status")


def parse_status(text):
    """'CapEff:\t00..' lines -> {'CapEff': int}."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            out[key.strip()] = int(value.strip(), 16)
    return out


def host_cgroup_dir(pid, controller):
    """The host path of a running process's cgroup for a v1 controller (or "" for v2),
    read from /proc/<pid>/cgroup as the host's cgroup namespace sees it."""
    from fastbox.runtime import cgroup
    lay = cgroup.layout()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller and controller in ctrls.split(","):
                return lay.v1[controller] + path
            if not controller and ctrls == "":
                return lay.v2 + path
    raise AssertionError(f"process {pid} has no {controller or 'v2'} cgroup")


def device_control():
    """What stops a container from opening a device node it made (MKNOD is a default
    capability): "v1" (the devices cgroup), "bpf" (an eBPF device program, on pure v2),
    or None where this build has no device control for this host's cgroups."""
    from fastbox.runtime import cgroup
    lay = cgroup.layout()
    if lay.v1.get("devices"):
        return "v1"
    return "bpf" if lay.mode == "v2" else None


def needs_device_control():
    """A pytest mark: expected to fail where this build has no device control."""
    import pytest
    return pytest.mark.xfail(device_control() is None, strict=True,
                             reason="no device control on this host's cgroups in this build "
                                    "(pure v2 needs the eBPF device program)")


def read(path):
    with open(path) as f:
        return f.read().strip()


class Pipe:
    """An os.pipe() whose ends are closed once, by whoever is done first."""

    def __init__(self):
        self.r, self.w = os.pipe()

    def close_w(self):
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def close_r(self):
        if self.r >= 0:
            os.close(self.r)
            self.r = -1

    def readline(self):
        """One line from the read end (blocks until it comes or EOF)."""
        out = b""
        while not out.endswith(b"\n"):
            c = os.read(self.r, 1)
            if not c:
                break
            out += c
        return out.decode()

    def read_all(self):
        chunks = []
        while True:
            c = os.read(self.r, 65536)
            if not c:
                return b"".join(chunks).decode()
            chunks.append(c)

    def close(self):
        self.close_w()
        self.close_r()
