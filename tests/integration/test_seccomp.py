"""seccomp with Docker's default profile semantics, and the capability options: a static
probe inside real containers makes the raw syscalls and reports the errno it got.

x86_64 syscall numbers; the profile is fastbox/runtime/seccomp_default.json."""
import json
import os
import subprocess
import sys

import pytest

import fastbox
from fastbox import containers
from fastbox.errors import SpecError

from fbtest import host_capbnd, needs_device_control, parse_status
from test_lifecycle import cli, one_line_error, reap, wait_for_log  # noqa: F401 (reap: autouse)

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall numbers")

NR = {"read": 0, "socket": 41, "clone": 56, "uname": 63, "ptrace": 101, "personality": 135,
      "modify_ldt": 154, "chroot": 161, "mount": 165, "init_module": 175, "kexec_load": 246,
      "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "open_by_handle_at": 304,
      "setns": 308, "kcmp": 312, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
      "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435, "getpid": 39,
      "statmount": 457}
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x04000000, 0x10000000, 0x40000000
AF_INET, AF_UNIX, AF_ALG, AF_VSOCK, AF_XDP = 2, 1, 38, 40, 44
BAD_TYPE = 0xff  # the kernel rejects it (EINVAL) before any family's code runs: no socket is made
READ_IMPLIES_EXEC = 0x0400000


def syscall(probe, name, *args, **opts):
    return _errno(probe.run("syscall", NR[name], *args, **opts))


def _errno(result):
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout.decode().strip()


# What Docker's default profile refuses, and the errno it gives.
REFUSED = [
    ("io_uring_setup", (1, 0), "EPERM"),
    ("io_uring_enter", (0, 0, 0, 0, 0, 0), "EPERM"),
    ("io_uring_register", (0, 0, 0, 0), "EPERM"),
    ("personality", (READ_IMPLIES_EXEC,), "EPERM"),
    ("personality", (0x100000000,), "EPERM"),         # PER_LINUX with a high bit: not 0
    ("modify_ldt", (1, 0, 16), "EPERM"),              # write_ldt
    ("modify_ldt", (0x11, 0, 16), "EPERM"),           # write_ldt, new mode
    ("unshare", (CLONE_NEWUSER,), "EPERM"),
    ("unshare", (CLONE_NEWNS,), "EPERM"),
    ("mount", (0, 0, 0, 0, 0), "EPERM"),
    ("keyctl", (0, 0, 0, 0, 0), "EPERM"),
    ("add_key", (0, 0, 0, 0, 0), "EPERM"),
    ("request_key", (0, 0, 0, 0), "EPERM"),
    ("bpf", (0, 0, 0), "EPERM"),
    ("userfaultfd", (0,), "EPERM"),
    ("setns", (0, 0), "EPERM"),
    ("kexec_load", (0, 0, 0, 0), "EPERM"),
    ("init_module", (0, 0, 0), "EPERM"),
    ("open_by_handle_at", (0, 0, 0), "EPERM"),        # needs CAP_DAC_READ_SEARCH
    ("kcmp", (1, 1, 0, 0, 0), "EPERM"),               # needs CAP_SYS_PTRACE
    ("socket", (AF_VSOCK, BAD_TYPE, 0), "EPERM"),
    ("socket", (AF_ALG, BAD_TYPE, 0), "EPERM"),
    ("socket", (0x100000000 | AF_VSOCK, BAD_TYPE, 0), "EPERM"),  # read as a 32-bit int: AF_VSOCK
    ("clone3", (), "ENOSYS"),                         # not EPERM: libc falls back to clone
    ("statmount", (0, 0, 0, 0), "ENOSYS"),            # newer than the profile
]

ALLOWED = [
    ("getpid", (), "OK"),
    ("personality", (0,), "OK"),
    ("personality", (0xffffffff,), "OK"),
    ("modify_ldt", (0, 0, 0), "OK"),                  # read_ldt
    ("socket", (AF_INET, 2, 0), "OK"),                # SOCK_DGRAM
    ("socket", (AF_UNIX, 1, 0), "OK"),
    ("socket", (AF_XDP, BAD_TYPE, 0), "EINVAL"),      # a family above AF_VSOCK: the kernel's answer
    ("ptrace", (0x4206, 99999, 0, 0), "ESRCH"),       # PTRACE_SEIZE: allowed, no such process
]


