"""The store's ingest area and commit: what dead processes leave is swept, what live ones hold
is not; downloads resume and are checked; a commit moves verified content in, index last;
rmi and prune respect kept containers."""
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile

import pytest

from fastbox.errors import DigestMismatch, ImageError, ImageNotFound
from fastbox.images import ingest
from fastbox.images.index import INDEX_DIGEST
from fastbox.images.store import ImageStore, MissingContent
from fastbox.images.unpack import unpack_layer


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBOX_ROOT", str(tmp_path / "root"))
    return ImageStore()


def _held_session(ingest_dir):
    """A process holding a session with one scratch dir; returns (process, session id)."""
    code = ("import sys, time\nfrom fastbox.images import ingest\n"
            "s = ingest.Session(sys.argv[1]).__enter__()\nos = __import__('os')\n"
            "os.makedirs(s.new_dir() + '/sub')\nprint(s.id, flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, ingest_dir], stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()


def test_sweep_removes_only_dead_sessions(tmp_path):
    d = str(tmp_path / "ingest")
    live, live_id = _held_session(d)
    dead, dead_id = _held_session(d)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        with open(os.path.join(d, "sha256-" + "a" * 64), "wb") as f:
            f.write(b"partial")
        ingest.sweep(d)
        names = sorted(os.listdir(d))
        assert names == sorted([f"{live_id}.1", f"{live_id}.lock", "sha256-" + "a" * 64])
        assert ingest.sweep(d, partial_blobs=True) > 0  # prune: free partials go too
        assert sorted(os.listdir(d)) == [f"{live_id}.1", f"{live_id}.lock"]
    finally:
        for p in (live, dead):
            p.kill()
            p.wait()
            p.stdout.close()
    ingest.sweep(d)
    assert os.listdir(d) == []


def test_blob_file_resumes_verifies_and_discards(tmp_path):
    d = str(tmp_path / "ingest")
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with ingest.Session(d) as session:
        first = ingest.BlobFile(d, session, digest, len(data))
        assert first.open() == 0
        first.write(data[:40_000])
        first.close()  # killed here, in effect
        second = ingest.BlobFile(d, session, digest, len(data))
        assert second.open() == 40_000  # what is there is hashed, not fetched again
        other = ingest.BlobFile(d, session, digest, len(data))
        assert other.open() == 0 and other.path != second.path  # held: a private file instead
        other.close()
        with pytest.raises(DigestMismatch, match="more than"):
            second.write(data[40_000:] + b"x")
        second.write(data[40_000:])
        second.verify()
        second.close()

        bad = ingest.BlobFile(d, session, "sha256:" + "0" * 64, 3)
        bad.open()
        bad.write(b"abc")
        with pytest.raises(DigestMismatch, match="expected 3 bytes"):
            bad.verify()
        bad.discard()
        assert not os.path.exists(bad.path)
    assert sorted(os.listdir(d)) == ["sha256-" + digest[7:]]


def _image_parts(tmp_path, content=b"hello\n"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    layer = gzip.compress(buf.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                  "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(cfg).hexdigest(),
                                      "size": len(cfg)},
                           "layers": [layer_desc]}).encode()
    path = tmp_path / f"layer-{hashlib.sha256(content).hexdigest()[:8]}"
    path.write_bytes(layer)
    return manifest, cfg, layer_desc["digest"], diff_id, str(path)


def test_commit_moves_verified_content_in(store, tmp_path):
    manifest, cfg, blob, diff_id, path = _image_parts(tmp_path)
    with ingest.Session(store.ingest_dir) as session:
        unpacked = session.new_dir()
        unpack_layer(path, unpacked, diff_id)
        image = store.commit_image("reg.example/app:1", manifest, "application/vnd.oci.image.manifest.v1+json",
                                   cfg, {blob: path}, {diff_id: unpacked},
                                   {INDEX_DIGEST: "sha256:" + "e" * 64})
    assert image.cmd == ("/hello",) and not os.path.exists(path)
    assert open(os.path.join(image.layer_dirs[0], "hello"), "rb").read() == b"hello\n"
    again = ImageStore()
    assert again.resolve("reg.example/app:1").id == image.id
    assert again.resolve("reg.example/app@sha256:" + "e" * 64).id == image.id  # the index digest
    assert again.tagged("docker.io/library/app:1") is None
    assert os.listdir(store.ingest_dir) == []


def test_commit_without_the_content_it_needs(store, tmp_path):
    manifest, cfg, blob, diff_id, path = _image_parts(tmp_path)
    with pytest.raises(MissingContent):
        store.commit_image("app:1", manifest, "application/vnd.oci.image.manifest.v1+json", cfg)
    assert store.list() == []
    with pytest.raises(DigestMismatch):  # a config that is not the manifest's
        store.commit_image("app:1", manifest, "application/vnd.oci.image.manifest.v1+json",
                           cfg + b" ", {blob: path})
    assert store.list() == []


def _record(cid, image_id):
    from fastbox import config
    d = os.path.join(config.containers_dir(), cid)
    os.makedirs(d)
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump({"id": cid, "image_id": image_id, "status": "exited"}, f)
    return d


def test_rmi_and_prune_spare_images_kept_containers_use(store, tmp_path):
    manifest, cfg, blob, diff_id, path = _image_parts(tmp_path)
    image = store.commit_image("app:1", manifest, "application/vnd.oci.image.manifest.v1+json",
                               cfg, {blob: path})
    other = _image_parts(tmp_path, b"other\n")
    other_image = store.commit_image("other:1", other[0], "application/vnd.oci.image.manifest.v1+json",
                                     other[1], {other[2]: other[4]})
    cid = "c" * 64
    record = _record(cid, image.id)
    with pytest.raises(ImageError, match=f"container {cid[:12]} is using its referenced image"):
        store.remove("app:1")
    store.tag("app:1", "app:2")
    assert store.remove("app:2") == ["Untagged: app:2"]  # another tag remains: fine
    assert store.remove("app:1", force=True) == ["Untagged: app:1"]
    assert [r["tag"] for r in store.list() if r["id"] == image.id] == ["<none>"]
    lines, _ = store.prune(all=True)
    assert lines == ["Untagged: other:1", f"Deleted: {other_image.id}"]  # the used one is spared
    assert store.resolve(image.id).layer_dirs == image.layer_dirs  # still there for the container
    import shutil
    shutil.rmtree(record)
    lines, freed = store.prune()
    assert lines == [f"Deleted: {image.id}"] and freed > 0
    assert store.list() == []
    with pytest.raises(ImageNotFound):
        store.resolve(image.id)
    for sub in ("blobs/sha256", "layers", "resolved", "refs"):
        assert os.listdir(os.path.join(store.root, sub)) == [], sub
