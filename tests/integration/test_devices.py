"""The device controller: what a container may mknod and open, on every path fastbox has.

MKNOD is one of the default capabilities, so a container can always make a node for any
device; the device controller is what stops it from opening one: the container's own v1
devices cgroup, or on cgroup v2 the eBPF program fastbox attaches to the container's
cgroup before the clone.

Every test runs in two modes:
  - "host": the path this host takes by default (v1 devices cgroup on v1 and hybrid
    hosts, the eBPF program on pure v2);
  - "bpf": on a hybrid host, the v2 path forced onto its cgroup2 mount, with no v1
    cgroup of the container's own at all: the test process's v1 devices cgroup (which
    must allow everything) is all the container is in, so only the program decides.
"""
import ctypes
import os
import platform
import struct
import subprocess
import sys

import pytest

import fastbox
from fastbox.errors import SpecError
from fastbox.runtime import cgroup

from test_lifecycle import reap, wait_for_log  # noqa: F401 (reap: autouse, for kept containers' monitors)

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
# Devices a default container must not open: (name, type, major, minor).
FORBIDDEN = [("fuse", "c", 10, 229), ("loop-control", "c", 10, 237), ("tty1", "c", 4, 1),
             ("mem", "c", 1, 1)]
STANDARD = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/pts/ptmx"]
BPF_PROG_QUERY, BPF_CGROUP_DEVICE = 16, 6


def _host_disks():
    """Real block devices of this host: the first disk in /proc/partitions (not a loop,
    ram or zram device), and loop0, which root on the host can open when nothing else
    stops it."""
    found = []
    with open("/proc/partitions") as f:
        for line in f.read().splitlines()[2:]:
            major, minor, _, name = line.split()
            if not name.startswith(("loop", "ram", "zram", "sr", "nbd")):
                found.append((f"disk-{name}", "b", int(major), int(minor)))
                break
    try:
        with open("/sys/block/loop0/dev") as f:
            major, minor = f.read().strip().split(":")
            found.append(("loop0", "b", int(major), int(minor)))
    except OSError:
        pass
    return found


def _v1_devices_allow_all():
    """Whether this process's own v1 devices cgroup (if any) allows every device."""
    lay = cgroup.layout()
    if "devices" not in lay.v1:
        return True
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "devices" in ctrls.split(","):
                with open(f"{lay.v1['devices']}{path}/devices.list") as g:
                    return g.read().startswith("a *:* rwm")
    return True


@pytest.fixture(params=["host", "bpf"])
def mode(request, monkeypatch):
    lay = cgroup.layout()
    if request.param == "bpf":
        if not (lay.v2 and lay.v1):
            pytest.skip("forcing v2 needs a hybrid host (on pure v2 the host path is the program)")
        if not _v1_devices_allow_all():
            pytest.skip("this process's v1 devices cgroup restricts devices: not the program alone")
        monkeypatch.setattr(cgroup, "_layout", cgroup.Layout(lay.v2, {}))
    return request.param


def _probe_lines(r):
    assert r.exit_code == 0, r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.decode().splitlines())


def devnode(probe, nodes, **opts):
    """mknod each (name, type, major, minor) in the container's /dev, then open it: {path:
    'mknod=.. open=..'}."""
    args = [a for name, kind, major, minor in nodes for a in (f"/dev/{name}", kind, major, minor)]
    return _probe_lines(probe.run("devnode", *args, **opts))


def opened(probe, paths_modes, **opts):
    args = [a for pm in paths_modes for a in pm]
    return {k: v.split("=", 1)[1] for k, v in _probe_lines(probe.run("open", *args, **opts)).items()}


