"""Peer credentials on both ends of the engine socket (SO_PEERCRED).

- The C client sends nothing (no argv, environment or fds) to a process listening at
  $FASTBOX_RUN/engine.sock unless it runs as root or as the client's own uid; it stops
  with one line and 125 instead.
- The engine answers "run it yourself" to a client whose uid or gid is not its own the
  moment it connects, before reading anything from it, and never runs its command.

`nobody` cannot reach the test's directories (their parents are 0700): it is handed an
O_PATH fd to the run directory or to the socket, and goes through /proc/self/fd/N, which
skips the parents' permission checks as a writable FASTBOX_RUN would.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from test_engine import FASTBOX, MISSING_PY, engine, engine_ctl, run_cli, served  # noqa: F401

pytestmark = pytest.mark.engine  # conftest: no FASTBOX_NO_ENGINE here

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # nobody cannot reach the venv's interpreter under /root

FAKE_ENGINE = textwrap.dedent("""
    import array, json, os, socket, sys
    run_fd = int(sys.argv[1])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(f"/proc/self/fd/{run_fd}/engine.sock")
    s.listen(1)
    print("listening", flush=True)
    s.settimeout(10)
    conn, _ = s.accept()
    conn.settimeout(3)
    got = {"bytes": 0, "fds": 0}
    try:
        data, anc, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(64))
        got["bytes"] = len(data)
        got["argv_seen"] = b"FBCLI1" in data
        for level, kind, payload in anc:
            fds = array.array("i")
            fds.frombytes(payload[:len(payload) - len(payload) % 4])
            got["fds"] += len(fds)
    except socket.timeout:
        got["timeout"] = True
    conn.close()
    print(json.dumps(got), flush=True)
""")


def as_nobody(script, *args, pass_fds=(), group=NOBODY):
    return subprocess.Popen([SYSTEM_PYTHON, "-c", script, *map(str, args)], user=NOBODY,
                            group=group, extra_groups=[], pass_fds=pass_fds,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_client_sends_nothing_to_a_listener_run_by_another_user(fb_env):
    os.makedirs(fb_env.run, exist_ok=True)
    os.chmod(fb_env.run, 0o777)  # as if FASTBOX_RUN were writable by others
    run_fd = os.open(fb_env.run, os.O_PATH | os.O_DIRECTORY)
    fake = as_nobody(FAKE_ENGINE, run_fd, pass_fds=(run_fd,))
    try:
        assert fake.stdout.readline() == "listening\n", fake.stderr.read()
        assert os.stat(os.path.join(fb_env.run, "engine.sock")).st_uid == NOBODY
        r = run_cli("run", "--rm", "-e", "SECRET=for-the-engine-only", "busybox", "true",
                    timeout=30)
        out, err = fake.communicate(timeout=30)
    finally:
        os.close(run_fd)
        if fake.poll() is None:
            fake.kill()
        fake.wait()
    got = json.loads(out.strip().splitlines()[-1])
    assert got["bytes"] == 0 and got["fds"] == 0, f"the fake engine got {got}"
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert "served by uid 65534" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


TRY_ENGINE = textwrap.dedent("""
    import array, json, os, socket, sys
    sock_fd = int(sys.argv[1])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(f"/proc/self/fd/{sock_fd}")
    s.settimeout(5)
    out = {}
    # 1. the engine must answer before we say anything
    try:
        out["unasked"] = s.recv(64).decode()
    except socket.timeout:
        out["unasked"] = None
    # 2. then a whole run request, with our fds 0-2: it must not run
    marker = sys.argv[2]
    argv = ["fastbox", "run", "--rm", "-v", marker + ":/m", "busybox", "touch", "/m/ran"]
    env = ["FASTBOX_ROOT=" + os.environ["FASTBOX_ROOT"],
           "FASTBOX_RUN=" + os.environ["FASTBOX_RUN"]]
    if "FASTBOX_CGROUP_PARENT" in os.environ:
        env.append("FASTBOX_CGROUP_PARENT=" + os.environ["FASTBOX_CGROUP_PARENT"])
    fields = [b"FBCLI1", b"/", str(len(argv)).encode(), *map(str.encode, argv),
              str(len(env)).encode(), *map(str.encode, env), b""]
    fds = array.array("i", [0, 1, 2])
    try:
        s.sendmsg([b"\\0".join(fields)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        out["reply"] = s.recv(64).decode()
    except OSError as e:
        out["reply"] = "error: " + str(e)
    except socket.timeout:
        out["reply"] = None
    print(json.dumps(out), flush=True)
""")


def test_engine_answers_a_foreign_uid_before_reading_it(engine, fb_env, tmp_path):
    os.chmod(engine.sock, 0o666)  # as if the socket were open to all
    marker = tmp_path / "marker"
    marker.mkdir()
    sock_fd = os.open(engine.sock, os.O_PATH)
    try:
        p = as_nobody(TRY_ENGINE, sock_fd, marker, pass_fds=(sock_fd,))
        out, err = p.communicate(timeout=60)
    finally:
        os.close(sock_fd)
    assert p.returncode == 0, err
    got = json.loads(out)
    assert got["unasked"] == "F", f"the engine waited to read a foreign client: {got}"
    assert not (marker / "ran").exists(), "the engine ran a command for nobody"


def test_engine_declines_root_with_another_gid(engine, served):
    """uid 0 but gid nobody is not the engine's caller: it must fall back (and the
    served-only client then fails to find fastbox-py)."""
    r = subprocess.run([served, "run", "--rm", "busybox", "true"], capture_output=True,
                       text=True, group=NOBODY, extra_groups=[], stdin=subprocess.DEVNULL,
                       timeout=60)
    assert r.returncode == 125 and MISSING_PY in r.stderr, (r.returncode, r.stderr)


def test_engine_still_serves_root(engine, served):
    r = subprocess.run([served, "run", "--rm", "busybox", "echo", "served"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert (r.returncode, r.stdout) == (0, "served\n"), r.stderr
