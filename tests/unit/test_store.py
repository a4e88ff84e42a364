"""The image store on the real filesystem, rooted in a temp dir through FASTBOX_ROOT."""
import gzip
import io
import json
import os
import platform
import stat
import subprocess
import sys
import tarfile

import pytest

from fastbox.errors import ImageError, ImageNotFound, SpecError
from fastbox.images.store import ImageStore

MTIME = 1_700_000_000


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBOX_ROOT", str(tmp_path / "root"))
    return ImageStore()


def rootfs_tar(path, hello=b"hello\n", compress=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("bin", None), ("bin/hello", hello), ("etc", None), ("etc/motd", b"hi\n")]:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "hello"
        tar.addfile(link)
    data = buf.getvalue()
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def blob(store, digest):
    with open(os.path.join(store.root, "blobs", "sha256", digest[7:]), "rb") as f:
        return json.load(f)


def test_import_and_resolve_by_name_and_id(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "myimg",
                             changes={"Cmd": ["/bin/hello"], "Env": ["A=1"], "WorkingDir": "/etc"})
    assert image.ref == "docker.io/library/myimg:latest"
    assert (image.cmd, image.env, image.working_dir, image.entrypoint, image.user) == \
        (("/bin/hello",), ("A=1",), "/etc", (), "")
    layer = image.layer_dirs[0]
    assert len(image.layer_dirs) == 1 and os.path.isabs(layer)
    assert open(os.path.join(layer, "bin/hello"), "rb").read() == b"hello\n"
    assert os.readlink(os.path.join(layer, "bin/sh")) == "hello"
    for ref in ["myimg", "myimg:latest", "docker.io/library/myimg:latest", image.id,
                image.id[7:], image.id[7:19], image.id[:19], "myimg@" + image.manifest_digest]:
        got = store.resolve(ref)
        assert (got.id, got.layer_dirs, got.cmd) == (image.id, image.layer_dirs, image.cmd), ref
    assert ImageStore().resolve("myimg").manifest_digest == image.manifest_digest


