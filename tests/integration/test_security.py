"""The confinement a container gets by default: capabilities, no_new_privs, fds, signals,
masked and read-only paths, devices, namespaces (cgroup, network)."""
import os
import signal
import socket

import pytest

import fastbox
from fbtest import DOCKER_CAPS, host_capbnd, needs_device_control, parse_status

NETWORKS = ["none", "host"]


# ------------------------------------------------------------------ capabilities

@pytest.mark.parametrize("network", NETWORKS)
def test_root_gets_dockers_default_capabilities(probe, network):
    caps = parse_status(probe.run("caps", network=network).stdout.decode())
    expected = DOCKER_CAPS & host_capbnd()
    assert hex(caps["CapBnd"]) == hex(expected)
    assert hex(caps["CapEff"]) == hex(expected)
    assert hex(caps["CapPrm"]) == hex(expected)
    assert caps["CapAmb"] == 0


def test_inheritable_capabilities_are_empty(probe):
    """Docker/containerd/runc leave CapInh empty since CVE-2022-24769: a non-empty
    inheritable set lets file capabilities of an exec'd program be gained."""
    caps = parse_status(probe.run("caps").stdout.decode())
    assert hex(caps["CapInh"]) == "0x0"


@pytest.mark.parametrize("user", ["1000:1000", "nobody"])
def test_non_root_has_no_effective_capabilities(probe, user):
    caps = parse_status(probe.run("caps", user=user).stdout.decode())
    assert caps["CapEff"] == 0
    assert caps["CapPrm"] == 0
    assert caps["CapAmb"] == 0
    assert hex(caps["CapBnd"]) == hex(DOCKER_CAPS & host_capbnd())


def test_capabilities_actually_limit_root(sh):
    """No CAP_SYS_ADMIN: mount and sethostname fail even for root."""
    r = sh("mount -t tmpfs none /mnt 2>/dev/null; echo mount=$?; hostname other 2>/dev/null; echo host=$?")
    lines = r.stdout.decode().split()
    assert len(lines) == 2 and "mount=0" not in lines and "host=0" not in lines, lines


@pytest.mark.parametrize("network", NETWORKS)
def test_no_new_privs(probe, network):
    assert probe.run("nnp", network=network).stdout == b"1\n"


# ------------------------------------------------------------------ fds and signals

@pytest.mark.parametrize("network", NETWORKS)
def test_only_stdio_fds_reach_the_container(probe, network):
    # An inheritable (non-CLOEXEC) fd in the caller must still not reach the container.
    leaky = os.open("/", os.O_RDONLY)
    os.set_inheritable(leaky, True)
    try:
        r = probe.run("fds", network=network)
    finally:
        os.close(leaky)
    lines = r.stdout.decode().splitlines()
    dirfd = int(lines[0].split()[1])
    fds = {int(line.split()[1]): line for line in lines[1:]}
    fds.pop(dirfd)  # the listing's own fd
    assert sorted(fds) == [0, 1, 2], fds


def test_signals_are_not_ignored_or_blocked(probe):
    """Even when the caller ignores and blocks signals (CPython ignores SIGPIPE)."""
    old_handler = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGHUP})
    try:
        r = probe.run("sigs")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGUSR2, old_handler)
    status = parse_status(r.stdout.decode())
    assert status == {"SigIgn": 0, "SigBlk": 0}


def test_sigpipe_has_default_disposition(sh):
    # `yes` dies of SIGPIPE (141 as sh reports it) only if SIGPIPE is at its default; with
    # it ignored, as in CPython, yes would get EPIPE and exit 1.
    r = sh("(yes; echo yes-rc=$? >&2) | head -n 1 >/dev/null")
    assert r.stderr == b"yes-rc=141\n"


# ------------------------------------------------------------------ /proc, /sys, /dev

MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts",
                "/proc/latency_stats", "/proc/timer_stats", "/proc/sched_debug")
MASKED_DIRS = ("/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware",
               "/sys/devices/virtual/powercap")


@pytest.mark.parametrize("path", MASKED_FILES)
def test_masked_file_is_absent_or_empty(probe, path):
    r = probe.run("read", path)
    assert r.stdout in (b"0\n", b"ENOENT\n", b"EACCES\n", b"EPERM\n"), (path, r.stdout)