def attached_programs(cgroup_dir):
    """How many device programs are attached to this v2 cgroup (BPF_PROG_QUERY)."""
    libc = ctypes.CDLL(None, use_errno=True)
    nr = {"x86_64": 321, "aarch64": 280}[platform.machine()]
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = ctypes.create_string_buffer(struct.pack("IIIIQI", fd, BPF_CGROUP_DEVICE, 0, 0, 0, 0), 64)
        if libc.syscall(nr, BPF_PROG_QUERY, attr, 64) < 0:
            raise OSError(ctypes.get_errno(), "BPF_PROG_QUERY")
        return struct.unpack_from("I", attr.raw, 24)[0]
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the default policy

def test_default_container_cannot_open_host_devices(probe, mode):
    """The attack: make nodes for FUSE, the loop control, a virtual console, /dev/mem and
    the host's disks, and open them. mknod is allowed (as in Docker); every open is
    refused by the device controller with EPERM."""
    nodes = FORBIDDEN + _host_disks()
    seen = devnode(probe, nodes)
    assert seen == {f"/dev/{n}": "mknod=OK open=EPERM" for n, _, _, _ in nodes}


def test_standard_devices_work(probe, mode):
    seen = opened(probe, [(p, "rw") for p in STANDARD])
    assert seen == {p: "OK" for p in STANDARD}
    # /dev/tty: allowed, but there is no controlling terminal; tun (10:200): allowed.
    assert opened(probe, [("/dev/tty", "rw")]) == {"/dev/tty": "ENXIO"}
    tun = devnode(probe, [("tun", "c", 10, 200)])["/dev/tun"]
    assert tun.startswith("mknod=OK") and "EPERM" not in tun, tun


# ------------------------------------------------------------------ --device

@pytest.fixture
def host_fuse():
    if not os.path.exists("/dev/fuse"):
        pytest.skip("this host has no /dev/fuse")
    return os.stat("/dev/fuse")


def test_device_makes_and_allows_the_node(probe, mode, host_fuse):
    r = probe.run("open", "/dev/fuse", "rw", devices=["/dev/fuse"])
    assert r.stdout == b"/dev/fuse open=OK\n", r.stderr
    # only that one: the rest stay denied
    assert devnode(probe, FORBIDDEN[1:2], devices=["/dev/fuse"]) == {
        "/dev/loop-control": "mknod=OK open=EPERM"}


def test_device_at_another_path_with_its_permissions(probe, mode, host_fuse):
    """HOST:CONTAINER:PERMISSIONS: the node appears at the container path (directories
    made), with the host node's mode and owner; 'r' allows reading only."""
    script = "stat -c '%F %t:%T %a %u:%g' /dev/x/fuse; /probe open /dev/x/fuse r /dev/x/fuse rw"
    r = fastbox.run(probe.image, ["sh", "-c", script], capture_output=True,
                    devices=["/dev/fuse:/dev/x/fuse:r"])
    want_mode = f"{host_fuse.st_mode & 0o7777:o} {host_fuse.st_uid}:{host_fuse.st_gid}"
    assert r.stdout.decode().splitlines() == [
        f"character special file a:e5 {want_mode}", "/dev/x/fuse open=OK", "/dev/x/fuse open=EPERM"], r.stderr


def test_device_of_a_missing_host_path_is_refused(probe, mode):
    with pytest.raises(SpecError, match=r"--device '/dev/fastbox-no-such:/dev/fastbox-no-such:rwm'"):
        probe.run("pid", devices=["/dev/fastbox-no-such"])
    with pytest.raises(SpecError, match="not a device node"):
        probe.run("pid", devices=["/etc/hostname:/dev/hostname"])


# ------------------------------------------------------------------ --device-cgroup-rule

def test_device_cgroup_rule_allows_what_it_names(probe, mode):
    rules = ["c 10:237 rwm"]
    seen = devnode(probe, FORBIDDEN[:2], device_cgroup_rules=rules)
    assert seen == {"/dev/fuse": "mknod=OK open=EPERM", "/dev/loop-control": "mknod=OK open=OK"}


