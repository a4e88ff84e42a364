"""fastbox-runtime's verbs, alone, as containerd's shim and conmon call them; the
lifecycle checks run against runc too (one test, two implementations), so the two
behave alike. Every container is real; the conftest checks that no cgroup, mount or
process is left."""
import array
import json
import os
import re
import socket
import subprocess
import time

import pytest

from fastbox.oci import runtime_binary
from oci_bundle import RUNC, Runtime, cgroup_parent, make_bundle
from waiting import eventually

RUNTIMES = ["fastbox"] + (["runc"] if RUNC else [])


@pytest.fixture
def rt(fb_env):
    return Runtime(runtime_binary(), os.path.join(fb_env.tmp, "state"), os.path.join(fb_env.tmp, "log.json"))


@pytest.fixture(params=RUNTIMES)
def any_rt(request, fb_env):
    binary = runtime_binary() if request.param == "fastbox" else RUNC
    return Runtime(binary, os.path.join(fb_env.tmp, "state-" + request.param))


def ppid_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def cgroup_of(pid, ctrl="memory"):
    """The process's cgroup in ctrl's v1 hierarchy, else (pure v2) its unified one."""
    unified = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrl in ctrls.split(","):
                return path
            if hid == "0":
                unified = path
    return unified


def have_cap(n):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << n))
    return False


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_version_in_runc_format_and_features(rt):
    out = rt.run("--version", check=True).stdout
    assert re.match(r"runc version \S+\ncommit: \S+\nspec: 1\.\d+\.\d+\n$", out), out
    feats = json.loads(rt.run("features", check=True).stdout)
    assert feats["ociVersionMin"].startswith("1.0") and feats["ociVersionMax"].startswith("1.")
    assert "rro" in feats["mountOptions"]
    assert "user" not in feats["linux"]["namespaces"]  # not declared: CRI must not ask for it
    assert feats["linux"]["seccomp"]["enabled"] is True
    assert "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]


def test_lifecycle_like_runc(any_rt, fb_env):
    """state before and after start, kill of a stopped container, delete, create without
    --pid-file: what runc does, fastbox does."""
    b = make_bundle(fb_env.tmp, f"life-{any_rt.name}", ["sleep", "60"])
    r = any_rt.run("create", "--bundle", b, "c1")
    assert r.returncode == 0, r.stderr
    st = any_rt.state("c1")
    assert st["status"] == "created" and st["pid"] > 0 and st["id"] == "c1"
    assert st["bundle"] == b and st["ociVersion"]
    assert set(st) >= {"ociVersion", "id", "status", "pid", "bundle"}
    pid = st["pid"]
    assert ppid_of(pid) == os.getpid()  # the caller (a subreaper) reaps it: no monitor between
    assert any_rt.run("start", "c1").returncode == 0
    assert any_rt.state("c1")["status"] == "running"
    assert os.readlink(f"/proc/{pid}/exe").endswith("busybox")
    assert any_rt.run("kill", "c1", "KILL").returncode == 0
    eventually(lambda: gone(pid), what="init killed")
    os.waitpid(pid, 0)
    st = any_rt.state("c1")
    assert st["status"] == "stopped" and st["pid"] == 0
    r = any_rt.run("kill", "c1", "TERM")
    assert r.returncode != 0 and "container not running" in r.stderr
    assert any_rt.run("delete", "c1").returncode == 0
    r = any_rt.run("state", "c1")
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_delete_of_a_created_container(any_rt, fb_env):
    b = make_bundle(fb_env.tmp, f"del-{any_rt.name}", ["sleep", "60"])
    assert any_rt.run("create", "--bundle", b, "c2").returncode == 0
    pid = any_rt.state("c2")["pid"]
    r = any_rt.run("delete", "c2")
    assert r.returncode == 0, r.stderr
    eventually(lambda: gone(pid), what="created init gone")
    os.waitpid(pid, 0)
    assert any_rt.state("c2") is None


def test_running_container_needs_force_to_delete(rt, fb_env):
    b = make_bundle(fb_env.tmp, "force", ["sleep", "60"])
    rt.run("create", "--bundle", b, "c3", check=True)
    pid = rt.state("c3")["pid"]
    rt.run("start", "c3", check=True)
    r = rt.run("delete", "c3")
    assert r.returncode == 1 and "not stopped" in r.stderr
    assert rt.state("c3")["status"] == "running"
    rt.run("delete", "--force", "c3", check=True)
    eventually(lambda: gone(pid), what="forced delete")
    os.waitpid(pid, 0)
    assert not os.path.exists(os.path.join(rt.root, "c3"))


