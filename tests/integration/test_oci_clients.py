"""containerd, podman and dockerd driving fastbox-runtime unchanged, each daemon started
here with its root, state and sockets in a temp dir, in a private mount namespace whose
/run is a tmpfs (the shim's sockets in /run/containerd/s, podman's /run state), and
stopped by pid. Containers' cgroups go under the session's cgroup parent, which the
conftest checks after every test; no fifo or socket may appear in the host's
/run/containerd."""
import glob
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from fastbox.oci import runtime_binary
from oci_bundle import cgroup_parent, make_rootfs
from waiting import eventually

PRIVATE_RUN = "mount -t tmpfs -o mode=755 tmpfs /run && "


def private(script):
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", PRIVATE_RUN + script]


def stop_daemon(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def host_run_containerd():
    existed = os.path.exists("/run/containerd")
    yield
    if not existed:
        assert not os.path.exists("/run/containerd"), "a client left /run/containerd on the host"


# ---------------------------------------------------------------- containerd

@pytest.fixture(scope="module")
def containerd(tmp_path_factory, host_run_containerd):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.skip("containerd is not installed")
    d = tmp_path_factory.mktemp("containerd")
    with open(d / "config.toml", "w") as f:
        f.write(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{d}/ctd.sock"\n[ttrpc]\n  address = "{d}/ctd.sock.ttrpc"\n')
    log = open(d / "log", "w")
    proc = subprocess.Popen(private(f"exec containerd -c {d}/config.toml"), stdout=log, stderr=log)
    eventually(lambda: os.path.exists(d / "ctd.sock"), what="containerd's socket")
    rootfs = make_rootfs(str(d / "rootfs"))
    ctr = ["ctr", "-a", str(d / "ctd.sock"), "-n", cgroup_parent()]

    def run(*args, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(ctr + list(args), timeout=60, **kw)

    run.ctr, run.rootfs, run.fifo = ctr, rootfs, str(d / "fifo")
    run.common = ["--fifo-dir", run.fifo, "--rootfs", "--runc-binary", runtime_binary()]
    yield run
    stop_daemon(proc)
    log.close()


def test_ctr_run_rm_passes_exit_code_and_output(containerd):
    r = containerd("run", "--rm", *containerd.common, containerd.rootfs, "r1",
                   "/bin/sh", "-c", "echo hello from fastbox; echo oops >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "hello from fastbox\n" and "oops" in r.stderr
    r = containerd("run", "--rm", *containerd.common, containerd.rootfs, "r1", "/bin/true")
    assert r.returncode == 0, r.stderr


def test_ctr_task_exec_pause_resume_kill_delete(containerd):
    r = containerd("run", "-d", *containerd.common, containerd.rootfs, "r2", "/bin/sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        r = containerd("task", "exec", "--fifo-dir", containerd.fifo, "--exec-id", "e1", "r2",
                       "/bin/sh", "-c", "echo exec out; exit 5")
        assert (r.returncode, r.stdout) == (5, "exec out\n"), r.stderr
        assert containerd("task", "pause", "r2").returncode == 0
        assert "PAUSED" in containerd("task", "ls").stdout
        assert containerd("task", "resume", "r2").returncode == 0
        assert "RUNNING" in containerd("task", "ls").stdout
        assert containerd("task", "kill", "-s", "KILL", "r2").returncode == 0
        eventually(lambda: "STOPPED" in containerd("task", "ls").stdout, what="task stopped")
        r = containerd("task", "delete", "r2")
        assert r.returncode == 0, r.stderr
    finally:
        containerd("task", "delete", "-f", "r2")
        containerd("container", "delete", "r2")


def test_ctr_tty_run_through_the_console_socket(containerd):
    """The program's stdio is a terminal of the container's own devpts, whose master the
    shim got over the console socket. (The window size is ctr's resize after start, which
    ctr sends only from an interactive terminal, with runc alike; consoleSize itself is
    tested in test_oci_verbs.)"""
    cmd = " ".join(containerd.ctr + ["run", "-t", "--rm", *containerd.common, containerd.rootfs, "r3",
                                     "/bin/sh", "-c", "'tty; test -t 0 && echo stdin-is-a-tty; sleep 0.5; exit 4'"])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "/dev/pts/0" in r.stdout and "stdin-is-a-tty" in r.stdout, r.stdout


# ---------------------------------------------------------------- podman

@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    d = tmp_path_factory.mktemp("podman")
    with open(d / "containers.conf", "w") as f:
        f.write('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    rootfs = make_rootfs(str(d / "rootfs"))
    with tarfile.open(d / "rootfs.tar", "w") as t:
        t.add(rootfs, arcname=".")
    base = (f"CONTAINERS_CONF={d}/containers.conf podman --root {d}/root --runroot {d}/runroot "
            f"--tmpdir {d}/tmp --storage-driver vfs --cgroup-manager cgroupfs --events-backend file "
            f"--runtime {runtime_binary()}")
    # podman (cgroupfs) keeps conmon in <parent>/conmon and never removes it: its own
    # parent, checked after each scenario to hold nothing else, removed at the end
    parent = f"{cgroup_parent()}-podman"
    flags = (f"--network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 "
             f"--cgroup-parent=/{parent}")

    def run(script, tty=False):
        """One scenario in one private mount namespace (podman passes no --root: the
        runtime's state is /run/fastbox-runtime there)."""
        script = script.replace("PODMAN", base).replace("FLAGS", flags)
        argv = private(script)
        if tty:
            argv = ["script", "-qec", " ".join(f"'{a}'" if " " in a or "&" in a else a for a in argv), "/dev/null"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        left = [c for c in cgroups_under(parent) if os.path.basename(c) != "conmon"]
        assert not left, f"cgroups left under {parent}: {left}"
        return r

    r = run(f"PODMAN import {d}/rootfs.tar bb")
    assert r.returncode == 0, r.stderr
    yield run
    run("PODMAN rm -af; PODMAN rmi -af")
    for top in sorted(glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}")):
        for d in sorted(cgroups_under(parent), key=len, reverse=True) + [top]:
            try:
                os.rmdir(d)
            except OSError:
                pass


def cgroups_under(parent):
    found = []
    for top in glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}"):
        for dirpath, dirnames, _ in os.walk(top):
            found.extend(os.path.join(dirpath, n) for n in dirnames)
    return found


def test_podman_run_rm(podman):
    r = podman("PODMAN run --rm FLAGS bb /bin/sh -c 'echo from podman; exit 6'")
    assert r.returncode == 6, r.stderr
    assert r.stdout == "from podman\n"


def test_podman_detached_exec_stop_rm(podman):
    r = podman("set -e; PODMAN run -d --name p1 FLAGS bb /bin/sleep 300 >/dev/null; "
               "PODMAN exec p1 /bin/sh -c 'echo exec in $(hostname)'; "
               "PODMAN stop -t 1 p1 >/dev/null; PODMAN rm p1 >/dev/null; echo removed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("exec in ") and r.stdout.endswith("removed\n")


def test_podman_run_it(podman):
    # the sleeps: conmon, like the shim, may drop a tty's first output before podman has
    # attached (seen once), and its last when the process exits at once
    r = podman("PODMAN run -it --rm FLAGS bb /bin/sh -c 'sleep 0.5; tty; sleep 0.5; exit 3'", tty=True)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "/dev/pts/0" in r.stdout


# ---------------------------------------------------------------- dockerd

@pytest.fixture(scope="module")
def docker(tmp_path_factory, host_run_containerd):
    if not shutil.which("dockerd"):
        pytest.skip("docker.io is not installed")
    d = tmp_path_factory.mktemp("dockerd")
    sock = d / "docker.sock"
    log = open(d / "log", "w")
    proc = subprocess.Popen(private(
        f"exec dockerd --data-root {d}/data --exec-root {d}/exec -H unix://{sock} --pidfile {d}/pid "
        f"--bridge none --iptables=false --ip6tables=false --ip-masq=false --userland-proxy=false "
        f"--cgroup-parent /{cgroup_parent()} --exec-opt native.cgroupdriver=cgroupfs "
        f"--add-runtime fastbox={runtime_binary()}"), stdout=log, stderr=log)
    eventually(lambda: os.path.exists(sock), timeout=60, what="dockerd's socket")
    rootfs = make_rootfs(str(d / "rootfs"))
    with tarfile.open(d / "rootfs.tar", "w") as t:
        t.add(rootfs, arcname=".")

    def run(*args):
        return subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True, text=True,
                              timeout=120)

    eventually(lambda: run("info").returncode == 0, timeout=60, what="dockerd ready")
    assert run("import", str(d / "rootfs.tar"), "bb:latest").returncode == 0
    yield run
    run("rm", "-f", "k1")
    stop_daemon(proc)
    log.close()


def test_docker_run_exec_stop(docker):
    r = docker("run", "--rm", "--runtime", "fastbox", "--network", "none", "bb",
               "/bin/sh", "-c", "echo from docker; grep Seccomp: /proc/self/status; exit 9")
    assert r.returncode == 9, r.stderr
    assert r.stdout.startswith("from docker\nSeccomp:\t2")  # Docker's profile, compiled by us
    r = docker("run", "-d", "--name", "k1", "--runtime", "fastbox", "--network", "none", "bb", "/bin/sleep", "300")
    assert r.returncode == 0, r.stderr
    r = docker("exec", "k1", "/bin/sh", "-c", "echo dexec; exit 2")
    assert (r.returncode, r.stdout) == (2, "dexec\n"), r.stderr
    t0 = time.monotonic()
    assert docker("stop", "-t", "1", "k1").returncode == 0
    assert time.monotonic() - t0 < 20
    assert docker("rm", "k1").returncode == 0