@pytest.mark.parametrize("name, args, expected", REFUSED,
                         ids=[f"{n}{a}" for n, a, _ in REFUSED])
def test_default_profile_refuses(probe, name, args, expected):
    if name == "clone3":
        assert _errno(probe.run("clone3", 0)) == expected
    else:
        assert syscall(probe, name, *args) == expected


@pytest.mark.parametrize("name, args, expected", ALLOWED,
                         ids=[f"{n}{a}" for n, a, _ in ALLOWED])
def test_default_profile_allows(probe, name, args, expected):
    assert syscall(probe, name, *args) == expected


def test_fork_and_clone_without_namespace_flags(probe):
    assert _errno(probe.run("fork")) == "OK"
    assert _errno(probe.run("clone", 0)) == "OK"


@pytest.mark.parametrize("flag", [CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWUTS])
def test_clone_with_namespace_flags_is_refused(probe, flag):
    assert _errno(probe.run("clone", flag)) == "EPERM"


def test_statmount_is_newer_than_the_profile():
    """The ENOSYS case above stands for 'newer than the profile' only while the profile
    (as this libseccomp knows it) ends below statmount."""
    from fastbox.runtime import seccomp
    profile = json.loads(seccomp.default_profile_text())
    assert seccomp.highest_syscall(profile) < NR["statmount"]
    assert seccomp.highest_syscall(profile) >= NR["clone3"]


def test_foreign_abis_are_refused(probe):
    """i386 (int 0x80) and x32 calls never reach the syscall table behind the filter."""
    assert _errno(probe.run("int80", 20)) == "EPERM"             # i386 getpid
    assert syscall(probe, "getpid") == "OK"
    assert _errno(probe.run("syscall", 0x40000000 | NR["getpid"])) == "EPERM"  # x32 getpid


# ------------------------------------------------------------------ capabilities widen the profile

def test_cap_sys_admin_brings_what_dockers_profile_gives_with_it(probe):
    opts = {"cap_add": ["SYS_ADMIN"]}
    assert syscall(probe, "unshare", CLONE_NEWUTS, **opts) == "OK"
    assert _errno(probe.run("clone", CLONE_NEWNS, **opts)) == "OK"
    assert _errno(probe.run("clone3", 0, **opts)) == "OK"
    r = fastbox.run(probe.image, ["sh", "-c", "mkdir -p /mnt && mount -t tmpfs none /mnt && echo mounted"],
                    capture_output=True, **opts)
    assert r.stdout == b"mounted\n", r.stderr
    # still refused: what no capability of SYS_ADMIN's brings
    assert syscall(probe, "io_uring_setup", 1, 0, **opts) == "EPERM"
    assert syscall(probe, "init_module", 0, 0, 0, **opts) == "EPERM"


def test_cap_sys_ptrace_brings_kcmp(probe):
    assert syscall(probe, "kcmp", 1, 1, 0, 0, 0, cap_add=["cap_sys_ptrace"]) == "OK"


def test_cap_add_and_drop_set_the_capabilities(probe):
    caps = parse_status(probe.run("caps", cap_drop=["ALL"], cap_add=["NET_RAW"]).stdout.decode())
    assert caps["CapBnd"] == 1 << 13 and caps["CapEff"] == 1 << 13
    caps = parse_status(probe.run("caps", cap_add=["ALL"], cap_drop=["CAP_SYS_ADMIN"]).stdout.decode())
    assert caps["CapBnd"] == host_capbnd() & ~(1 << 21)
    caps = parse_status(probe.run("caps", cap_drop=["chown", "MKNOD"]).stdout.decode())
    assert not caps["CapBnd"] & (1 | 1 << 27) and caps["CapBnd"] & (1 << 5)  # KILL kept


# ------------------------------------------------------------------ unconfined, privileged