def test_oci_layout_on_disk(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar.gz", compress=True), "app:v1",
                             changes={"Entrypoint": "echo hi", "User": "nobody"})
    assert image.entrypoint == ("/bin/sh", "-c", "echo hi") and image.user == "nobody"
    index = json.load(open(os.path.join(store.root, "index.json")))
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "docker.io/library/app:v1"
    assert entry["digest"] == image.manifest_digest
    manifest = blob(store, image.manifest_digest)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["config"]["digest"] == image.id
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    config = blob(store, image.id)
    assert config["os"] == "linux" and config["history"]
    if platform.machine() == "x86_64":
        assert config["architecture"] == "amd64"
    [diff_id] = config["rootfs"]["diff_ids"]
    assert diff_id != layer["digest"]  # the blob is stored gzipped, as given
    assert image.layer_dirs == (os.path.join(store.root, "layers", diff_id[7:]),)
    with open(os.path.join(store.root, "blobs", "sha256", layer["digest"][7:]), "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    assert json.load(open(os.path.join(store.root, "oci-layout"))) == {"imageLayoutVersion": "1.0.0"}
    assert stat.S_IMODE(os.stat(store.root).st_mode) == 0o700  # setuid binaries inside


def test_second_import_reuses_the_unpacked_layer(store, tmp_path):
    tar = rootfs_tar(tmp_path / "rootfs.tar")
    first = store.import_tar(tar, "one")
    before = os.stat(first.layer_dirs[0])
    os.utime(first.layer_dirs[0], ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))
    before = os.stat(first.layer_dirs[0])
    second = store.import_tar(tar, "two")
    after = os.stat(second.layer_dirs[0])
    assert second.layer_dirs == first.layer_dirs
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == \
        (before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    assert os.listdir(os.path.join(store.root, "layers")) == [first.layer_dirs[0].rsplit("/", 1)[1]]


def test_leftover_temporaries_are_ignored_and_cleaned(store, tmp_path):
    layers = os.path.join(store.root, "layers")
    stale = os.path.join(layers, ".tmp-dead")  # a writer that died half-way through unpacking
    os.makedirs(os.path.join(stale, "bin"))
    with open(os.path.join(stale, "bin", "hello"), "wb") as f:
        f.write(b"half")
    os.makedirs(os.path.join(store.root, "blobs", "sha256"))
    open(os.path.join(store.root, "blobs", "sha256", ".tmp-dead"), "wb").close()
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    assert open(os.path.join(image.layer_dirs[0], "bin/hello"), "rb").read() == b"hello\n"
    assert not os.path.exists(stale)
    assert not [n for n in os.listdir(layers) if n.startswith(".tmp-")]
    assert not [n for n in os.listdir(os.path.join(store.root, "blobs", "sha256")) if n.startswith(".")]


def test_ensure_default_busybox(store):
    image = store.ensure_default()
    assert image.ref == "docker.io/library/busybox:latest"
    assert image.cmd == ("sh",)
    assert image.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    [layer] = image.layer_dirs
    busybox = os.lstat(os.path.join(layer, "bin/busybox"))
    assert stat.S_ISREG(busybox.st_mode) and busybox.st_mode & 0o111
    assert os.readlink(os.path.join(layer, "bin/sh")) == "busybox"
    assert os.path.realpath(os.path.join(layer, "usr/bin/env")) == os.path.join(layer, "bin/busybox")
    assert "nobody:x:65534:65534:" in open(os.path.join(layer, "etc/passwd")).read()
    assert open(os.path.join(layer, "etc/group")).read().startswith("root:x:0:")
    assert stat.S_IMODE(os.stat(os.path.join(layer, "tmp")).st_mode) == 0o1777
    for d in ["proc", "sys", "dev", "etc", "root", "var"]:
        assert os.path.isdir(os.path.join(layer, d)), d
    blobs = sorted(os.listdir(os.path.join(store.root, "blobs", "sha256")))
    assert store.ensure_default().id == image.id  # idempotent: nothing rebuilt
    assert sorted(os.listdir(os.path.join(store.root, "blobs", "sha256"))) == blobs
    store.remove("busybox")
    assert store.ensure_default().id == image.id  # deterministic tarball and config


def test_list_tag_remove(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "app:1")
    store.tag("app:1", "registry.example:5000/team/app:prod")
    rows = sorted((r["repository"], r["tag"], r["id"]) for r in store.list())
    assert rows == [("app", "1", image.id), ("registry.example:5000/team/app", "prod", image.id)]
    row = store.list()[0]
    assert row["size"] > 0 and row["created"].endswith("Z")
    assert store.resolve("registry.example:5000/team/app:prod").id == image.id

    assert store.remove("app:1") == ["Untagged: app:1"]
    assert store.resolve("registry.example:5000/team/app:prod").layer_dirs == image.layer_dirs
    with pytest.raises(ImageNotFound):
        store.resolve("app:1")

    lines = store.remove("registry.example:5000/team/app:prod")
    assert lines == ["Untagged: registry.example:5000/team/app:prod", f"Deleted: {image.id}"]
    assert store.list() == []
    for sub in ["blobs/sha256", "layers", "resolved", "refs"]:
        assert os.listdir(os.path.join(store.root, sub)) == [], sub
    with pytest.raises(ImageNotFound):
        store.resolve(image.id)


def test_remove_keeps_what_other_images_share(store, tmp_path):
    tar = rootfs_tar(tmp_path / "rootfs.tar")
    a = store.import_tar(tar, "a", changes={"Cmd": ["a"]})
    b = store.import_tar(tar, "b", changes={"Cmd": ["b"]})
    assert a.id != b.id and a.layer_dirs == b.layer_dirs  # two configs, one layer
    store.remove("a")
    assert os.path.isdir(b.layer_dirs[0])
    assert store.resolve("b").id == b.id


def test_remove_by_id(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "a")
    store.tag("a", "a:other")
    store.tag("a", "b")
    with pytest.raises(ImageError, match="referenced in multiple repositories"):
        store.remove(image.id[7:19])
    store.remove("b")
    lines = store.remove(image.id[7:19])
    assert sorted(lines) == sorted(["Untagged: a:latest", "Untagged: a:other", f"Deleted: {image.id}"])
    assert store.list() == []
    with pytest.raises(ImageNotFound, match="no such image"):
        store.remove("a")


def test_retag_leaves_a_dangling_image(store, tmp_path):
    old = store.import_tar(rootfs_tar(tmp_path / "one.tar"), "app")
    new = store.import_tar(rootfs_tar(tmp_path / "two.tar", hello=b"v2\n"), "app")
    rows = {r["id"]: (r["repository"], r["tag"]) for r in store.list()}
    assert rows == {new.id: ("app", "latest"), old.id: ("<none>", "<none>")}
    assert store.resolve(old.id[7:19]).layer_dirs == old.layer_dirs
    store.remove(old.id)
    assert [r["id"] for r in store.list()] == [new.id]
    assert os.path.isdir(new.layer_dirs[0]) and not os.path.exists(old.layer_dirs[0])


def test_resolve_unknown(store, tmp_path):
    with pytest.raises(ImageNotFound, match=r"^unable to find image 'nope:latest' locally$"):
        store.resolve("nope")
    store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    with pytest.raises(ImageNotFound, match=r"'host:5000/nope:1'"):
        store.resolve("host:5000/nope:1")
    with pytest.raises(ImageNotFound):
        store.resolve("sha256:" + "f" * 64)
    with pytest.raises(SpecError):
        store.resolve("Not/Valid!")


def test_resolve_without_the_run_path_records(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    resolved = os.path.join(store.root, "resolved")
    for name in os.listdir(resolved):
        os.unlink(os.path.join(resolved, name))
    for name in os.listdir(os.path.join(store.root, "refs")):
        os.unlink(os.path.join(store.root, "refs", name))
    again = store.resolve("img")
    assert (again.id, again.layer_dirs, again.env) == (image.id, image.layer_dirs, image.env)
    assert os.listdir(resolved) == [image.manifest_digest[7:]]  # rewritten
    with open(os.path.join(resolved, image.manifest_digest[7:]), "wb") as f:
        f.write(b"\xffgarbage")
    assert store.resolve("img").id == image.id
    assert store.resolve(image.id[7:19]).id == image.id


def test_resolve_unpacks_a_missing_layer_again(store, tmp_path):
    import shutil
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    shutil.rmtree(image.layer_dirs[0])
    os.unlink(os.path.join(store.root, "resolved", image.manifest_digest[7:]))
    assert store.resolve("img").layer_dirs == image.layer_dirs
    assert os.path.isfile(os.path.join(image.layer_dirs[0], "bin/hello"))


def test_bad_imports(store, tmp_path):
    with pytest.raises(SpecError, match="unsupported image change"):
        store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img", changes={"Volumes": {}})
    with pytest.raises(SpecError):
        store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img", changes={"Env": ["NOEQUALS"]})
    with pytest.raises(SpecError, match="digest"):
        store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img@sha256:" + "a" * 64)
    with pytest.raises(ImageError, match="cannot read"):
        store.import_tar(str(tmp_path / "missing.tar"), "img")
    (tmp_path / "junk.tar.gz").write_bytes(gzip.compress(b"not a tar" * 200))
    with pytest.raises(ImageError):
        store.import_tar(str(tmp_path / "junk.tar.gz"), "img")
    assert os.listdir(os.path.join(store.root, "blobs", "sha256")) == []
    assert store.list() == []


def test_image_is_read_only(store, tmp_path):
    image = store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    with pytest.raises(AttributeError):
        image.cmd = ("x",)
    with pytest.raises(AttributeError):
        image.extra = 1


def test_run_path_imports_stay_cheap(store, tmp_path):
    store.import_tar(rootfs_tar(tmp_path / "rootfs.tar"), "img")
    code = ("import sys\nfrom fastbox.images.store import ImageStore\n"
            "ImageStore().resolve('img')\n"
            "print(' '.join(m for m in ('json', 'tarfile', 'hashlib', 're', 'dataclasses', 'pathlib',"
            " 'typing', 'enum', 'fcntl', 'shutil') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == ""
