"""Starting a stopped container again (Docker's `start` of an exited container): same
id and name, same writable layer, a fresh exit code, the log appended to."""
import pytest

from fastbox import containers
from fastbox.errors import ContainerStateError

from test_lifecycle import reap, session_cgroups  # noqa: F401  (reap: an autouse fixture)


def test_exited_container_starts_again_on_its_writable_layer(busybox):
    c = containers.run("busybox", ["sh", "-c", "echo run >> /count; wc -l < /count; exit 3"],
                       name="again")
    try:
        assert c.wait() == 3
        c.start()
        assert c.wait() == 3
        assert c.logs() == b"1\n2\n"  # the file survived; the log was appended to
        assert c.reload().status == "exited" and c.name == "again"
        assert session_cgroups(c.id) == []
    finally:
        c.remove(force=True)


def test_running_container_cannot_be_started(busybox):
    c = containers.run("busybox", ["sleep", "1000"])
    try:
        with pytest.raises(ContainerStateError, match="only a created or stopped"):
            c.start()
    finally:
        c.remove(force=True)


def test_foreground_kept_container_starts_again(busybox):
    import fastbox
    r = fastbox.run("busybox", ["sh", "-c", "touch /mark; exit 4"], remove=False, name="fg")
    assert r.exit_code == 4
    c = containers.get("fg")
    c.start()
    assert c.wait() == 4
    c.remove()


def test_a_stop_while_a_restart_is_under_way_sticks(busybox):
    """Docker: `stop` of a restarting container ends its restarts, even when the restarter
    is already past its back-off and starting it (that start must not undo the stop, and
    the run it makes is stopped). Each stop lands right as a restart begins: when the
    restarter has counted it."""
    import time
    from fastbox.state import status
    c = containers.run("busybox", ["sh", "-c", "exit 3"], restart="always")
    try:
        for _ in range(4):
            count = c.reload().attrs.get("restart_count", 0)
            deadline = time.monotonic() + 60
            while c.reload().attrs.get("restart_count", 0) == count:
                assert time.monotonic() < deadline, "no restart in 60 s"
                time.sleep(0.001)
            c.stop(timeout=1)
            time.sleep(0.4)  # not a timing assertion: no restart may follow a stop at all
            record = c.reload().attrs
            assert record["status"] == "exited" and not status.restarting(record), record
            assert record.get("stopped_by_user")
            c.start()  # a user's start lifts the stop: the restarts go on
            assert not c.reload().attrs.get("stopped_by_user")
    finally:
        c.remove(force=True)


def test_rm_f_of_a_restarting_container_ends_its_restarter(busybox):
    """Docker's `rm -f` of a restarting container leaves nothing of it: the restarter
    (the monitor's pid, now Python) is gone when rm returns, even when it is still
    starting up; a plain `rm` refuses, as Docker's does."""
    import time
    from fastbox.state import process, status
    c = containers.run("busybox", ["sh", "-c", "exit 3"], restart="always")
    deadline = time.monotonic() + 30
    while not status.restarting(c.reload().attrs):
        assert time.monotonic() < deadline, "never restarting"
        time.sleep(0.001)
    with pytest.raises(ContainerStateError, match="cannot remove restarting container"):
        c.remove()
    # right at the exit: the restarter has just been exec'd
    c.start()
    while c.reload().status == "running":
        time.sleep(0.001)
    record = c.reload().attrs
    c.remove(force=True)
    assert not process.alive(record["monitor_pid"], record.get("monitor_start"))
