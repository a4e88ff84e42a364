"""`commit`: the container's writable layer becomes a new layer on its image, with
overlay's whiteouts in the layer format (a deleted file -> .wh.NAME, a directory made
anew -> .wh..wh..opq, no overlay xattrs, whiteouts before their siblings), the -c
changes in its config and -m in its history."""
import json
import os
import stat
import tarfile

import pytest

from test_lifecycle import cli, one_line_error, reap  # noqa: F401
from test_lifecycle import ok  # noqa: F401


@pytest.fixture
def changed(busybox):
    script = ("echo new > /new; rm /bin/vi; rm -rf /usr; mkdir /usr; echo x > /usr/only; "
              "ln -s /new /link; ln /new /hard; touch /go; sleep 1000")
    # its /etc/hosts and hostname are bound from its own directory: no commit keeps them
    ref = ok(cli("run", "-d", "--network", "none", "busybox", "sh", "-c", script)).stdout.strip()
    ok(cli("exec", ref, "sh", "-c", "while [ ! -e /go ]; do sleep 0.02; done"))
    made = []
    yield ref, made
    cli("rm", "-f", ref)
    for image in made:  # the image store is the session's: leave it as it was
        cli("rmi", image)


def top_layer(ref):
    from fastbox.images.store import ImageStore
    store = ImageStore()
    image = store.resolve(ref)
    manifest = json.loads(store.read_blob(image.manifest_digest))
    config = json.loads(store.read_blob(manifest["config"]["digest"]))
    return store.ensure_blob(manifest["layers"][-1]["digest"]), config


def test_commit_makes_an_image_of_the_changes(changed):
    changed, made = changed
    made.append("committed:v1")
    r = ok(cli("commit", "-m", "my change", "-a", "me", "-c", 'CMD ["cat", "/new"]',
               "-c", "ENV GREETING=hi", changed, "committed:v1"))
    assert r.stdout.startswith("sha256:") and len(r.stdout.strip()) == 71
    assert ok(cli("run", "--rm", "committed:v1")).stdout == "new\n"
    out = ok(cli("run", "--rm", "committed:v1", "sh", "-c",
                 "ls /bin/vi 2>&1; ls /usr; readlink /link; echo $GREETING")).stdout
    assert out.splitlines() == ["ls: /bin/vi: No such file or directory", "only", "/new", "hi"]
    # the layer is its directory, copied once from the upper (hardlinks kept); its tar is
    # written when something needs it
    from fastbox.images.store import ImageStore
    store = ImageStore()
    image = store.resolve("committed:v1")
    diff_id = json.loads(store.read_blob(json.loads(store.read_blob(
        image.manifest_digest))["config"]["digest"]))["rootfs"]["diff_ids"][-1]
    assert not os.path.exists(store.blob_path(diff_id))
    layer = store.layer_path(diff_id)
    assert os.stat(f"{layer}/hard").st_ino == os.stat(f"{layer}/new").st_ino
    assert stat.S_ISCHR(os.lstat(f"{layer}/bin/vi").st_mode)  # overlay's whiteout
    assert os.getxattr(f"{layer}/usr", "trusted.overlay.opaque") == b"y"
    assert not [n for n in os.listxattr(f"{layer}/usr") if n != "trusted.overlay.opaque"]
    path, config = top_layer("committed:v1")
    assert config["history"][-1]["comment"] == "my change" and config["author"] == "me"
    assert config["config"]["Cmd"] == ["cat", "/new"]
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert "bin/.wh.vi" in names and "usr/.wh..wh..opq" in names
    assert "bin/vi" not in names and "bin/busybox" not in names  # only what changed
    assert not {"etc/hosts", "etc/resolv.conf", "etc/hostname"} & set(names)
    assert names.index("usr/.wh..wh..opq") < names.index("usr/only")
    bin_entries = [n for n in names if n.startswith("bin/")]
    assert bin_entries[0] == "bin/.wh.vi"  # whiteouts before their siblings
    assert not any("overlay" in k for m in members for k in m.pax_headers), "an overlay xattr"
    link = next(m for m in members if m.name == "link")
    assert link.issym() and link.linkname == "/new"
    hard = next(m for m in members if m.name == "new")
    assert hard.islnk() and hard.linkname == "hard"
    # the container runs on after the commit (paused only meanwhile)
    assert json.loads(ok(cli("inspect", changed)).stdout)[0]["State"]["Status"] == "running"


def test_commit_without_a_name_is_dangling_and_bad_changes_are_one_line(changed):
    changed, made = changed
    r = ok(cli("commit", changed))
    image_id = r.stdout.strip()
    made.append(image_id)
    assert ok(cli("run", "--rm", image_id, "cat", "/new")).stdout == "new\n"
    r = cli("commit", "-c", "RUN rm -rf /", changed, "nope")
    assert r.returncode != 0 and "--change" in one_line_error(r)
    r = cli("commit", "nosuch")
    assert r.returncode != 0 and "no such container" in one_line_error(r)
