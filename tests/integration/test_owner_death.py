"""Nothing runs unowned (issue 10, 6): SIGKILL the owner of a start at random points of
`run`, `run -d` and `exec`, 50 times per owner, then run one fastbox command.

Owners: the Python CLI (fastbox-py), an API process (fastbox.run, containers.run,
exec_run), the engine serving the C client (the engine is killed, five clients at a
time), and the monitor of a detached container. Afterwards:
  - no process of those containers is left unless it is a detached container whose
    monitor is alive (what `run -d` is for), and no exec'd process at all;
  - no cgroup is left but those of such containers, no record says "created" (a run
    that never ran leaves none) or "running" without its monitor, no owner entry of a
    dead owner is left;
  - the detached container started before all this (and exec'd into) is untouched.
"""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fastbox import containers
from fastbox.state import process

from cgroup_pids import container_cgroups, pids_in
from waiting import eventually

BIN = os.path.dirname(sys.executable)
FASTBOX_C, FASTBOX_PY = os.path.join(BIN, "fastbox"), os.path.join(BIN, "fastbox-py")
ROUNDS = 50
ENGINE_CLIENTS = 5  # per engine killed: ROUNDS // ENGINE_CLIENTS engines per test
OPS = ("run", "run -d", "exec")


def sleepers(token):
    """Processes that are `sleep TOKEN` (a container's program), wherever they are."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", token.encode()] and process.start_time(int(name)):
                out.append(int(name))
    return out


def monitors_under(root):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read()
            except OSError:
                continue
            if b"fastbox-monitor" in argv and root.encode() in argv \
                    and process.start_time(int(name)):
                out.append(int(name))
    return out


def owner_alive(key):
    pid, _, started = key.partition("-")
    return started.isdigit() and process.start_time(int(pid)) == int(started)


def describe(d, name):
    """An entry left, and who holds it open."""
    path = os.path.join(d, name)
    with open(path) as f:
        head = f.read().split("\n")[0]
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        holders.append((pid, f.read()[:80]))
        except OSError:
            continue
    return name[:30], head, holders


def reap_children():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_at_random(argv, latest, env=None):
    """Start argv, SIGKILL it at a random point in [0, latest) seconds, reap it."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    time.sleep(random.uniform(0, latest))
    p.kill()
    p.wait()


def api_script(op, token, target):
    """A Python program using the API: it says "ready" once imported (the kill comes
    after that, within the start), then starts."""
    what = {"run": f"fastbox.run('busybox', ['sleep', '{token}'])",
            "run -d": f"fastbox.containers.run('busybox', ['sleep', '{token}'])",
            "exec": f"fastbox.containers.get('{target}').exec_run(['sleep', '{token}'])"}[op]
    return [sys.executable, "-c", "import fastbox, fastbox.api, fastbox.containers, os, time\n"
            "fastbox.api.resolve_image('busybox')\nos.write(1, b'ready\\n')\n"
            f"{what}\ntime.sleep(60)"]


def kill_api_at_random(argv, latest):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd="/")  # the installed fastbox
    assert p.stdout.readline() == b"ready\n"
    time.sleep(random.uniform(0, latest))
    p.kill()
    p.wait()
    p.stdout.close()


def cli_args(op, token, target):
    return {"run": ["run", "--rm", "busybox", "sleep", token],
            "run -d": ["run", "-d", "busybox", "sleep", token],
            "exec": ["exec", target, "sleep", token]}[op]


@pytest.fixture
def bystander(fb_env, busybox):
    """A detached container started before the kills; exec's target. Must stay as it is."""
    c = containers.run("busybox", ["sleep", "3600"])
    ident = (c.pid, process.start_time(c.pid))
    yield c
    try:
        assert c.reload().status == "running" and process.alive(*ident), \
            "the detached container started before was touched"
    finally:
        for other in containers.list_containers(all=True):
            other.remove(force=True)
        reap_children()


