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
