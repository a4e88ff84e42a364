"""A layer directory (overlay's upper format) -> an OCI layer tar: what tarfile reads back
is what the directory holds; whiteouts become .wh. entries before their siblings, opaque
directories .wh..wh..opq; overlay's xattrs are dropped and removed from the directory; the
merged view of a stack of layers hides what whiteouts and opaque directories hide."""
import hashlib
import os
import stat
import tarfile

from fastbox.images import layer_tar as layer
from fastbox.images.layer_view import LayerView


def _make_upper(d):
    os.makedirs(d / "dir/sub")
    (d / "dir/file").write_bytes(b"x" * 1000)
    os.chown(d / "dir/file", 1234, 5678)
    os.chmod(d / "dir/file", 0o4755)  # after chown, which clears set-uid
    long = "l" * 120 + "/" + "é" * 30
    os.makedirs(d / long)
    (d / long / "f").write_text("long")
    os.symlink("../dir/file", d / "dir/link")
    os.link(d / "dir/file", d / "dir/hard")
    os.mkfifo(d / "dir/fifo")
    os.mknod(d / "dir/gone", stat.S_IFCHR, os.makedev(0, 0))
    os.mknod(d / "zzz-gone", stat.S_IFCHR, os.makedev(0, 0))
    os.makedirs(d / "opq")
    os.setxattr(d / "opq", "trusted.overlay.opaque", b"y")
    os.setxattr(d / "dir", "trusted.overlay.origin", b"junk")
    os.setxattr(d / "dir/file", "user.keep", b"kept")
    (d / "opq/new").write_text("new")
    return long


def test_tar_round_trip(tmp_path):
    upper = tmp_path / "upper"
    long = _make_upper(upper)
    out = tmp_path / "layer.tar"
    digest, size = layer.write_tar(str(upper), str(out))
    data = out.read_bytes()
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    with tarfile.open(out) as t:
        members = t.getmembers()
        names = [m.name for m in members]
        by = {m.name: m for m in members}
        assert t.extractfile("dir/file").read() == b"x" * 1000
        assert t.extractfile(f"{long}/f").read() == b"long"
    assert names.index("zzz-gone".replace("zzz-gone", ".wh.zzz-gone")) < names.index("dir")
    assert names.index("dir/.wh.gone") < names.index("dir/fifo")
    assert names[names.index("opq") + 1] == "opq/.wh..wh..opq"
    f = by["dir/file"]
    assert (f.mode, f.uid, f.gid, f.size) == (0o4755, 1234, 5678, 1000)
    assert f.pax_headers.get("SCHILY.xattr.user.keep") == "kept"
    assert by["dir/hard"].islnk() and by["dir/hard"].linkname == "dir/file"
    assert by["dir/link"].issym() and by["dir/link"].linkname == "../dir/file"
    assert by["dir/fifo"].isfifo() and long in by
    assert not any("overlay" in k for m in members for k in m.pax_headers)
    assert "trusted.overlay.origin" not in os.listxattr(upper / "dir")  # stripped in place
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"  # kept: the store's format
    assert len(data) % tarfile.RECORDSIZE == 0


def test_layer_view_hides_what_upper_layers_delete(tmp_path):
    low, up = tmp_path / "low", tmp_path / "up"
    for p in ("a/x", "a/y", "b/z", "c"):
        (low / p).parent.mkdir(parents=True, exist_ok=True)
        (low / p).write_text(p)
    (up / "a").mkdir(parents=True)
    os.mknod(up / "a/x", stat.S_IFCHR, os.makedev(0, 0))
    (up / "a/new").write_text("n")
    (up / "b").mkdir()
    os.setxattr(up / "b", "trusted.overlay.opaque", b"y")
    os.symlink("a", up / "link")
    view = LayerView([str(up), str(low)])
    assert view.listdir("a") == ["new", "y"]
    assert view.find("a/x") is None and view.find("a/y")[0] == str(low / "a/y")
    assert view.listdir("b") == [] and view.find("b/z") is None
    assert view.listdir("") == ["a", "b", "c", "link"]
    assert view.resolve("link/y") == "a/y"


def test_the_hash_alone_is_the_tar_write_tar_writes(tmp_path):
    """A build step hashes its tar without writing it (digest_of; TarStream without a
    file): the store writes it later, and it must be those very bytes."""
    upper = tmp_path / "upper"
    _make_upper(upper)
    os.setxattr(upper / "dir/file", "user.b", b"2")  # pax records in name order
    for xattrs in (True, False, "copy"):
        out = tmp_path / f"layer-{xattrs}.tar"
        assert layer.digest_of(str(upper), xattrs, strip=False) == \
            layer.write_tar(str(upper), str(out), xattrs, strip=False)
    with tarfile.open(tmp_path / "layer-copy.tar") as t:
        kept = {m.name: [k for k in m.pax_headers if k.startswith("SCHILY.xattr.")] for m in t}
    kept = {name: keys for name, keys in kept.items() if keys}
    assert kept == {"dir/file": ["SCHILY.xattr.user.b", "SCHILY.xattr.user.keep"],
                    "dir/hard": ["SCHILY.xattr.user.b", "SCHILY.xattr.user.keep"]}


def test_a_tar_stream_knows_when_it_left_the_tars_order(tmp_path):
    def stream(*names):
        s = layer.TarStream()
        for name in names:
            s.header(name, 0o755, 0, 0, 0, 0, tarfile.DIRTYPE)
        s.close()
        return s.canonical
    assert stream("a", "a/b", "a/b/c", "a-b", "b")  # each level sorted, parents first
    assert not stream("a-b", "a/b")  # "a" < "a-b" at the first level: a/b comes first
    assert not stream("a", "b", "a/c")  # a later source back in an earlier directory
    assert not stream("a", "a")  # a name twice: the second replaced the first
    d = tmp_path / "d"
    for name in ("a", "a/b", "a-b"):
        os.mkdir(d / name) if d.exists() else os.makedirs(d / name)
        os.utime(d / name, (0, 0))
    s = layer.TarStream(str(tmp_path / "s.tar"))
    for name in ("a", "a/b", "a-b"):
        s.header(name, 0o755, 0, 0, 0, 0, tarfile.DIRTYPE)
    got = s.close()
    for name in ("a", "a/b", "a-b"):
        os.chmod(d / name, 0o755)
        os.chown(d / name, 0, 0)
        os.utime(d / name, (0, 0))
    assert s.canonical and got == layer.digest_of(str(d), xattrs=False)
