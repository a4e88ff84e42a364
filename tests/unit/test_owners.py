"""Owner entries and the sweep, on the real filesystem (FASTBOX_RUN in the test's dir):
entries of a live owner are never touched, a dead owner's are, a locked one is left,
and an old store's modes are tightened once."""
import fcntl
import os
import stat
import subprocess
import sys

from fastbox.state import modes, owners, process
from fastbox.state.store import StateStore


def dead_key():
    """The key of a process that has exited (its pid, its start time)."""
    p = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"],
                         stdout=subprocess.PIPE)
    pid = int(p.stdout.read())
    started = process.start_time(pid)
    p.wait()
    p.stdout.close()
    return owners.key_of(pid, started if started is not None else 1)


def write_entry(key, name, text):
    os.makedirs(owners.owners_dir(), exist_ok=True)
    path = owners.entry_path(key, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_claim_and_release_reuse_one_slot(fb_env):
    a = owners.claim("a" * 64, owners.RUN)
    path = a.path
    with open(path) as f:
        assert f.read().split("\n")[:2] == ["run", "a" * 64]
    a.release()
    assert os.path.getsize(path) == 0  # emptied, kept for the next
    b = owners.claim("b" * 64, owners.RUN)
    assert b.path == path
    b.release()
    assert os.listdir(owners.owners_dir()) == [os.path.basename(path)]
    assert stat.S_IMODE(os.stat(owners.owners_dir()).st_mode) == 0o700


def test_after_a_burst_only_keep_free_slots_stay(fb_env):
    """Claims held at once each need a slot; once released, a process keeps KEEP_FREE of
    them (files and fds) and removes the rest."""
    claims = [owners.claim(f"{i:064x}", owners.RUN) for i in range(owners.KEEP_FREE + 6)]
    assert len(os.listdir(owners.owners_dir())) == owners.KEEP_FREE + 6
    for c in claims:
        c.release()
    left = os.listdir(owners.owners_dir())
    assert len(left) == owners.KEEP_FREE
    assert all(os.path.getsize(os.path.join(owners.owners_dir(), n)) == 0 for n in left)
    assert all(c.fd == -1 for c in claims)  # the claims no longer hold them


def test_entries_of_a_live_owner_are_left(fb_env):
    c = owners.claim("c" * 64, owners.RUN)
    live = write_entry(owners.key_of(1, process.start_time(1)), "d" * 64, "run\n" + "d" * 64 + "\n")
    assert owners.sweep() == 0
    assert os.path.exists(c.path) and os.path.exists(live)
    c.release()


def test_a_dead_owners_entries_are_swept(fb_env):
    key = dead_key()
    empty = write_entry(key, "slot1", "")
    named = write_entry(key, "e" * 64, f"run\n{'e' * 64}\ncgroup {fb_env.tmp}/no-such-cgroup\n")
    garbage = write_entry(key, "f" * 64, "not an entry")
    assert owners.sweep() == 3
    assert not any(os.path.exists(p) for p in (empty, named, garbage))


def test_a_locked_entry_of_a_dead_owner_is_left(fb_env):
    """Its lock is held (by a monitor that inherited it): it is someone's."""
    path = write_entry(dead_key(), "g" * 64, "detached\n" + "g" * 64 + "\n")
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert owners.sweep() == 0
        assert os.path.exists(path)
    finally:
        os.close(fd)
    assert owners.sweep() == 1


def test_a_run_that_never_ran_leaves_no_record(fb_env):
    store = StateStore()
    key = dead_key()
    cid = "1" * 64
    store.create({"id": cid, "name": None, "status": "created", "owner": key})
    write_entry(key, cid, f"run\n{cid}\nstore {store.root}\ncreated\n")
    assert owners.sweep() == 1
    assert not os.path.exists(store.container_dir(cid))


def test_a_record_someone_else_owns_now_is_left(fb_env):
    store = StateStore()
    cid = "2" * 64
    store.create({"id": cid, "name": None, "status": "created", "owner": "someone-else"})
    write_entry(dead_key(), cid, f"detached\n{cid}\nstore {store.root}\ncreated\n")
    assert owners.sweep() == 1  # the stale entry goes, the record stays
    assert store.read_raw(cid)["status"] == "created"


def test_an_old_store_is_tightened_once(fb_env, monkeypatch):
    root = os.path.join(fb_env.tmp, "old")
    d = os.path.join(root, "containers", "3" * 64)
    os.makedirs(os.path.join(d, "upper"))
    with open(os.path.join(d, "state.json"), "w") as f:
        f.write("{}")
    for path in (root, os.path.join(root, "containers"), d, os.path.join(d, "upper")):
        os.chmod(path, 0o755)
    os.chmod(os.path.join(d, "state.json"), 0o644)
    monkeypatch.setenv("FASTBOX_ROOT", root)
    modes.ensure_private()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(d, "state.json")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(d, "upper")).st_mode) == 0o755  # the container's /
    assert os.path.exists(os.path.join(root, modes.MARKER))
