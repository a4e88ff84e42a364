"""No host fd reaches a container even where close_range cannot mark fds close-on-exec
(a kernel before 5.11, or a caller's seccomp filter refusing it): the core falls back to
walking /proc/self/fd, and never ignores the failure (issue 10, point 8).

The caller here is fastbox-py itself, started under a seccomp filter that makes
close_range fail with ENOSYS, holding an inheritable fd on a host directory."""
import os
import subprocess
import sys
import textwrap

import pytest

WRAPPER = textwrap.dedent(r"""
    /* no_close_range PROGRAM ARGS...: runs PROGRAM with close_range refused (ENOSYS) */
    #include <errno.h>
    #include <linux/filter.h>
    #include <linux/seccomp.h>
    #include <stddef.h>
    #include <sys/prctl.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    int main(int argc, char **argv)
    {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
            return 99;
        execv(argv[1], argv + 1);
        return 98;
    }
""")


@pytest.fixture(scope="module")
def no_close_range(tmp_path_factory):
    work = tmp_path_factory.mktemp("nocr")
    src = work / "no_close_range.c"
    src.write_text(WRAPPER)
    out = work / "no_close_range"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True, capture_output=True)
    return str(out)


def _fastbox_py():
    return os.path.join(os.path.dirname(sys.executable), "fastbox-py")


def _run_holding_fd(wrapper, host_dir, *args):
    """fastbox-py ARGS under the wrapper, holding an inheritable fd on host_dir; the
    container lists its fds and tries that one. Returns (result, the fd's number)."""
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        cmd = f"for f in /proc/self/fd/*; do echo $f $(readlink $f); done; ls /proc/self/fd/{fd}/ 2>&1"
        env = dict(os.environ, FASTBOX_NO_ENGINE="1")
        return subprocess.run([wrapper, _fastbox_py(), *args, "busybox", "sh", "-c", cmd],
                              pass_fds=(fd,), capture_output=True, text=True, env=env,
                              timeout=60), fd
    finally:
        os.close(fd)


def test_the_wrapper_really_refuses_close_range(no_close_range):
    probe = subprocess.run([no_close_range, sys.executable, "-c",
                            "import ctypes, os; l = ctypes.CDLL(None, use_errno=True);"
                            "print(l.syscall(436, 3, 3, 0), ctypes.get_errno())"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["-1", str(38)]  # ENOSYS


def test_no_host_fd_reaches_a_run_without_close_range(no_close_range, fb_env, tmp_path):
    secret = tmp_path / "host-only"
    secret.mkdir()
    (secret / "marker-7f3a").write_text("host")
    r, fd = _run_holding_fd(no_close_range, str(secret), "run", "--rm")
    assert r.returncode in (0, 1), r.stderr
    assert "marker-7f3a" not in r.stdout
    assert f"/proc/self/fd/{fd} " not in r.stdout, r.stdout


def test_no_host_fd_reaches_an_exec_without_close_range(no_close_range, fb_env, tmp_path):
    import fastbox
    secret = tmp_path / "host-only"
    secret.mkdir()
    (secret / "marker-7f3a").write_text("host")
    c = fastbox.containers.run("busybox", ["sleep", "60"])
    try:
        r, fd = _run_holding_fd(no_close_range, str(secret), "exec", c.id)
    finally:
        c.remove(force=True)
    assert r.returncode in (0, 1), r.stderr
    assert "marker-7f3a" not in r.stdout
    assert f"/proc/self/fd/{fd} " not in r.stdout, r.stdout
