"""Fixtures for integration tests: real containers, run as root, no mocks."""
import os

import pytest

from fbtest import Pipe


def pytest_collection_modifyitems(items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests start real containers: run as root")
        for item in items:
            if "/integration/" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
def pipes():
    """pipes() -> a new Pipe; all are closed after the test."""
    made = []

    def make():
        p = Pipe()
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="session")
def busybox(session_dirs):
    """The built-in busybox image, built once in the session's store."""
    from fastbox.images.store import ImageStore
    return ImageStore(root=session_dirs.images).ensure_default()


@pytest.fixture
def sh(busybox):
    """sh(script, **opts) -> RunResult of `sh -c script` in busybox, output captured."""
    import fastbox

    def run(script, **opts):
        opts.setdefault("capture_output", True)
        return fastbox.run("busybox", ["sh", "-c", script], **opts)

    return run