def test_unconfined_has_no_filter(probe):
    opts = {"security_opt": ["seccomp=unconfined"]}
    assert syscall(probe, "io_uring_setup", 1, 0, **opts) == "EFAULT"  # reached the kernel
    status = parse_status(probe.run("caps", **opts).stdout.decode())
    assert status["CapBnd"] & (1 << 21) == 0  # capabilities stay the defaults
    r = fastbox.run(probe.image, ["grep", "^Seccomp:", "/proc/self/status"], capture_output=True, **opts)
    assert r.stdout.split() == [b"Seccomp:", b"0"]


def test_privileged(probe):
    """--privileged: every capability, no filter, nothing of /proc masked or read-only."""
    assert syscall(probe, "io_uring_setup", 1, 0, privileged=True) == "EFAULT"
    caps = parse_status(probe.run("caps", privileged=True).stdout.decode())
    assert caps["CapBnd"] == host_capbnd() and caps["CapEff"] == host_capbnd()
    r = fastbox.run(probe.image, ["sh", "-c", "grep -c -E ' /proc/(keys|sys) ' /proc/self/mountinfo"],
                    capture_output=True, privileged=True)
    assert r.stdout == b"0\n"  # neither masked (/dev/null over it) nor a read-only bind
    r = fastbox.run(probe.image, ["sh", "-c", "grep -c -E ' /proc/(keys|sys) ' /proc/self/mountinfo"],
                    capture_output=True)
    assert r.stdout == b"2\n"


@needs_device_control()
def test_privileged_reaches_devices_the_default_does_not(probe):
    """Docker's privileged allows every device in the device controller (the v1 cgroup or
    the v2 program): opening the loop control (10:237, not in the default list, and
    guarded by no capability, unlike kmsg) is refused, then allowed. The node is made in
    /dev: the rootfs's scratch tmpfs is nodev."""
    script = "mknod /dev/xloop c 10 237 && dd if=/dev/xloop of=/dev/null count=0 2>/dev/null; echo rc=$?"
    denied = fastbox.run(probe.image, ["sh", "-c", script], capture_output=True)
    assert denied.stdout == b"rc=1\n", denied.stdout
    allowed = fastbox.run(probe.image, ["sh", "-c", script], capture_output=True, privileged=True)
    assert allowed.stdout == b"rc=0\n", allowed.stderr


# ------------------------------------------------------------------ no-new-privileges

def test_no_new_privileges_false_still_filters_a_non_root_user(probe):
    """Without no_new_privs the filter needs CAP_SYS_ADMIN to install: it goes in before
    the uid changes."""
    opts = {"security_opt": ["no-new-privileges=false"], "user": "nobody"}
    assert probe.run("nnp", **opts).stdout == b"0\n"
    assert syscall(probe, "io_uring_setup", 1, 0, **opts) == "EPERM"
    assert probe.run("nnp").stdout == b"1\n"  # the default
    assert probe.run("nnp", security_opt=["no-new-privileges"]).stdout == b"1\n"


# ------------------------------------------------------------------ custom profiles

PROFILE = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}


def test_custom_profile_file(probe, tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(PROFILE))
    opts = {"security_opt": [f"seccomp={path}"]}
    assert syscall(probe, "uname", 0, **opts) == "ENOMSG"  # 42
    assert syscall(probe, "io_uring_setup", 1, 0, **opts) == "EFAULT"  # allowed by default there
    assert syscall(probe, "uname", 0) == "EFAULT"  # the default profile allows uname


# What the static probe itself needs to start and print: nothing of fastbox's.
PROBE_NEEDS = ["execve", "exit_group", "exit", "brk", "arch_prctl", "set_tid_address",
               "set_robust_list", "rseq", "prlimit64", "mprotect", "readlink", "getrandom",
               "write", "newfstatat", "fstat", "mmap", "munmap", "uname", "getpid"]


