"""Whiteouts below something that is no longer a directory in the same layer: umoci writes
`d` (now a file) and then `d/.wh.f` for what the old directory held. Nothing below a
non-directory can be hidden, and nothing may be written through it."""
import io
import os
import stat
import tarfile

import pytest

from fastbox.errors import UnsafeLayer
from fastbox.images.unpack import unpack_layer


def layer(path, *entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
    return str(path)


def test_whiteout_below_a_file_of_the_same_layer_is_moot(tmp_path):
    src = layer(tmp_path / "l.tar", ("d", "file", b"now a file\n"), ("d/.wh.f", "file", b""),
                ("e", "file", b"e"), ("e/.wh..wh..opq", "file", b""))
    unpack_layer(src, str(tmp_path / "out"))
    assert (tmp_path / "out" / "d").read_bytes() == b"now a file\n"
    assert sorted(os.listdir(tmp_path / "out")) == ["d", "e"]


def test_whiteout_below_a_symlink_writes_nothing_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    src = layer(tmp_path / "l.tar", ("s", "symlink", str(outside)), ("s/.wh.victim", "file", b""),
                ("s/.wh..wh..opq", "file", b""))
    unpack_layer(src, str(tmp_path / "out"))
    assert (outside / "victim").read_text() == "keep"
    assert "trusted.overlay.opaque" not in os.listxattr(outside)


def test_whiteout_in_a_missing_parent_makes_the_parent(tmp_path):
    src = layer(tmp_path / "l.tar", ("a/b/.wh.c", "file", b""))
    unpack_layer(src, str(tmp_path / "out"))
    st = os.lstat(tmp_path / "out" / "a/b/c")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_bad_whiteout_names_are_refused_even_below_a_file(tmp_path):
    src = layer(tmp_path / "l.tar", ("d", "file", b"x"), ("d/.wh..", "file", b""))
    with pytest.raises(UnsafeLayer, match="whiteout of"):
        unpack_layer(src, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_links_and_padding_through_the_forward_only_stream(tmp_path, fmt):
    """Layers are read by tarfile's random-access mode over a stream that only seeks
    forward: long-name records, links and trailing padding must all come through."""
    import gzip
    long_dir = "d" * 60 + "/" + "e" * 60
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in [(long_dir + "/f.txt", b"long\n"), ("small", b"s" * 70_000)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("hl")
        link.type, link.linkname = tarfile.LNKTYPE, "small"
        tar.addfile(link)
    data = buf.getvalue() + b"\0" * 10240  # writers pad to their record size, or more
    path = tmp_path / "l.tar.gz"
    path.write_bytes(gzip.compress(data))
    import hashlib
    got = unpack_layer(str(path), str(tmp_path / "out"), "sha256:" + hashlib.sha256(data).hexdigest())
    assert got == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out" / long_dir / "f.txt").read_bytes() == b"long\n"
    assert os.stat(tmp_path / "out" / "hl").st_ino == os.stat(tmp_path / "out" / "small").st_ino


def _gz(data):
    import gzip
    return gzip.compress(data, mtime=0)


def _one_file_tar(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("shape", ["members", "padding", "bomb-like"])
def test_gzip_streams_as_gzip_writes_them(tmp_path, shape):
    """Layers are inflated by zlib in a thread of their own: several gzip members, zero
    padding after the last, and output far larger than the input must all come through."""
    import hashlib
    data = _one_file_tar("zeros" if shape == "bomb-like" else "f",
                         bytes(48 << 20) if shape == "bomb-like" else os.urandom(300_000))
    if shape == "members":
        blob = _gz(data[:100_000]) + _gz(data[100_000:])
    elif shape == "padding":
        blob = _gz(data) + bytes(4096)
    else:
        blob = _gz(data)
    (tmp_path / "l.gz").write_bytes(blob)
    got = unpack_layer(str(tmp_path / "l.gz"), str(tmp_path / "out"))
    assert got == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "garbage-after", "flipped"])
def test_damaged_gzip_is_an_image_error(tmp_path, damage):
    from fastbox.errors import ImageError
    blob = _gz(_one_file_tar("f", os.urandom(200_000)))
    blob = {"truncated": blob[:len(blob) // 2], "garbage-after": blob + b"garbage",
            "flipped": blob[:-6] + bytes([blob[-6] ^ 1]) + blob[-5:]}[damage]
    (tmp_path / "l.gz").write_bytes(blob)
    with pytest.raises(ImageError):
        unpack_layer(str(tmp_path / "l.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
