"""Container records on the real filesystem, and what a SIGKILLed writer leaves: processes
creating or removing records are killed at random points, and afterwards every directory
in the store is a whole record or nothing (list() sweeps the rest)."""
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastbox.state.store import StateStore

HEX64 = re.compile(r"^[0-9a-f]{64}$")

WRITER = textwrap.dedent("""
    import os, sys
    from fastbox.state.store import StateStore
    store = StateStore(sys.argv[1])
    mode = sys.argv[2]
    print("ready", flush=True)
    while True:
        cid = os.urandom(32).hex()
        store.create({"id": cid, "name": None, "status": "created", "pid": 0,
                      "payload": "x" * 4096})
        if mode == "remove":
            with open(os.path.join(store.container_dir(cid), "container.log"), "w") as f:
                f.write("log\\n" * 1000)
            store.delete(store.get(cid))
""")


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "containers")


def record(cid):
    return {"id": cid, "name": None, "status": "created", "pid": 0}


def entries(root):
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def whole_or_nothing(root):
    """After list(): no hidden leftovers, and each record directory has its state."""
    store = StateStore(root)
    listed = {r["id"] for r in store.list()}
    problems = []
    for e in entries(root):
        if e == "names":
            continue
        if not HEX64.match(e):
            problems.append(f"leftover {e}")
        elif e not in listed or not os.path.isfile(os.path.join(root, e, "state.json")):
            problems.append(f"record {e[:12]} without its state")
    return problems


def test_create_then_delete_leaves_nothing(root):
    store = StateStore(root)
    cid = "a" * 64
    store.create(record(cid))
    assert entries(root) == [cid]
    assert [r["id"] for r in store.list()] == [cid]
    store.delete(store.get(cid))
    assert entries(root) == []


def test_a_record_being_built_by_a_live_process_is_left_alone(root):
    store = StateStore(root)
    os.makedirs(root)
    building = os.path.join(root, f".new-{os.getpid()}-{'b' * 64}")
    os.mkdir(building)
    assert store.list() == []
    assert os.path.isdir(building)


@pytest.mark.parametrize("mode", ["create", "remove"])
def test_writer_killed_at_random_points_leaves_whole_records(root, mode):
    rng = random.Random(4)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    kills = 0
    for _ in range(25):
        p = subprocess.Popen([sys.executable, "-c", WRITER, root, mode], env=env,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.01))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        kills += 1
        assert whole_or_nothing(root) == [], f"after kill {kills}"
    # Something was written: the kills did land mid-work, not before it began.
    assert mode == "remove" or len(entries(root)) > 0


def test_an_exit_recorded_just_before_the_monitor_went_is_read(root, monkeypatch):
    """The monitor writes exit.json and then exits. A reader that found no exit record
    and then no monitor must look once more: the record came in between (CI saw the
    exit code read as 255, "the monitor died", for a container that exited 3)."""
    from fastbox.state import process
    store = StateStore(root)
    cid = "c" * 64
    store.create({"id": cid, "name": None, "status": "running", "pid": 1,
                  "monitor_pid": 1, "monitor_start": 1})

    def monitor_exits_right_now(pid, start):  # the window between the reader's two looks
        with open(store.exit_path(cid), "w") as f:
            f.write('{"exit_code": 3, "finished_at": "2026-12-07T00:00:00Z"}')
        return False
    monkeypatch.setattr(process, "alive", monitor_exits_right_now)
    got = store.get(cid)
    assert (got["status"], got["exit_code"]) == ("exited", 3), got