def test_a_tight_profile_needs_only_execve_of_fastbox(probe):
    """With no_new_privs the filter goes in right before execve: fastbox's own last steps
    (close_range, rt_sigaction, rt_sigprocmask, umask) need not be in a profile."""
    tight = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": PROBE_NEEDS, "action": "SCMP_ACT_ALLOW"}]}
    opts = {"security_opt": ["seccomp=" + json.dumps(tight)]}
    assert syscall(probe, "getpid", **opts) == "OK"
    assert syscall(probe, "socket", AF_INET, 2, 0, **opts) == "EPERM"  # not named: the default
    assert syscall(probe, "io_uring_setup", 1, 0, **opts) == "ENOSYS"  # above rseq (334)


def test_custom_profile_from_the_cli_relative_to_its_directory(probe, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(PROFILE))
    for extra in ({"FASTBOX_NO_ENGINE": "1"}, {}):
        r = subprocess.run([FASTBOX, "run", "--rm", "--security-opt", "seccomp=p.json", probe.image,
                            "/probe", "syscall", str(NR["uname"]), "0"], capture_output=True,
                           text=True, cwd=tmp_path, env={**os.environ, **extra},
                           stdin=subprocess.DEVNULL, timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (0, "ENOMSG\n", "")


FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")

BAD = [
    (["--security-opt", "seccomp=/nonexistent/profile.json"], "cannot read seccomp profile"),
    (["--security-opt", "seccomp={not json"], "invalid seccomp profile"),
    (["--security-opt", 'seccomp={"defaultAction": "SCMP_ACT_MAYBE"}'], "unknown action"),
    (["--security-opt", 'seccomp={"syscalls": []}'], "no defaultAction"),
    (["--security-opt", 'seccomp={"defaultAction": "SCMP_ACT_ERRNO", "syscalls": '
      '[{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "op": "SCMP_CMP_EQ"}]}]}'],
     "argument index"),
    (["--security-opt", "apparmor=unconfined"], "invalid --security-opt"),
    (["--security-opt", "no-new-privileges=maybe"], "invalid --security-opt"),
    (["--cap-add", "SYS_WIZARD"], "unknown capability"),
    (["--cap-drop", "CAP_NOPE"], "unknown capability"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[m for _, m in BAD])
def test_bad_values_are_a_one_line_error_and_125(busybox, args, message):
    for extra in ({"FASTBOX_NO_ENGINE": "1"}, {}):
        r = subprocess.run([FASTBOX, "run", "--rm", *args, "busybox", "true"], capture_output=True,
                           text=True, env={**os.environ, **extra}, stdin=subprocess.DEVNULL,
                           timeout=60)
        assert r.returncode == 125, r.stderr
        assert message in one_line_error(r)


def test_bad_values_raise_spec_errors_in_the_api(busybox):
    with pytest.raises(SpecError, match="unknown capability"):
        fastbox.run("busybox", ["true"], cap_add=["NOPE"])
    with pytest.raises(SpecError, match="invalid seccomp profile"):
        fastbox.run("busybox", ["true"], security_opt=["seccomp={"])


def test_a_profile_libseccomp_refuses_is_a_spec_error(busybox):
    """Checked before anything starts: no record, cgroup or mount is left (conftest)."""
    bad = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_NOSUCH"]}
    with pytest.raises(SpecError, match="architecture"):
        fastbox.run("busybox", ["true"], security_opt=["seccomp=" + json.dumps(bad)])


# ------------------------------------------------------------------ exec gets the container's

@pytest.fixture
def detached(probe):
    made = []

    def start(**options):
        c = containers.run(probe.image, ["sh", "-c", "echo ready; exec sleep 1000"], **options)
        made.append(c)
        wait_for_log(c, "ready")
        return c

    yield start
    for c in made:
        c.remove(force=True)


def _exec_errno(c, *args, **opts):
    r = c.exec_run(["/probe", *map(str, args)], **opts)
    assert r.exit_code == 0, r.output
    return r.stdout.decode().strip()


def test_exec_gets_the_containers_filter(detached):
    c = detached()
    assert _exec_errno(c, "syscall", NR["io_uring_setup"], 1, 0) == "EPERM"
    assert _exec_errno(c, "syscall", NR["personality"], READ_IMPLIES_EXEC) == "EPERM"
    assert _exec_errno(c, "syscall", NR["statmount"], 0, 0, 0, 0) == "ENOSYS"
    r = cli("exec", c.id, "/probe", "syscall", NR["io_uring_setup"], 1, 0)
    assert (r.returncode, r.stdout) == (0, "EPERM\n"), r.stderr


def test_exec_gets_the_containers_capabilities_and_profile(detached, tmp_path):
    admin = detached(cap_add=["SYS_ADMIN"])
    assert _exec_errno(admin, "syscall", NR["unshare"], CLONE_NEWUTS) == "OK"
    unconfined = detached(security_opt=["seccomp=unconfined"])
    assert _exec_errno(unconfined, "syscall", NR["io_uring_setup"], 1, 0) == "EFAULT"
    custom = detached(security_opt=["seccomp=" + json.dumps(PROFILE)])
    assert _exec_errno(custom, "syscall", NR["uname"], 0) == "ENOMSG"


def test_exec_privileged_gets_every_capability_under_the_containers_filter(detached):
    c = detached()
    caps = parse_status(c.exec_run(["/probe", "caps"], privileged=True).stdout.decode())
    assert caps["CapEff"] == host_capbnd()
    assert _exec_errno(c, "syscall", NR["io_uring_setup"], 1, 0, privileged=True) == "EPERM"
    r = cli("exec", "--privileged", c.id, "/probe", "caps")
    assert parse_status(r.stdout)["CapBnd"] == host_capbnd(), r.stderr


def test_inspect_shows_the_security_options(detached):
    c = detached(cap_add=["sys_admin"], cap_drop=["MKNOD"], security_opt=["no-new-privileges"])
    host = c.inspect()["HostConfig"]
    assert host["CapAdd"] == ["CAP_SYS_ADMIN"] and host["CapDrop"] == ["CAP_MKNOD"]
    assert host["SecurityOpt"] == ["no-new-privileges=true"] and host["Privileged"] is False


# ------------------------------------------------------------------ compiled once, cached

def fresh_cli_run(probe):
    """A fresh Python process compiles (or reads) the filter: this one has it in memory."""
    r = subprocess.run([FASTBOX, "run", "--rm", probe.image, "/probe", "pid"], capture_output=True,
                       text=True, env={**os.environ, "FASTBOX_NO_ENGINE": "1"},
                       stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr


def test_the_compiled_filter_is_cached_on_disk_for_root_alone(probe, fb_env):
    from fastbox.runtime import seccomp
    fresh_cli_run(probe)
    d = seccomp.cache_dir()
    files = os.listdir(d)
    assert len(files) == 1
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(d, files[0])).st_mode & 0o777 == 0o600
    # a fresh process (the CLI's case) reads it and compiles nothing
    script = ("from fastbox.runtime import seccomp\n"
              "from fastbox import capabilities\n"
              "def boom(*a): raise SystemExit('compiled')\n"
              "seccomp.compile_profile = boom\n"
              "assert seccomp.filter_for(None, capabilities.DEFAULT)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_an_untrusted_cache_is_not_used(probe, fb_env):
    """A cached program in a directory or file others could have written is ignored
    (and a planted allow-everything program never gets installed)."""
    from fastbox.runtime import seccomp
    fresh_cli_run(probe)
    d = seccomp.cache_dir()
    path = os.path.join(d, os.listdir(d)[0])
    allow_all = b"\x06\x00\x00\x00\x00\x00\xff\x7f"  # RET ALLOW
    with open(path, "wb") as f:
        f.write(allow_all)
    os.chmod(path, 0o644)  # not root's alone: ignored, compiled afresh
    script = ("from fastbox.runtime import seccomp\n"
              "from fastbox import capabilities\n"
              "import sys\n"
              "prog = seccomp.filter_for(None, capabilities.DEFAULT)\n"
              "sys.exit(prog == %r)\n" % allow_all)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    os.chmod(path, 0o600)
    os.chmod(d, 0o755)  # the directory is no longer ours alone
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