def test_errors_go_to_the_json_log_as_the_shim_reads_them(rt, fb_env):
    r = rt.run("kill", "nosuch", "9")
    assert r.returncode == 1
    with open(rt.log) as f:
        lines = [json.loads(line) for line in f]
    assert lines[-1]["level"] == "error" and 'container "nosuch" does not exist' in lines[-1]["msg"]
    assert "time" in lines[-1]


def test_pid_file_and_run_exit_code(rt, fb_env):
    b = make_bundle(fb_env.tmp, "runexit", ["sh", "-c", "echo out; echo err >&2; exit 7"])
    r = rt.run("run", "--bundle", b, "c4")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert not os.path.exists(os.path.join(rt.root, "c4"))
    b = make_bundle(fb_env.tmp, "pidfile", ["sleep", "60"])
    pidfile = os.path.join(fb_env.tmp, "pid")
    rt.run("create", "--bundle", b, "--pid-file", pidfile, "c5", check=True)
    with open(pidfile) as f:
        assert int(f.read()) == rt.state("c5")["pid"]
    rt.run("delete", "c5", check=True)
    eventually(lambda: gone(int(open(pidfile).read())))
    os.waitpid(int(open(pidfile).read()), 0)


def test_exec_ps_pause_resume_update_events_list(rt, fb_env):
    b = make_bundle(fb_env.tmp, "verbs", ["sleep", "60"])
    rt.run("create", "--bundle", b, "c6", check=True)
    rt.run("start", "c6", check=True)
    init = rt.state("c6")["pid"]
    # exec in the foreground: output and exit code through
    r = rt.run("exec", "c6", "sh", "-c", "echo $$ in; hostname; exit 3")
    assert r.returncode == 3 and r.stdout.split()[1:] == ["in", "fastbox"]
    # exec --process --detach --pid-file
    proc = os.path.join(fb_env.tmp, "process.json")
    with open(proc, "w") as f:
        json.dump({"args": ["sleep", "50"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}, f)
    pidfile = os.path.join(fb_env.tmp, "exec.pid")
    rt.run("exec", "--process", proc, "--detach", "--pid-file", pidfile, "c6", check=True)
    epid = int(open(pidfile).read())
    assert ppid_of(epid) == os.getpid()
    assert cgroup_of(epid) == cgroup_of(init)
    assert os.readlink(f"/proc/{epid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    assert sorted(json.loads(rt.run("ps", "--format", "json", "c6", check=True).stdout)) == sorted([init, epid])
    # pause / resume through the freezer
    rt.run("pause", "c6", check=True)
    assert rt.state("c6")["status"] == "paused"
    with open(f"/proc/{init}/stat") as f:
        assert f.read().rpartition(")")[2].split()[0] in ("S", "D")
    rt.run("resume", "c6", check=True)
    assert rt.state("c6")["status"] == "running"
    # update --resources=- (JSON on stdin)
    rt.run("update", "--resources=-", "c6", input=json.dumps({"memory": {"limit": 64 << 20}}), check=True)
    v1 = f"/sys/fs/cgroup/memory{cgroup_of(init)}/memory.limit_in_bytes"
    v2 = f"/sys/fs/cgroup{cgroup_of(init)}/memory.max"
    mem = v1 if os.path.exists(v1) else v2
    assert int(open(mem).read()) == 64 << 20
    ev = json.loads(rt.run("events", "--stats", "c6", check=True).stdout)
    assert ev["type"] == "stats" and ev["data"]["pids"]["current"] == 2
    listed = json.loads(rt.run("list", "--format", "json", check=True).stdout)
    assert [(c["id"], c["status"], c["pid"]) for c in listed] == [("c6", "running", init)]
    # Reaped while delete runs, as a shim reaps its children: a pid namespace's init does
    # not finish exiting until the other processes in it are reaped, and we (a subreaper)
    # reap the exec'd one; delete waits for the init (up to 10 s, the whole test's time
    # when the reaping came after it).
    deleting = subprocess.Popen(rt.argv("delete", "--force", "c6"), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for pid in (epid, init):
        eventually(lambda: gone(pid))
        os.waitpid(pid, 0)
    _, err = deleting.communicate(timeout=30)
    assert deleting.returncode == 0, err


def test_cgroups_path_resolves_under_the_hierarchy_roots(rt, fb_env):
    """Relative or missing cgroupsPath: never below the caller's own cgroup."""
    parent = cgroup_parent()
    b = make_bundle(fb_env.tmp, "relcg", ["sleep", "60"], **{"linux.cgroupsPath": f"{parent}/rel"})
    rt.run("create", "--bundle", b, "c7", check=True)
    pid = rt.state("c7")["pid"]
    assert cgroup_of(pid) == f"/{parent}/rel"
    rt.run("delete", "c7", check=True)
    os.waitpid(pid, 0)
    cid = f"{parent}-noid"
    b = make_bundle(fb_env.tmp, "nocg", ["sleep", "60"], **{"linux.cgroupsPath": ""})
    rt.run("create", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    assert cgroup_of(pid) == f"/{cid}"
    rt.run("delete", cid, check=True)
    os.waitpid(pid, 0)
    assert not os.path.exists(f"/sys/fs/cgroup/memory/{cid}") and not os.path.exists(f"/sys/fs/cgroup/{cid}")


def test_systemd_cgroups_path_gets_a_clear_error(rt, fb_env):
    b = make_bundle(fb_env.tmp, "sysd", ["true"], **{"linux.cgroupsPath": "system.slice:fb:x"})
    r = rt.run("create", "--bundle", b, "c8")
    assert r.returncode == 1 and "systemd" in r.stderr
    assert not os.path.exists(os.path.join(rt.root, "c8"))


def _recv_fd(conn):
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(16, socket.CMSG_LEN(4 * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def test_console_socket_sends_exactly_one_pty_master(rt, fb_env):
    b = make_bundle(fb_env.tmp, "tty", ["sh", "-c", "tty; stty size"],
                    **{"process.terminal": True, "process.consoleSize": {"height": 21, "width": 77}})
    path = os.path.join(fb_env.tmp, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    r = rt.run("create", "--bundle", b, "--console-socket", path, "c9")
    assert r.returncode == 0, r.stderr
    conn, _ = srv.accept()
    msg, fds = _recv_fd(conn)
    assert len(msg) >= 1 and len(fds) == 1
    master = fds[0]
    pid = rt.state("c9")["pid"]
    rt.run("start", "c9", check=True)
    out = b""
    while b"21 77" not in out:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert b"/dev/pts/0" in out and b"21 77" in out, out
    os.waitpid(pid, 0)
    os.close(master)
    conn.close()
    srv.close()
    rt.run("delete", "c9", check=True)
    # a terminal without a console socket is refused, as runc does
    r = rt.run("create", "--bundle", b, "c10")
    assert r.returncode == 1 and "console socket" in r.stderr


def test_hooks_get_the_state_on_stdin(rt, fb_env):
    out = os.path.join(fb_env.tmp, "hook-out")
    os.mkdir(out)
    hooks = {w: [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{w}"]}]
             for w in ("prestart", "createRuntime", "poststart", "poststop")}
    b = make_bundle(fb_env.tmp, "hooks", ["sleep", "60"], hooks=hooks,
                    annotations={"org.example.k": "v"})
    rt.run("create", "--bundle", b, "c11", check=True)
    pid = rt.state("c11")["pid"]
    for w in ("prestart", "createRuntime"):
        st = json.load(open(f"{out}/{w}"))
        assert st["id"] == "c11" and st["pid"] == pid and st["bundle"] == b
        assert st["annotations"] == {"org.example.k": "v"}
    assert rt.state("c11")["annotations"] == {"org.example.k": "v"}
    assert not os.path.exists(f"{out}/poststart")
    rt.run("start", "c11", check=True)
    assert json.load(open(f"{out}/poststart"))["status"] == "running"
    rt.run("delete", "--force", "c11", check=True)
    assert json.load(open(f"{out}/poststop"))["status"] == "stopped"
    os.waitpid(pid, 0)


def test_sysctls_only_in_the_containers_namespaces(rt, fb_env):
    knob = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    with open(knob) as f:
        host = f.read().strip()
    value = "77" if host != "77" else "78"
    b = make_bundle(fb_env.tmp, "sysctl", ["cat", knob],
                    **{"linux.sysctl": {"net.ipv4.ip_unprivileged_port_start": value}})
    r = rt.run("run", "--bundle", b, "c12")
    assert (r.returncode, r.stdout.strip()) == (0, value), r.stderr
    with open(knob) as f:
        assert f.read().strip() == host  # written in the container's network namespace only
    b = make_bundle(fb_env.tmp, "sysctl2", ["true"], **{"linux.sysctl": {"kernel.core_pattern": "|/evil"}})
    with open("/proc/sys/kernel/core_pattern") as f:
        before = f.read()
    r = rt.run("run", "--bundle", b, "c13")
    assert r.returncode == 1 and "not allowed" in r.stderr
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == before
    assert not os.path.exists(os.path.join(rt.root, "c13"))


def test_rlimit_above_the_hard_limit_is_refused(rt, fb_env):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    b = make_bundle(fb_env.tmp, "rlim", ["sh", "-c", "ulimit -n"],
                    **{"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 99}]})
    r = rt.run("run", "--bundle", b, "c14")
    assert (r.returncode, r.stdout.strip()) == (0, "99"), r.stderr
    if hard != resource.RLIM_INFINITY and not have_cap(24):  # CAP_SYS_RESOURCE may raise it
        b = make_bundle(fb_env.tmp, "rlim2", ["true"],
                        **{"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]})
        r = rt.run("run", "--bundle", b, "c15")
        assert r.returncode == 1 and "RLIMIT_NOFILE" in r.stderr


MKNOD_CAPS = ["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN"]


@pytest.mark.parametrize("allowed", [False, True])
def test_device_controller_denies_a_node_made_inside(rt, fb_env, allowed):
    """The attack: MKNOD a host device (loop-control, c 10:237) and open it. The deny-all
    device rule refuses it; the control run allows exactly that device."""
    rules = [{"allow": False, "access": "rwm"}]
    if allowed:
        rules.append({"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rwm"})
    caps = {k: MKNOD_CAPS for k in ("bounding", "effective", "permitted")}
    b = make_bundle(fb_env.tmp, f"dev{allowed}", ["sh", "-c", "mknod /tmp/lc c 10 237 && cat /tmp/lc; echo rc=$?"],
                    **{"process.capabilities": caps, "linux.resources": {"devices": rules}})
    r = rt.run("run", "--bundle", b, f"c16{allowed}")
    assert r.returncode == 0, r.stderr
    denied = "Operation not permitted" in r.stderr
    assert denied != allowed, (r.stdout, r.stderr)


def test_seccomp_masks_capabilities_nnp(rt, fb_env):
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    script = ("grep -E '^(Seccomp|NoNewPrivs|CapBnd):' /proc/self/status; mkdir /tmp/x && echo made; "
              "echo kcore $(head -c 16 /proc/kcore 2>/dev/null | wc -c); ls /proc/acpi | wc -l; "
              "echo 1 > /proc/sys/kernel/shmmax && echo sys-written; "
              "mount -t tmpfs t /mnt 2>/dev/null && echo mounted; echo done")
    b = make_bundle(fb_env.tmp, "sec", ["sh", "-c", script], **{"linux.seccomp": seccomp})
    r = rt.run("run", "--bundle", b, "c17")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Seccomp:\t2" in out and "NoNewPrivs:\t1" in out
    # runc spec's three capabilities: AUDIT_WRITE(29), KILL(5), NET_BIND_SERVICE(10)
    assert f"CapBnd:\t{(1 << 29) | (1 << 5) | (1 << 10):016x}" in out
    assert "kcore 0" in out  # masked: /dev/null over it (or absent on this kernel)
    for bad in ("made", "sys-written", "mounted"):
        assert bad not in out.split("\n"), out
    assert "done" in out


def test_joins_a_namespace_by_path(rt, fb_env):
    a = make_bundle(fb_env.tmp, "nsa", ["sleep", "60"])
    rt.run("create", "--bundle", a, "c18", check=True)
    apid = rt.state("c18")["pid"]
    nss = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
           {"type": "network", "path": f"/proc/{apid}/ns/net"}]
    b = make_bundle(fb_env.tmp, "nsb", ["sleep", "60"], **{"linux.namespaces": nss})
    rt.run("create", "--bundle", b, "c19", check=True)
    bpid = rt.state("c19")["pid"]
    assert os.readlink(f"/proc/{bpid}/ns/net") == os.readlink(f"/proc/{apid}/ns/net")
    assert os.readlink(f"/proc/{bpid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{bpid}/ns/uts") != os.readlink(f"/proc/{apid}/ns/uts")
    for cid, pid in (("c19", bpid), ("c18", apid)):
        rt.run("delete", cid, check=True)
        os.waitpid(pid, 0)


def test_spec_writes_a_default_config(rt, fb_env):
    d = os.path.join(fb_env.tmp, "specdir")
    os.mkdir(d)
    rt.run("spec", "--bundle", d, check=True)
    cfg = json.load(open(f"{d}/config.json"))
    assert cfg["root"]["path"] == "rootfs" and cfg["process"]["args"] == ["sh"]
    r = rt.run("spec", "--bundle", d)
    assert r.returncode == 1 and "exists" in r.stderr


def test_created_init_is_not_reachable_from_a_shared_pid_namespace(rt, fb_env):
    """The attack (CVE-2019-5736's first step): a container that shares the pid namespace
    of a created, not yet started container opens its init's /proc/1/exe, which is still
    the host's runtime binary. The init is non-dumpable until its exec, so even root in
    the other container (without CAP_SYS_PTRACE) cannot."""
    a = make_bundle(fb_env.tmp, "pida", ["sleep", "60"])
    rt.run("create", "--bundle", a, "c20", check=True)
    apid = rt.state("c20")["pid"]
    nss = [{"type": "pid", "path": f"/proc/{apid}/ns/pid"}, {"type": "ipc"}, {"type": "uts"},
           {"type": "mount"}, {"type": "network"}]
    b = make_bundle(fb_env.tmp, "pidb", ["sh", "-c", "readlink /proc/1/exe; cat /proc/1/cmdline | wc -c; echo end"],
                    **{"linux.namespaces": nss})
    r = rt.run("run", "--bundle", b, "c21")
    assert r.returncode == 0, r.stderr
    assert "fastbox-runtime" not in r.stdout and "end" in r.stdout, r.stdout
    rt.run("start", "c20", check=True)  # and after exec the init is the program, reachable
    r = rt.run("run", "--bundle", b, "c22")
    assert "/bin/busybox" in r.stdout, (r.stdout, r.stderr)
    rt.run("delete", "--force", "c20", check=True)
    os.waitpid(apid, 0)


def test_a_create_killed_midway_is_cleaned_by_delete_force(rt, fb_env):
    """State stays consistent after SIGKILL: a create stopped (SIGSTOP, then SIGKILL) once
    its cgroups exist leaves a state that `delete --force` clears, cgroups included."""
    hook = os.path.join(fb_env.tmp, "hang.sh")
    with open(hook, "w") as f:
        f.write(f"#!/bin/sh\necho $$ > {hook}.pid\nexec sleep 60\n")
    os.chmod(hook, 0o755)
    b = make_bundle(fb_env.tmp, "killed", ["sleep", "60"], hooks={"createRuntime": [{"path": hook}]})
    p = subprocess.Popen(rt.argv("create", "--bundle", b, "c23"), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    st = eventually(lambda: rt.state("c23") if rt.state("c23") and rt.state("c23")["pid"] else None,
                    what="the init is made")
    pid = st["pid"]
    eventually(lambda: os.path.exists(hook + ".pid"), what="the hook runs")
    p.kill()  # the runtime, while its hook runs: no undo runs
    p.wait()
    assert rt.state("c23")["status"] == "created"
    rt.run("delete", "--force", "c23", check=True)
    eventually(lambda: gone(pid))
    os.waitpid(pid, 0)
    assert not os.path.exists(os.path.join(rt.root, "c23"))
    hook_pid = int(open(hook + ".pid").read())  # the hook, orphaned by the killed runtime
    os.kill(hook_pid, 9)
    os.waitpid(hook_pid, 0)


def test_identity_hostname_domainname_oom_score_env_cwd(rt, fb_env):
    b = make_bundle(fb_env.tmp, "ident", ["sh", "-c", "id; hostname; cat /proc/sys/kernel/domainname; "
                                                      "cat /proc/self/oom_score_adj; pwd; echo $FOO"],
                    hostname="box1", domainname="example.test",
                    **{"process.oomScoreAdj": 123, "process.user": {"uid": 1000, "gid": 1000, "additionalGids": [44]},
                       "process.env": ["PATH=/bin", "FOO=bar"], "process.cwd": "/tmp"})
    r = rt.run("run", "--bundle", b, "c24")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uid=1000 gid=1000 groups=44")
    assert lines[1:] == ["box1", "example.test", "123", "/tmp", "bar"]


def test_unsupported_hooks_are_refused_not_ignored(rt, fb_env):
    b = make_bundle(fb_env.tmp, "cchook", ["true"], hooks={"createContainer": [{"path": "/bin/true"}]})
    r = rt.run("run", "--bundle", b, "c28")
    assert r.returncode == 1 and "createContainer" in r.stderr
    assert not os.path.exists(os.path.join(rt.root, "c28"))


def test_bad_device_path_is_refused(rt, fb_env):
    b = make_bundle(fb_env.tmp, "baddev", ["true"], **{"linux.devices": [
        {"path": "/dev/a/../../etc/x", "type": "c", "major": 1, "minor": 3}]})
    r = rt.run("run", "--bundle", b, "c25")
    assert r.returncode == 1 and "linux.devices" in r.stderr


def test_bind_mount_options(rt, fb_env):
    """ro, nosuid, nodev, noexec on a bind (set on the whole bound tree); tmpfs with
    its size."""
    src = os.path.join(fb_env.tmp, "share")
    os.makedirs(src)
    with open(f"{src}/run.sh", "w") as f:
        f.write("#!/bin/sh\necho ran\n")
    os.chmod(f"{src}/run.sh", 0o755)
    mounts = [{"destination": "/ro", "type": "bind", "source": src, "options": ["rbind", "ro"]},
              {"destination": "/nx", "type": "bind", "source": src, "options": ["rbind", "nosuid", "nodev", "noexec"]},
              {"destination": "/rw", "type": "bind", "source": src, "options": ["rbind"]},
              {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=750"]}]
    b = make_bundle(fb_env.tmp, "binds", ["sh", "-c",
                                          "touch /ro/x 2>/dev/null && echo ro-written; /nx/run.sh 2>/dev/null || echo nx-refused; "
                                          "/rw/run.sh; grep -E ' /(nx|scratch) ' /proc/self/mountinfo"])
    with open(f"{b}/config.json") as f:
        cfg = json.load(f)
    cfg["mounts"] += mounts
    with open(f"{b}/config.json", "w") as f:
        json.dump(cfg, f)
    r = rt.run("run", "--bundle", b, "c26")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "ro-written" not in lines and "nx-refused" in lines and "ran" in lines
    nx = next(line for line in lines if " /nx " in line)
    assert all(flag in nx.split()[5].split(",") for flag in ("nosuid", "nodev", "noexec")), nx
    scratch = next(line for line in lines if " /scratch " in line)
    assert "size=1024k" in scratch and "mode=750" in scratch, scratch


def test_kill_all_reaches_what_outlives_the_init(rt, fb_env):
    """Without a pid namespace of its own, a container's processes outlive its init;
    `kill --all` signals every process left in its cgroup, as containerd's delete uses it."""
    nss = [{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]
    b = make_bundle(fb_env.tmp, "killall", ["sh", "-c", "sleep 60 & exec sleep 61"], **{"linux.namespaces": nss})
    rt.run("create", "--bundle", b, "c27", check=True)
    rt.run("start", "c27", check=True)
    init = rt.state("c27")["pid"]
    pids = eventually(lambda: (lambda p: p if len(p) == 2 else None)(
        json.loads(rt.run("ps", "--format", "json", "c27").stdout)), what="two processes")
    rt.run("kill", "c27", "KILL", check=True)
    eventually(lambda: gone(init))
    os.waitpid(init, 0)
    assert rt.state("c27")["status"] == "stopped"
    assert "container not running" in rt.run("kill", "c27", "KILL").stderr
    (orphan,) = [p for p in pids if p != init]
    assert not gone(orphan)
    rt.run("kill", "--all", "c27", "KILL", check=True)
    eventually(lambda: gone(orphan))
    os.waitpid(orphan, 0)
    rt.run("delete", "c27", check=True)
