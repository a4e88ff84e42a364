"""`fastbox save` / `fastbox load` against skopeo's docker-archive: and oci-archive:
transports, both ways, and archives crafted to escape."""
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

import fastbox

pytest.register_assert_rewrite("conftest_registry")
from conftest_registry import busybox_layer, skopeo, tar_of, umoci  # noqa: E402
from fastbox.images.store import ImageStore  # noqa: E402
from test_lifecycle import ok  # noqa: F401

pytest_plugins = ["conftest_registry"]
FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def cli(*args, stdin=None):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)


def members(path):
    with tarfile.open(path) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def test_load_a_docker_archive_written_by_skopeo(pushed, own_store, tmp_path):
    archive = tmp_path / "skopeo-docker.tar"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{pushed['multi']}",
           f"docker-archive:{archive}:fbtest/archived:v1")
    r = ok(cli("load", "-i", archive))
    assert r.stdout == "Loaded image: fbtest/archived:v1\n"

    content = members(archive)
    [entry] = json.loads(content["manifest.json"])
    config = content[entry["Config"]]
    image = ImageStore().resolve("fbtest/archived:v1")
    assert image.id == "sha256:" + hashlib.sha256(config).hexdigest()  # the id survives the trip
    assert ImageStore().describe("fbtest/archived:v1")["config"]["rootfs"]["diff_ids"] == \
        json.loads(config)["rootfs"]["diff_ids"]
    out = fastbox.run("fbtest/archived:v1", ["/bin/sh", "-c", "test ! -e /etc/gone && cat /d /x/inner"],
                      capture_output=True)
    assert out.stdout == b"now a file\nx is a dir\n"


def test_load_an_oci_archive_written_by_skopeo_keeps_the_digest(pushed, registry, own_store, tmp_path):
    archive = tmp_path / "skopeo-oci.tar"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{pushed['multi']}",
           f"oci-archive:{archive}:{registry.host}/fbtest/from-oci:v1")
    ok(cli("load", "-i", archive))
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{pushed['multi']}").stdout
    image = ImageStore().resolve(f"{registry.host}/fbtest/from-oci:v1")
    assert image.manifest_digest == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def test_saved_archive_is_read_by_skopeo_both_ways(pushed, own_store, tmp_path):
    ok(cli("pull", pushed["multi"]))
    image = ImageStore().resolve(pushed["multi"])
    archive = tmp_path / "saved.tar"
    ok(cli("save", "-o", archive, pushed["multi"]))
    names = set(members(archive))
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= names

    raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:v1").stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == image.manifest_digest
    raw = json.loads(skopeo("inspect", "--raw", f"docker-archive:{archive}:{pushed['multi']}").stdout)
    assert raw["config"]["digest"] == image.id

    oci = tmp_path / "back"
    skopeo("copy", "-q", f"oci-archive:{archive}:v1", f"oci:{oci}:x")
    umoci("unpack", "--image", f"{oci}:x", str(tmp_path / "bundle"))
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "d").read_text() == "now a file\n" and not (rootfs / "etc/gone").exists()


def test_round_trip_through_fastbox_gzip_and_stdin(pushed, own_store, tmp_path):
    ok(cli("pull", pushed["zstd"]))
    before = ImageStore().resolve(pushed["zstd"])
    archive = tmp_path / "rt.tar.gz"
    with open(archive, "wb") as f:
        saved = subprocess.run([FASTBOX, "save", pushed["zstd"]], capture_output=True, check=True).stdout
        f.write(gzip.compress(saved))
    ok(cli("rmi", pushed["zstd"]))
    with open(archive, "rb") as f:
        r = ok(cli("load", stdin=f))
    assert r.stdout == f"Loaded image: {pushed['zstd']}\n"
    after = ImageStore().resolve(pushed["zstd"])
    assert (after.id, after.manifest_digest) == (before.id, before.manifest_digest)
    assert fastbox.run(pushed["zstd"], capture_output=True).stdout == b"zstd layer\n"


def test_docker_format_only_and_untagged(own_store, tmp_path):
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(busybox_layer())
    image_id = ok(cli("import", tarball, "fbtest/local:1")).stdout.strip()
    archive = tmp_path / "docker.tar"
    ok(cli("save", "--format", "docker", "-o", archive, image_id))  # by id: no RepoTags
    content = members(archive)
    assert "index.json" not in content and json.loads(content["manifest.json"])[0]["RepoTags"] == []
    ok(cli("rmi", "fbtest/local:1"))
    assert ok(cli("load", "-i", archive)).stdout == f"Loaded image ID: {image_id}\n"
    assert ImageStore().resolve(image_id[7:19]).id == image_id


# ---------------------------------------------------------------- hostile archives

def _archive(path, files):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):  # (type, linkname)
                info.type, info.linkname = data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _docker_save(layers, diff_ids=None, extra=None, layer_names=None):
    """A docker-save archive as {member: bytes}."""
    names = layer_names or [f"l{i}/layer.tar" for i in range(len(layers))]
    diff_ids = diff_ids or ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    files = {"config.json": config,
             "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": ["fbtest/evil:1"],
                                           "Layers": names}]).encode()}
    files.update({n: t for n, t in zip(names, layers) if not n.startswith(("/", "."))})
    files.update(extra or {})
    return files


def _store_listing(store):
    out = {}
    for sub in ("blobs/sha256", "layers", "resolved", "refs"):
        path = store / sub
        out[sub] = sorted(os.listdir(path)) if path.exists() else []
    index = store / "index.json"
    out["index"] = index.read_text() if index.exists() else None
    return out


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside"
    path.mkdir()
    return path


HOSTILE = {
    "traversal-in-layer": lambda out: _docker_save([tar_of([(f"../../../../../../../..{out}/pwned", "file", b"x", 0o644)])]),
    "absolute-in-layer": lambda out: _docker_save([tar_of([(f"{out}/pwned", "file", b"x", 0o644)])]),
    "symlink-then-write": lambda out: _docker_save([tar_of([("esc", "symlink", str(out), 0o777),
                                                           ("esc/pwned", "file", b"x", 0o644)])]),
    "hardlink-out": lambda out: _docker_save([tar_of([("passwd", "hardlink", "/etc/passwd", 0o644)])]),
    "whiteout-dotdot": lambda out: _docker_save([tar_of([("a", "dir", None, 0o755), ("a/.wh..", "file", b"", 0o644)])]),
    "layer-path-outside-archive": lambda out: _docker_save([busybox_layer()], layer_names=["../../etc/passwd"]),
    "layer-symlink-outside": lambda out: _docker_save(
        [busybox_layer()], layer_names=["link.tar"],
        extra={"link.tar": (tarfile.SYMTYPE, "/etc/passwd")}),
    "diff-id-mismatch": lambda out: _docker_save([busybox_layer()], diff_ids=["sha256:" + "0" * 64]),
    "oci-blob-mismatch": lambda out: {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + "1" * 64, "size": 10}]}).encode(),
        "blobs/sha256/" + "1" * 64: b"not it"},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_change_nothing(case, own_store, outside, tmp_path):
    tarball = tmp_path / "seed.tar"
    tarball.write_bytes(busybox_layer())
    ImageStore().import_tar(str(tarball), "fbtest/seed:1")  # the store has something to keep
    before = _store_listing(own_store)
    passwd = os.stat("/etc/passwd")

    r = cli("load", "-i", _archive(tmp_path / "evil.tar", HOSTILE[case](outside)))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("fastbox: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert os.listdir(outside) == []
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink
    assert _store_listing(own_store) == before
    assert [n for n in os.listdir(own_store / "ingest") if not n.endswith(".lock")] == []
