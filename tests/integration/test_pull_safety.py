"""A pull that goes wrong leaves the store as it was: a blob corrupted in the registry's own
storage, a pull SIGKILLed in the middle of a download (and the next pull resuming it), layers
crafted to write outside their directory."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import fastbox

pytest.register_assert_rewrite("conftest_registry")
from conftest_registry import (Layout, StallingProxy, build_big, busybox_layer,  # noqa: E402
                               skopeo_push, tar_of)
from fastbox.errors import ImageNotFound  # noqa: E402
from fastbox.images.store import ImageStore  # noqa: E402
from test_lifecycle import ok  # noqa: F401

pytest_plugins = ["conftest_registry"]
FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def cli(*args):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def listing(store):
    """What the store holds (its scratch area, ingest/, aside)."""
    out = {}
    for sub in ("blobs/sha256", "layers", "resolved", "refs"):
        path = store / sub
        out[sub] = sorted(os.listdir(path)) if path.exists() else []
    index = store / "index.json"
    out["index"] = json.loads(index.read_text()) if index.exists() else None
    return out


def seed(store_root, tmp_path):
    """Something in the store that must survive whatever a failed pull does."""
    tarball = tmp_path / "seed.tar"
    tarball.write_bytes(busybox_layer())
    ImageStore().import_tar(str(tarball), "fbtest/seed:1")


def manifest_of(registry, repo, tag):
    import httpx
    r = httpx.get(f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    r.raise_for_status()
    return r.json(), r.headers["docker-content-digest"]


@pytest.mark.parametrize("damage", ["flipped", "truncated", "manifest"])
def test_corrupt_blob_in_the_registry_fails_cleanly(registry, own_store, tmp_path, damage):
    layout = Layout(str(tmp_path / "layout"))
    payload = tar_of([("payload", "file", os.urandom(64 << 10), 0o644)])
    layout.image([busybox_layer(), payload], tag="t", compress="gzip")
    ref = f"{registry.host}/fbtest/corrupt-{damage}:v1"
    skopeo_push(layout.path, "t", ref, "--preserve-digests")
    manifest, manifest_digest = manifest_of(registry, f"fbtest/corrupt-{damage}", "v1")
    victim = registry.blob_data(manifest_digest if damage == "manifest" else manifest["layers"][1]["digest"])
    original = open(victim, "rb").read()
    seed(own_store, tmp_path)
    before = listing(own_store)

    with open(victim, "r+b") as f:
        if damage == "truncated":
            f.truncate(len(original) // 2)
        else:
            f.seek(len(original) // 2)
            f.write(bytes([original[len(original) // 2] ^ 0xFF]))
    try:
        r = cli("pull", ref)
        assert r.returncode == 1, (r.stdout, r.stderr)
        line = r.stderr.strip()
        assert line.startswith("fastbox: ") and "\n" not in line
        assert "digest" in line and ("expected" in line or "announced" in line), line
        assert listing(own_store) == before
        assert [n for n in os.listdir(own_store / "ingest") if not n.endswith(".lock")] == [] \
            if (own_store / "ingest").exists() else True
        with pytest.raises(ImageNotFound):
            ImageStore().resolve(ref)
    finally:
        with open(victim, "wb") as f:
            f.write(original)
    ok(cli("pull", ref))  # the registry is repaired: so is the pull
    assert fastbox.run(ref, ["/bin/sh", "-c", "wc -c < /payload"], capture_output=True).stdout.strip() == b"65536"


def test_killed_pull_leaves_the_store_consistent_and_the_next_pull_resumes(registry, own_store, tmp_path):
    big_size = 8 << 20
    layout = build_big(str(tmp_path), big_size)
    skopeo_push(layout, "big", f"{registry.host}/fbtest/big:v1", "--preserve-digests")
    manifest, _ = manifest_of(registry, "fbtest/big", "v1")
    big_blob = manifest["layers"][1]["digest"]
    seed(own_store, tmp_path)
    before = listing(own_store)

    proxy = StallingProxy(registry.host, stall_after=3 << 20)
    ref = f"{proxy.host}/fbtest/big:v1"
    partial = own_store / "ingest" / ("sha256-" + big_blob[7:])
    try:
        puller = subprocess.Popen([FASTBOX, "pull", ref], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not (partial.exists() and partial.stat().st_size >= 3 << 20):
                assert time.monotonic() < deadline, "the pull never got 3 MiB into the big layer"
                assert puller.poll() is None, "the pull ended before it could be killed"
                time.sleep(0.005)
        finally:
            puller.send_signal(signal.SIGKILL)
            puller.wait()

        # Killed mid-download: nothing committed, every reader and writer still works.
        assert listing(own_store) == before
        with pytest.raises(ImageNotFound):
            ImageStore().resolve(ref)
        assert ok(cli("images", "--format", "json")).stdout.count('"Tag":"1"') == 1
        assert ImageStore().resolve("fbtest/seed:1")

        proxy.release()
        r = ok(cli("pull", ref))
        assert "Pull complete" in r.stdout
        resumed = [int(rng.split("=")[1].rstrip("-")) for rng in proxy.ranges if rng]
        assert max(resumed) >= 3 << 20  # the big layer went on from where the killed pull was
    finally:
        proxy.stop()
    image = ImageStore().resolve(ref)
    out = fastbox.run(ref, ["/bin/sh", "-c", "wc -c < /blob.bin"], capture_output=True).stdout
    assert out.strip() == str(big_size).encode()
    assert os.listdir(own_store / "ingest") == []  # the dead pull's session swept, the partial used
    assert len(image.layer_dirs) == 2


HOSTILE_LAYERS = {
    "dotdot": lambda out: [(f"../../../../../../../../..{out}/pwned", "file", b"x", 0o644)],
    "absolute": lambda out: [(f"{out}/pwned", "file", b"x", 0o644)],
    "symlink-planted-then-followed": lambda out: [("esc", "symlink", str(out), 0o777),
                                                  ("esc/pwned", "file", b"x", 0o644)],
    "relative-symlink-dir": lambda out: [("up", "symlink", "../../../../../../../.." + str(out), 0o777),
                                         ("up/pwned", "file", b"x", 0o644)],
    "hardlink-to-host-file": lambda out: [("passwd", "hardlink", "/etc/passwd", 0o644)],
    "hardlink-dotdot": lambda out: [("h", "hardlink", "../../../../etc/passwd", 0o644)],
    "whiteout-of-dotdot": lambda out: [("a", "dir", None, 0o755), ("a/.wh..", "file", b"", 0o644)],
    "opaque-through-symlink-then-file": lambda out: [("s", "symlink", str(out), 0o777),
                                                     ("s/.wh..wh..opq", "file", b"", 0o644),
                                                     ("s/x", "file", b"x", 0o644)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LAYERS))
def test_hostile_layer_from_a_registry_is_refused(case, registry, own_store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    layout = Layout(str(tmp_path / "layout"))
    layout.image([busybox_layer(), tar_of(HOSTILE_LAYERS[case](outside))], tag="t", compress="gzip")
    ref = f"{registry.host}/fbtest/hostile-{case}:v1"
    skopeo_push(layout.path, "t", ref, "--preserve-digests")
    seed(own_store, tmp_path)
    before = listing(own_store)
    passwd = os.stat("/etc/passwd")

    r = cli("pull", ref)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("fastbox: unsafe layer entry"), r.stderr
    assert os.listdir(outside) == []
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink
    assert listing(own_store) == before
    assert os.listdir(own_store / "ingest") == []


def test_concurrent_pulls_of_one_image_both_succeed(pushed, own_store):
    """Two processes pulling the same layers at once: no deadlock (a held download is not
    waited for), one copy of everything, nothing left in ingest/."""
    procs = [subprocess.Popen([FASTBOX, "pull", "-q", pushed["multi"]], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert (p.returncode, out) == (0, pushed["multi"] + "\n"), err
    store = ImageStore()
    assert [name for name, _ in store.entries()] == [pushed["multi"]]
    assert len(os.listdir(own_store / "layers")) == 4
    assert os.listdir(own_store / "ingest") == []
    assert fastbox.run(pushed["multi"], capture_output=True).stdout == b"hello from multi\n"