def test_device_cgroup_rule_wildcard_and_access(probe, mode, host_fuse):
    """'c 10:* r': any minor of major 10, read only: a read-write open asks for more."""
    r = fastbox.run(probe.image, ["sh", "-c", "mknod /dev/f c 10 229 && /probe open /dev/f r /dev/f rw"],
                    capture_output=True, device_cgroup_rules=["c 10:* r"])
    assert r.stdout == b"/dev/f open=OK\n/dev/f open=EPERM\n", r.stderr


def test_device_cgroup_rule_type_matters(probe, mode):
    """A char rule does not open the block device of the same numbers (loop0, 7:0)."""
    loop0 = [n for n in _host_disks() if n[0] == "loop0"]
    if not loop0:
        pytest.skip("this host has no loop0")
    assert devnode(probe, loop0, device_cgroup_rules=["c 7:0 rwm"]) == {"/dev/loop0": "mknod=OK open=EPERM"}
    assert devnode(probe, loop0, device_cgroup_rules=["b 7:0 r"]) == {"/dev/loop0": "mknod=OK open=OK"}


# ------------------------------------------------------------------ no device control

@pytest.mark.parametrize("opts", [{"privileged": True}, {"security_opt": ["devices=unconfined"]}],
                         ids=["privileged", "unconfined"])
def test_no_device_control_when_asked(probe, mode, opts):
    lay = cgroup.layout()
    if lay.v1 and "devices" in lay.v1 and lay.v1_options[lay.v1["devices"]] != "devices":
        pytest.skip("devices shares its v1 hierarchy: the container has a devices cgroup anyway")
    if not _v1_devices_allow_all():
        pytest.skip("this process's devices cgroup restricts devices")
    seen = devnode(probe, FORBIDDEN[:2], **opts)
    assert seen == {"/dev/fuse": "mknod=OK open=OK", "/dev/loop-control": "mknod=OK open=OK"}


# ------------------------------------------------------------------ the v2 program itself

@pytest.fixture
def v2_path(mode):
    if cgroup.layout().v1:
        pytest.skip("the host path here is v1 (the bpf mode covers the program)")
    return cgroup.layout().v2


def test_program_is_attached_once_before_the_container_runs(probe, v2_path, pipes):
    """One program on the container's cgroup from its first instruction: the container
    reports its own cgroup's program count before it does anything else."""
    seen = {}
    hold = pipes()

    def on_start(pid):
        with open(f"/proc/{pid}/cgroup") as f:
            path = [line for line in f.read().splitlines() if line.startswith("0::")][0][3:]
        seen["count"] = attached_programs(v2_path + path)
        hold.close_w()

    r = fastbox.run(probe.image, ["sh", "-c", "cat >/dev/null; /probe devnode /dev/f c 10 229"],
                    capture_output=True, stdin=hold.r, on_start=on_start)
    assert r.stdout == b"/dev/f mknod=OK open=EPERM\n", r.stderr
    assert seen["count"] == 1


def test_program_fd_never_reaches_the_container(probe, v2_path):
    """The engine keeps its loaded programs open; none of them is inherited."""
    r = probe.run("fds")
    assert r.exit_code == 0 and b"bpf" not in r.stdout, r.stdout


def test_program_is_loaded_once_per_rule_set(probe, v2_path):
    from fastbox.runtime import devices
    probe.run("pid")
    probe.run("pid", device_cgroup_rules=["c 10:237 rwm"])
    fds = dict(devices._programs)
    probe.run("pid")
    probe.run("pid", device_cgroup_rules=["c 10:237 rwm"])
    assert devices._programs == fds and len(fds) >= 2


def test_pool_attaches_once_per_cgroup(probe, v2_path):
    with fastbox.Pool(probe.image, size=1) as pool:
        for _ in range(3):
            r = pool.run(["/probe", "devnode", "/dev/f", "c", "10", "229"], capture_output=True)
            assert r.stdout == b"/dev/f mknod=OK open=EPERM\n", r.stderr
        assert attached_programs(pool._made[0].into) == 1
        with pytest.raises(SpecError, match="devices"):
            pool.run(["true"], devices=["/dev/fuse"])