def settle(fb_env, token, bystander, op="run"):
    """The next fastbox command, then the checks of the module docstring."""
    r = subprocess.run([FASTBOX_PY, "ps", "-a"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    reap_children()

    def owned_only():
        live = {c.id: c for c in containers.list_containers(all=True)}
        running = {cid for cid, c in live.items() if c.status == "running"}
        for cid in running:  # running means its monitor lives
            rec = live[cid].attrs
            assert process.alive(rec["monitor_pid"], rec["monitor_start"]), cid
        cgroups = container_cgroups()
        allowed = [d for d in cgroups if any(cid in d for cid in running)]
        left = [d for d in cgroups if d not in allowed]
        # An exec'd process dies with its owner, even inside a running container.
        orphans = [p for p in sleepers(token) if op == "exec" or p not in pids_in(allowed)]
        created = [cid for cid, c in live.items() if c.status == "created"]
        return (not left and not orphans and not created) or (left, orphans, created)

    deadline = time.monotonic() + 10  # a parent-death signal is delivered asynchronously
    while (found := owned_only()) is not True and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found is True, f"left (cgroups, processes, created records): {found}"
    # An entry still held by a monitor that had not yet said it runs goes to that
    # monitor at the next command.
    subprocess.run([FASTBOX_PY, "ps", "-a"], capture_output=True, timeout=60)
    d = os.path.join(fb_env.run, "owners")  # owners/<pid>-<start time>-<entry>
    dead = [e for e in (os.listdir(d) if os.path.isdir(d) else [])
            if not owner_alive("-".join(e.split("-")[:2]))]
    assert not dead, f"entries of dead owners left: {[describe(d, e) for e in dead]}"
    assert bystander.reload().status == "running"


@pytest.mark.parametrize("op", OPS)
def test_python_cli_killed(fb_env, bystander, op):
    token = str(random.randrange(10**8, 10**9))
    for _ in range(ROUNDS):
        kill_at_random([FASTBOX_PY, *cli_args(op, token, bystander.id)], 0.15)
    settle(fb_env, token, bystander, op)


@pytest.mark.parametrize("op", OPS)
def test_api_process_killed(fb_env, bystander, op):
    token = str(random.randrange(10**8, 10**9))
    for _ in range(ROUNDS):
        kill_api_at_random(api_script(op, token, bystander.id), 0.015)
    settle(fb_env, token, bystander, op)


@pytest.mark.engine  # it starts engines (conftest: no FASTBOX_NO_ENGINE)
@pytest.mark.parametrize("op", OPS)
def test_engine_killed(fb_env, bystander, op):
    token = str(random.randrange(10**8, 10**9))
    for _ in range(ROUNDS // ENGINE_CLIENTS):
        r = subprocess.run([FASTBOX_C, "engine", "start"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        engine = int(r.stdout.split("pid ")[1].rstrip(")\n"))
        clients = [subprocess.Popen([FASTBOX_C, *cli_args(op, token, bystander.id)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(ENGINE_CLIENTS)]
        time.sleep(random.uniform(0, 0.05))
        os.kill(engine, signal.SIGKILL)
        for c in clients:  # each loses the engine, or ran the Python CLI on its own
            try:
                c.wait(timeout=1)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        eventually(lambda: not os.path.exists(f"/proc/{engine}") or reap_children(),
                   timeout=10, what="the engine gone")
    settle(fb_env, token, bystander, op)


def test_monitor_killed(fb_env, bystander):
    token = str(random.randrange(10**8, 10**9))
    for _ in range(ROUNDS):
        known = set(monitors_under(fb_env.root))
        p = subprocess.Popen([FASTBOX_PY, *cli_args("run -d", token, None)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mon = eventually(lambda: [m for m in monitors_under(fb_env.root) if m not in known],
                         timeout=10, interval=0.001, what="the monitor")[0]
        time.sleep(random.uniform(0, 0.02))
        os.kill(mon, signal.SIGKILL)
        p.wait()
    settle(fb_env, token, bystander)
    assert not sleepers(token)
