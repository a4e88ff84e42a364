"""Benchmark isolation: fastbox gets a temp store and its own cgroup parent, the peers get a
temp workspace, and the session fails at teardown if either left cgroups, processes or mounts."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from fastbox.bench.private_netns import leave_host_netns  # noqa: E402

leave_host_netns("benchmarks/conftest")  # the CLI's bridge: never in the host's namespace


def _fail_if(left, what):
    if left:
        pytest.fail(f"{what} left behind: " + ", ".join(left[:10])
                    + (f" ... ({len(left)} in all)" if len(left) > 10 else ""))


@pytest.fixture(scope="session", autouse=True)
def fastbox_sandbox():
    """FASTBOX_ROOT/RUN in a short temp dir (socket paths stay under 108 bytes)."""
    workdir = tempfile.mkdtemp(prefix="fbb-")
    env = peers.fastbox_env(workdir)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    yield workdir
    mp.undo()
    parent = env["FASTBOX_CGROUP_PARENT"]
    leaked = [f"cgroup {d}" for d in peers.cgroup_children(parent)]
    peers.remove_cgroup_tree(parent)  # only our own parent, so the host stays clean either way
    left = leaked + peers.leftovers(workdir, (parent,))
    if not peers.mounts_under(workdir):
        shutil.rmtree(workdir, ignore_errors=True)
    _fail_if(left, "fastbox")


@pytest.fixture(scope="session")
def peer_workspace():
    ws = peers.PeerWorkspace()
    yield ws
    ws.close()
    _fail_if(ws.leftovers(), "peers")


@pytest.fixture(scope="session")
def fastbox(fastbox_sandbox, peer_workspace):
    """The fastbox module, with the peers' busybox rootfs imported as `busybox`."""
    module, why = peers.load_fastbox()
    if module is None:
        pytest.skip(why)
    why = peers.seed_busybox(peer_workspace.rootfs, fastbox_sandbox)
    if why:
        pytest.skip(f"could not seed the temp store: {why}")
    return module


@pytest.fixture
def engine(fastbox):
    """`fastbox engine start` in the sandbox's environment; stopped (and gone) after."""
    cli = peers.fastbox_cli()
    r = subprocess.run([cli, "engine", "start"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"fastbox engine start: {r.stderr.strip()}")
    yield cli
    r = subprocess.run([cli, "engine", "stop"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