# A process in which bpf(2) fails with ENOSYS, as on a kernel without it or under a
# seccomp policy that refuses it, running `fastbox run ARGS` on the v2 path.
NO_BPF = r"""
import ctypes, os, platform, struct, sys
nr = {"x86_64": 321, "aarch64": 280}[platform.machine()]
insns = [(0x20, 0, 0, 0), (0x15, 0, 1, nr), (0x06, 0, 0, 0x00050000 | 38), (0x06, 0, 0, 0x7fff0000)]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Fprog(len(insns), ctypes.addressof(code))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0
from fastbox.runtime import cgroup
lay = cgroup.layout()
if lay.v1:
    cgroup._layout = cgroup.Layout(lay.v2, {})
from fastbox.cli import run_command
sys.exit(run_command.main(sys.argv[1:]))
"""


def test_v2_without_bpf_refuses_to_start_unless_told(busybox, v2_path):
    def run(*args):
        return subprocess.run([sys.executable, "-c", NO_BPF, "--rm", "--network", "host", *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
    r = run("busybox", "true")
    assert r.returncode == 125, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("fastbox: cannot load the cgroup v2 device program"), r.stderr
    assert "--security-opt devices=unconfined" in r.stderr
    r = run("--security-opt", "devices=unconfined", "busybox", "true")
    assert (r.returncode, r.stderr) == (0, "")


# ------------------------------------------------------------------ the CLI

def test_cli_device_and_rule(probe, host_fuse):
    r = subprocess.run([FASTBOX, "run", "--rm", "--device", "/dev/fuse", "--device-cgroup-rule",
                        "c 10:237 rwm", probe.image, "sh", "-c",
                        "/probe open /dev/fuse rw && /probe devnode /dev/lc c 10 237"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "/dev/fuse open=OK\n/dev/lc mknod=OK open=OK\n"), r.stderr


@pytest.mark.parametrize("args,flag", [
    (["--device", "dev/fuse"], "--device"),
    (["--device", "/dev/fuse:/dev/null"], "--device"),
    (["--device", "/dev/fuse:/mnt/fuse"], "--device"),
    (["--device", "/dev/fuse:/dev/fuse:rx"], "--device"),
    (["--device-cgroup-rule", "c 10:229"], "--device-cgroup-rule"),
    (["--device-cgroup-rule", "x 1:3 rwm"], "--device-cgroup-rule"),
    (["--device-cgroup-rule", "a 1:3 r"], "--device-cgroup-rule"),
    (["--device-cgroup-rule", "c 5000:1 r"], "--device-cgroup-rule"),
    (["--security-opt", "devices=all"], "--security-opt"),
])
def test_cli_bad_values_are_one_line_errors(busybox, args, flag):
    r = subprocess.run([FASTBOX, "run", "--rm", *args, "busybox", "true"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 125
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastbox: invalid {flag} "), r.stderr


# ------------------------------------------------------------------ kept containers, exec

def test_kept_container_and_exec_keep_the_policy(probe, mode, host_fuse):
    """A detached container with --device: its record keeps the devices (inspect shows
    them), and a process exec'd into it is under the same device controller."""
    from fastbox import containers
    c = containers.run(probe.image, ["sh", "-c", "echo ready; exec sleep 1000"], devices=["/dev/fuse"])
    try:
        wait_for_log(c, "ready")
        host = c.inspect()["HostConfig"]
        assert host["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                                    "CgroupPermissions": "rwm"}]
        r = c.exec_run(["/probe", "open", "/dev/fuse", "rw"])
        assert r.stdout == b"/dev/fuse open=OK\n", r.output
        r = c.exec_run(["/probe", "devnode", "/dev/lc", "c", "10", "237"])
        assert r.stdout == b"/dev/lc mknod=OK open=EPERM\n", r.output
    finally:
        c.remove(force=True)