@pytest.mark.parametrize("path", MASKED_DIRS)
def test_masked_dir_is_absent_or_empty(sh, path):
    r = sh(f"if [ -d {path} ]; then ls -A {path} | wc -l; else echo absent; fi")
    assert r.stdout.strip() in (b"0", b"absent"), (path, r.stdout)


def test_masked_dirs_are_read_only_and_not_shared_with_writes(sh):
    """The masked directories share one empty read-only tmpfs: nothing can be written
    to any of them (a write to one would show in all)."""
    present = [p for p in MASKED_DIRS if os.path.isdir(p)]
    if len(present) < 2:
        pytest.skip("this kernel has fewer than two of the masked directories")
    script = "; ".join(f"touch {p}/x 2>/dev/null && echo wrote {p}" for p in present)
    r = sh(script + "; ls -A " + " ".join(present) + " | grep -v : | grep -c . ")
    assert r.stdout.split(b"\n")[0] == b"0", r.stdout


def test_sys_firmware_is_an_empty_dir_when_host_has_one(sh):
    if not os.path.isdir("/sys/firmware") or not os.listdir("/sys/firmware"):
        pytest.skip("the host has no /sys/firmware content to hide")
    assert sh("ls -A /sys/firmware | wc -l").stdout.strip() == b"0"


def test_masked_interrupts_hides_host_content(probe):
    with open("/proc/interrupts", "rb") as f:
        assert f.read(1)  # the host has content, so an empty read means masked
    assert probe.run("read", "/proc/interrupts").stdout == b"0\n"


@pytest.mark.parametrize("path", ["/proc/sys/kernel/domainname", "/proc/sysrq-trigger",
                                  "/proc/sys/vm/drop_caches"])
def test_readonly_proc_paths(probe, path):
    if not os.path.exists(path):
        pytest.skip(f"this kernel has no {path}")
    r = probe.run("write", path)
    assert (r.exit_code, r.stdout) == (1, b"EROFS\n"), path


def test_readonly_paths_are_readable(probe):
    r = probe.run("read", "/proc/sys/kernel/ostype")
    assert (r.exit_code, r.stdout) == (0, b"6\n")  # "Linux\n"


def test_sys_is_read_only(probe):
    r = probe.run("write", "/sys/kernel/uevent_helper")
    assert r.stdout in (b"EROFS\n",), r.stdout


