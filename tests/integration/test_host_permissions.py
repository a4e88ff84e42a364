"""Host data is root's alone: the attacks of issue 10 (4), made as the user nobody.

nobody reads a container's record (which holds its -e values) and log, lists its writable
layer and the image layers, and executes a setuid-root binary that a container made in its
writable layer, or that an image layer holds. Each must fail. An old store (0755/0644, as
fastbox made them before) is tightened by the first command that opens it.

The test's own tmp dir is 0700 (pytest's), which would stop nobody whatever fastbox does:
FASTBOX_ROOT and FASTBOX_RUN are put under a 0755 directory in /tmp instead, made 0755 as
an administrator (or an older fastbox) would make them.
"""
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from types import SimpleNamespace

import pytest

import fastbox
from fastbox import containers

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
NOBODY = 65534
SECRET = "SECRET=hunter2-in-the-record"


@pytest.fixture
def open_root(monkeypatch, probe):
    base = tempfile.mkdtemp(prefix="fastbox-perm-", dir="/tmp")
    os.chmod(base, 0o755)
    root, run = os.path.join(base, "root"), os.path.join(base, "run")
    for d in (root, run, os.path.join(root, "images")):
        os.mkdir(d)
        os.chmod(d, 0o755)
    monkeypatch.setenv("FASTBOX_ROOT", root)
    monkeypatch.setenv("FASTBOX_RUN", run)
    from fastbox.images.store import ImageStore
    image = ImageStore(root=os.path.join(root, "images")).import_tar(probe.tarball, probe.image)
    try:
        yield SimpleNamespace(base=base, root=root, run=run, image=image)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(argv, executable=None):
    """argv run as nobody (uid and gid 65534, no groups); PermissionError if its exec
    was refused."""
    return subprocess.run(argv, executable=executable, user=NOBODY, group=NOBODY,
                          extra_groups=[], capture_output=True, text=True, timeout=30)


def cannot_read(path):
    r = as_nobody(["cat", path])
    assert r.returncode != 0, f"nobody read {path}: {r.stdout[:200]!r}"


def cannot_list(path):
    r = as_nobody(["ls", "-la", path])
    assert r.returncode != 0, f"nobody listed {path}: {r.stdout[:300]!r}"


def cannot_execute(path, argv):
    """The setuid binary at path may not run for nobody at all (refused at exec)."""
    try:
        r = as_nobody(argv, executable=path)
    except PermissionError:
        return
    raise AssertionError(f"nobody ran setuid {path}: exit {r.returncode}, {r.stdout!r}")


def container_dir(root, cid):
    return os.path.join(root, "containers", cid)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_record_and_log_are_roots_alone(open_root):
    c = containers.run(open_root.image.ref, ["sh", "-c", "echo $SECRET"], env=[SECRET])
    try:
        assert c.wait(timeout=30) == 0
        d = container_dir(open_root.root, c.id)
        with open(os.path.join(d, "state.json")) as f:
            assert "hunter2" in f.read()  # the record does hold it: root may read it
        assert b"hunter2" in c.logs()
        cannot_read(os.path.join(d, "state.json"))
        cannot_read(os.path.join(d, "container.log"))
        cannot_list(d)
        cannot_list(os.path.join(d, "upper"))
        assert mode(os.path.join(d, "state.json")) == 0o600
        for path in (open_root.root, open_root.run, os.path.join(open_root.root, "containers"), d):
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    finally:
        c.remove(force=True)


def test_setuid_binary_made_in_a_container_cannot_be_run_by_nobody(open_root):
    r = fastbox.run(open_root.image.ref, ["sh", "-c",
                    "cp /bin/busybox /x && chmod 4755 /x && cp /probe /y && chmod 4755 /y"],
                    remove=False, capture_output=True)
    assert r.exit_code == 0, r.stderr
    try:
        upper = os.path.join(container_dir(open_root.root, r.id), "upper")
        for name in ("x", "y"):  # they are there, setuid root: the attack's material
            st = os.stat(os.path.join(upper, name))
            assert st.st_mode & stat.S_ISUID and st.st_uid == 0
        cannot_execute(os.path.join(upper, "x"), ["id", "-u"])
        # The probe does not drop privileges as busybox does: run, it shows CapEff of root.
        cannot_execute(os.path.join(upper, "y"), ["probe", "caps"])
    finally:
        containers.get(r.id).remove(force=True)


def test_setuid_binary_in_an_image_layer_cannot_be_run_by_nobody(open_root, probe, tmp_path):
    tar_path = str(tmp_path / "suid.tar")
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("suid")
        info.mode, info.uid, info.gid = 0o4755, 0, 0
        info.size = os.path.getsize(probe.binary)
        with open(probe.binary, "rb") as f:
            tar.addfile(info, f)
    from fastbox.images.store import ImageStore
    store = ImageStore(root=os.path.join(open_root.root, "images"))
    image = store.import_tar(tar_path, "fastbox-test/suid:latest")
    (layer,) = image.layer_dirs
    binary = os.path.join(layer, "suid")
    assert os.stat(binary).st_mode & stat.S_ISUID
    cannot_execute(binary, ["probe", "caps"])
    cannot_list(os.path.dirname(layer))
    cannot_list(open_root.image.layer_dirs[0])


def _loosen(root):
    """What fastbox made before: directories 0755, files 0644, no marker."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and not os.stat(path).st_mode & stat.S_ISUID:
                os.chmod(path, 0o644)
    try:
        os.unlink(os.path.join(root, ".private"))
    except FileNotFoundError:
        pass


def test_an_old_store_is_tightened_by_the_first_command(open_root):
    r = fastbox.run(open_root.image.ref, ["sh", "-c", "cp /probe /y && chmod 4755 /y"],
                    remove=False, env=[SECRET], capture_output=True)
    assert r.exit_code == 0
    try:
        _loosen(open_root.root)
        _loosen(open_root.run)
        d = container_dir(open_root.root, r.id)
        state = os.path.join(d, "state.json")
        assert as_nobody(["cat", state]).returncode == 0  # the old store: readable
        cli = subprocess.run([FASTBOX, "ps", "-a"], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert r.id[:12] in cli.stdout
        cannot_read(state)
        cannot_execute(os.path.join(d, "upper", "y"), ["probe", "caps"])
        cannot_list(open_root.image.layer_dirs[0])
        assert mode(state) == 0o600
        for path in (open_root.root, open_root.run, d, os.path.join(open_root.root, "images"),
                     os.path.join(open_root.root, "images", "layers")):
            assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    finally:
        containers.get(r.id).remove(force=True)
