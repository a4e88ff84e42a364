"""Layer unpacking against real tarballs on the real filesystem (run as root)."""
import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from fastbox.errors import DigestMismatch, ImageError, UnsafeLayer
from fastbox.images.unpack import diff_id, unpack_layer

MTIME = 1_600_000_000


def member(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644, uid=0, gid=0, **extra):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, link, mode, uid, gid
    info.mtime = extra.pop("mtime", MTIME)
    for key, value in extra.items():
        setattr(info, key, value)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def d(name, **kw):
    return member(name, tarfile.DIRTYPE, mode=kw.pop("mode", 0o755), **kw)


def sym(name, target):
    return member(name, tarfile.SYMTYPE, link=target, mode=0o777)


def hard(name, target):
    return member(name, tarfile.LNKTYPE, link=target)


def tar_bytes(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


@pytest.fixture
def box(tmp_path):
    """tmp/box/layer is the destination; tmp/box/outside must stay empty whatever happens."""
    (tmp_path / "box" / "outside").mkdir(parents=True)
    return tmp_path / "box"


def unpack(box, *members, compress=False):
    data = tar_bytes(*members)
    path = box.parent / "layer.tar"
    path.write_bytes(gzip.compress(data) if compress else data)
    return unpack_layer(str(path), str(box / "layer")), data


@pytest.fixture(params=["dotdot", "absolute", "inner_dotdot", "symlink_root", "symlink_parent",
                        "symlink_inside", "hardlink_absolute", "hardlink_dotdot",
                        "hardlink_to_symlink", "hardlink_to_dir", "whiteout_dotdot",
                        "whiteout_dot", "replace_root"])
def hostile(request, box):
    outside = str(box / "outside")
    return {
        "dotdot": [member("../outside/x", data=b"pwned")],
        "absolute": [member(outside + "/x", data=b"pwned")],
        "inner_dotdot": [d("a"), member("a/../../outside/x", data=b"pwned")],
        "symlink_root": [sym("evil", "/"), member("evil" + outside + "/x", data=b"pwned")],
        "symlink_parent": [sym("d", ".."), member("d/outside/x", data=b"pwned")],
        # Even a symlink that stays inside is never walked through.
        "symlink_inside": [d("real"), sym("lnk", "real"), member("lnk/x", data=b"x")],
        "hardlink_absolute": [hard("passwd", "/etc/passwd")],
        "hardlink_dotdot": [hard("x", "../outside/x")],
        "hardlink_to_symlink": [sym("s", "/etc/passwd"), hard("h", "s")],
        "hardlink_to_dir": [d("dir"), hard("h", "dir")],
        "whiteout_dotdot": [d("a"), member("a/.wh...")],
        "whiteout_dot": [member(".wh..")],
        "replace_root": [member("./", data=b"x")],
    }[request.param]


def test_hostile_layers_are_refused_and_write_nothing(box, hostile):
    passwd = os.stat("/etc/passwd")
    with pytest.raises(UnsafeLayer, match=r"^unsafe layer entry '[^\n]*'"):
        unpack(box, *hostile)
    assert sorted(os.listdir(box)) == ["outside"]  # the partial layer dir is gone too
    assert os.listdir(box / "outside") == []
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink


def test_later_entry_replaces_a_symlink_instead_of_writing_through_it(box):
    unpack(box, sym("f", "../outside/f"), member("f", data=b"inside"),
           sym("dir", "../outside"), d("dir"), member("dir/g", data=b"g"))
    layer = box / "layer"
    assert (layer / "f").read_bytes() == b"inside" and not (layer / "f").is_symlink()
    assert (layer / "dir").is_dir() and not (layer / "dir").is_symlink()
    assert os.listdir(box / "outside") == []


def test_metadata_is_preserved(box):
    unpack(box,
           d("usr", uid=1234, gid=5678, mode=0o750, mtime=MTIME - 100),
           d("usr/bin"),
           member("usr/bin/su", data=b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678,
                  pax_headers={"SCHILY.xattr.user.fastbox": "yes",
                               "SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
           sym("usr/bin/link", "/usr/bin/su"),
           hard("usr/bin/su2", "usr/bin/su"),
           member("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
           member("dev/loop0", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=0),
           member("run/fifo", tarfile.FIFOTYPE, mode=0o620),
           d("tmp", mode=0o1777))
    layer = box / "layer"
    su = os.lstat(layer / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    assert (su.st_uid, su.st_gid, su.st_mtime) == (1234, 5678, MTIME)
    assert os.getxattr(layer / "usr/bin/su", "user.fastbox") == b"yes"
    assert "trusted.overlay.redirect" not in os.listxattr(layer / "usr/bin/su")
    assert os.readlink(layer / "usr/bin/link") == "/usr/bin/su"
    assert os.lstat(layer / "usr/bin/link").st_mtime == MTIME
    assert os.lstat(layer / "usr/bin/su2").st_ino == su.st_ino and su.st_nlink == 2
    usr = os.lstat(layer / "usr")
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 1234, 5678)
    assert usr.st_mtime == MTIME - 100  # set after its children were written
    null, loop = os.lstat(layer / "dev/null"), os.lstat(layer / "dev/loop0")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert stat.S_ISFIFO(os.lstat(layer / "run/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(layer / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(layer / "run").st_mode) == 0o755  # implied parent


def test_whiteouts_become_overlay_whiteouts(box):
    unpack(box, d("etc"), member("etc/.wh.motd"), d("var/cache"),
           member("var/cache/.wh..wh..opq"), member(".wh..wh.plnk"))
    layer = box / "layer"
    motd = os.lstat(layer / "etc/motd")
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == os.makedev(0, 0)
    assert not os.path.lexists(layer / "etc/.wh.motd")
    assert os.getxattr(layer / "var/cache", "trusted.overlay.opaque") == b"y"
    assert os.listdir(layer / "var/cache") == []
    assert sorted(os.listdir(layer)) == ["etc", "var"]


@pytest.mark.parametrize("compress", [False, True])
def test_diff_id_is_sha256_of_the_uncompressed_tar(box, compress):
    got, data = unpack(box, d("a"), member("a/b", data=b"hello" * 1000), compress=compress)
    assert got == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (box / "layer/a/b").read_bytes() == b"hello" * 1000
    assert diff_id(str(box.parent / "layer.tar")) == got


def test_gzip_file_object_and_trailing_padding(box):
    data = tar_bytes(member("f", data=b"x")) + b"\0" * 4096  # extra zero records, still hashed
    got = unpack_layer(io.BytesIO(gzip.compress(data)), str(box / "layer"))
    assert got == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (box / "layer/f").read_bytes() == b"x"


def test_expected_diff_id_mismatch_removes_the_layer(box):
    path = box.parent / "layer.tar"
    path.write_bytes(tar_bytes(member("f", data=b"x")))
    with pytest.raises(DigestMismatch):
        unpack_layer(str(path), str(box / "layer"), "sha256:" + "0" * 64)
    assert not (box / "layer").exists()


def test_corrupt_tarball_is_an_image_error(box):
    data = gzip.compress(tar_bytes(member("f", data=b"x" * 100000)))
    path = box.parent / "layer.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="invalid layer tarball"):
        unpack_layer(str(path), str(box / "layer"))
    assert not (box / "layer").exists()


def test_duplicate_entries_last_wins(box):
    unpack(box, member("f", data=b"one"), d("x"), member("x/inner", data=b"i"),
           member("f", data=b"two"), member("x", data=b"now a file"), hard("h", "f"))
    layer = box / "layer"
    assert (layer / "f").read_bytes() == b"two"
    assert (layer / "x").read_bytes() == b"now a file"
    assert os.stat(layer / "h").st_ino == os.stat(layer / "f").st_ino


def test_hardlink_to_a_replaced_file_is_refused(box):
    with pytest.raises(UnsafeLayer, match="not an earlier regular file"):
        unpack(box, member("f", data=b"x"), sym("f", "/etc/shadow"), hard("h", "f"))


def test_many_directories_do_not_exhaust_fds(box):
    dirs = [d(f"d{i}/sub") for i in range(600)]
    files = [member(f"d{i}/sub/f", data=b"x") for i in range(600)]
    unpack(box, *dirs, *files)
    assert (box / "layer/d599/sub/f").read_bytes() == b"x"