def test_minimal_dev(sh):
    r = sh("ls -A /dev")
    names = set(r.stdout.decode().split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= names
    host_only = {"sda", "vda", "mem", "kmem", "kmsg", "port", "nvme0", "loop0"}
    assert not names & host_only, names & host_only


def test_dev_null_works(sh):
    r = sh("echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 8 /dev/urandom | wc -c")
    assert r.stdout.split() == [b"4", b"8"]


@needs_device_control()
def test_mknod_is_allowed_but_device_access_denied(sh):
    """MKNOD is a default capability; the device controller (v1 cgroup or v2 program) must
    stop opening /dev/mem, the loop control et al. The nodes are made in /dev, a tmpfs
    without nodev (in the rootfs, on the nodev scratch tmpfs, no device opens anyway), and
    one of them (loop-control, 10:237) needs no capability to open: /dev/mem needs
    CAP_SYS_RAWIO and /dev/kmsg CAP_SYSLOG (dmesg_restrict), so they alone would pass even
    with no device controller at all."""
    r = sh("mknod /dev/xmem c 1 1 && echo made; dd if=/dev/xmem of=/dev/null bs=1 count=1 2>&1 | tail -n 1;"
           " mknod /dev/xloop c 10 237; dd if=/dev/xloop of=/dev/null count=0 2>&1 | tail -n 1")
    assert r.stdout == (b"made\ndd: can't open '/dev/xmem': Operation not permitted\n"
                        b"dd: can't open '/dev/xloop': Operation not permitted\n"), r.stdout


# ------------------------------------------------------------------ namespaces

@pytest.mark.parametrize("network", NETWORKS)
def test_cgroup_namespace_shows_root(probe, network):
    r = probe.run("cgroup", network=network)
    lines = r.stdout.decode().splitlines()
    assert lines
    for line in lines:
        assert line.split(":", 2)[2] == "/", line


def test_own_ipc_namespace(sh):
    inside = sh("readlink /proc/self/ns/ipc").stdout.decode().strip()
    assert inside != os.readlink("/proc/self/ns/ipc")


@pytest.mark.parametrize("ns", ["mnt", "uts", "ipc", "pid", "cgroup", "net"])
def test_namespaces_differ_from_host(sh, ns):
    inside = sh(f"readlink /proc/self/ns/{ns}").stdout.decode().strip()
    assert inside and inside != os.readlink(f"/proc/self/ns/{ns}")


def test_host_network_shares_the_net_namespace(sh):
    inside = sh("readlink /proc/self/ns/net", network="host").stdout.decode().strip()
    assert inside == os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("user", [None, "1000:1000"])
def test_network_none_has_only_lo_up(sh, user):
    r = sh("ls /sys/class/net; echo ---; cat /sys/class/net/lo/flags; ip -o link", user=user)
    names, _, rest = r.stdout.decode().partition("---\n")
    assert names.split() == ["lo"]
    flags = int(rest.splitlines()[0], 16)
    assert flags & 0x1, "lo is not up"  # IFF_UP
    links = [line for line in rest.splitlines()[1:] if line.strip()]
    assert len(links) == 1 and "lo:" in links[0] and "UP" in links[0]


def test_network_none_loopback_works(sh):
    r = sh("ping -c 1 127.0.0.1 >/dev/null && echo reachable")
    assert r.stdout == b"reachable\n", r.stderr


def _links():
    """This process's network namespace's links (the session runs in one of its own, and
    /sys/class/net shows the namespace of whoever mounted sysfs, not ours)."""
    return sorted(name for _, name in socket.if_nameindex())


def test_network_host_sees_host_interfaces(sh):
    r = sh("ls /sys/class/net", network="host")
    assert sorted(r.stdout.decode().split()) == _links()


def test_network_none_cannot_reach_host_interfaces(sh):
    host = sorted(set(_links()) - {"lo"})
    if not host:
        pytest.skip("the host has only lo")
    r = sh("ip -o link")
    for name in host:
        assert f" {name}:" not in r.stdout.decode()


def test_old_root_is_detached(probe, tmp_path):
    """No host mount is visible inside: pivot_root's old root was unmounted."""
    r = probe.run("mounts")
    points = [line.split()[4] for line in r.stdout.decode().splitlines()]
    assert "/" in points
    for p in points:
        for host_only in (str(tmp_path), "/work", "/tmp/pytest-of-root", "/sys/fs/cgroup/unified"):
            assert not (p == host_only or p.startswith(host_only + "/")), p
    r = probe.run("read", "/work/main/setup.py")
    assert r.stdout == b"ENOENT\n"


def test_cannot_see_host_files_through_proc(sh):
    r = sh("ls /proc/1/root/ | wc -l; ls /proc/1/root/work 2>&1 >/dev/null | wc -l")
    # pid 1 is the container's own init: its root is the container root, which has no /work
    lines = r.stdout.split()
    assert lines[1] == b"1"


def test_cgroupfs_inside_is_read_only_and_rooted_at_the_container(sh):
    """Like Docker with a private cgroup namespace: the container's own cgroup is the root
    of what it sees, its limit is visible there, and it cannot change it."""
    from fastbox.runtime import cgroup
    if cgroup.layout().v1:
        f = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    else:
        f = "/sys/fs/cgroup/memory.max"
    r = sh(f"cat {f}; echo 1g > {f}; echo rc=$?; cat {f}; ls /sys/fs/cgroup/memory | grep -c '^fastbox' || true",
           memory="64m")
    lines = r.stdout.decode().split()
    assert lines[0] == str(64 << 20)
    assert lines[1] != "rc=0"
    assert lines[2] == str(64 << 20)
    assert lines[3] == "0"  # no sibling container cgroups visible


def test_init_exe_is_the_containers_program(sh):
    """/proc/1/exe is the container's program, never the host's runtime (CVE-2019-5736)."""
    assert sh("readlink /proc/1/exe").stdout == b"/bin/busybox\n"


# DESIGN.md, security defaults: Docker's default seccomp profile, "also what keeps
# unshare(CLONE_NEWUSER) and mount away from containers".

def test_seccomp_filter_is_installed(probe):
    status = fastbox.run(probe.image, ["grep", "^Seccomp:", "/proc/self/status"],
                         capture_output=True).stdout.decode().split()
    assert status == ["Seccomp:", "2"], status  # 2 = SECCOMP_MODE_FILTER


def test_container_cannot_create_user_namespaces(sh):
    r = sh("unshare -U -r true 2>/dev/null; echo rc=$?")
    assert r.stdout != b"rc=0\n", "a container process created a user namespace"
