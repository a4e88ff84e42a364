"""An empty volume takes the image's files at its mount point, as Docker's do: with
their owners, modes, extended attributes, hard links and symlinks as they are; never
with nocopy, never into a volume that holds anything, never into a bind mount. The
image is read inside itself: a mount point or entry that is a symlink to a host path
must not bring a host file into the volume (the attacks are performed below)."""
import json
import os
import stat

import pytest

from test_lifecycle import cli, ok, one_line_error, reap  # noqa: F401

IMAGE = "fastbox-test/volume-fill"
FILES = """FROM busybox
RUN mkdir -p /data/sub /data/private \\
 && echo image-file > /data/f && chown 123:45 /data/f && chmod 640 /data/f \\
 && ln /data/f /data/hard && ln -s /etc/shadow /data/abs-link \\
 && ln -s ../../../../../../etc /data/up-link && ln -s {hostdir} /data/host-dir-link \\
 && mkfifo /data/fifo && chmod 604 /data/fifo \\
 && chown 7:8 /data/private && chmod 700 /data/private && echo deep > /data/sub/deep \\
 && chown 5:6 /data && chmod 750 /data && echo lower > /data/gone \\
 && ln -s /etc /etc-link && mkdir /etc/conf.d && echo image-conf > /etc/conf.d/a \\
 && ln -s {hostdir} /host-link && mkdir /host-parent \\
 && rmdir /host-parent && ln -s {hostdir} /host-parent
RUN rm /data/gone && echo upper > /data/sub/up
"""


@pytest.fixture(scope="module")
def hostdir(tmp_path_factory):
    """A host directory with a secret that no volume may ever receive."""
    d = tmp_path_factory.mktemp("host-secret")
    (d / "secret").write_text("host secret\n")
    return d


@pytest.fixture
def image(busybox, hostdir, fb_env, tmp_path):
    """Built in the session's image store (the build cache makes it once)."""
    ctx = tmp_path / "fill-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(FILES.format(hostdir=hostdir))
    ok(cli("build", "-t", IMAGE, ctx))
    return IMAGE


@pytest.fixture
def volumes():
    made = []
    yield made
    for name in made:
        cli("volume", "rm", "-f", name)


def mountpoint(name):
    return json.loads(ok(cli("volume", "inspect", name)).stdout)[0]["Mountpoint"]


def run(*args):
    return ok(cli("run", "--rm", *args))


def test_empty_volume_takes_the_images_files(image, volumes, hostdir):
    volumes.append("fill")
    out = run("-v", "fill:/data", image, "cat", "/data/f", "/data/sub/deep", "/data/sub/up").stdout
    assert out == "image-file\ndeep\nupper\n"
    d = mountpoint("fill")
    assert sorted(os.listdir(d)) == ["abs-link", "f", "fifo", "hard", "host-dir-link", "private",
                                    "sub", "up-link"]  # "gone" was whited out above
    st = os.lstat(os.path.join(d, "f"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (123, 45, 0o640)
    assert os.lstat(os.path.join(d, "hard")).st_ino == st.st_ino and st.st_nlink == 2
    assert os.readlink(os.path.join(d, "abs-link")) == "/etc/shadow"
    assert os.readlink(os.path.join(d, "up-link")) == "../../../../../../etc"
    assert os.readlink(os.path.join(d, "host-dir-link")) == str(hostdir)
    fifo = os.lstat(os.path.join(d, "fifo"))
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o604
    priv = os.lstat(os.path.join(d, "private"))
    assert (priv.st_uid, priv.st_gid, stat.S_IMODE(priv.st_mode)) == (7, 8, 0o700)
    root = os.lstat(d)  # the volume's root: the owner and mode of the image's /data
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (5, 6, 0o750)


def test_anonymous_volume_is_filled_too(image):
    assert run("-v", "/data", image, "cat", "/data/f").stdout == "image-file\n"


def test_a_volume_with_anything_in_it_is_never_touched(image, volumes):
    volumes.append("mine")
    ok(cli("volume", "create", "mine"))
    with open(os.path.join(mountpoint("mine"), "own"), "w") as f:
        f.write("mine\n")
    assert run("-v", "mine:/data", image, "ls", "/data").stdout == "own\n"
    volumes.append("filled")
    run("-v", "filled:/data", image, "sh", "-c", "echo changed > /data/f")
    # a second container gets the volume as the first left it, not the image's copy
    assert run("-v", "filled:/data", image, "cat", "/data/f").stdout == "changed\n"


@pytest.mark.parametrize("how", [["-v", "nc:/data:nocopy"], ["-v", "nc:/data:ro,nocopy"],
                                 ["--mount", "type=volume,src=nc,dst=/data,volume-nocopy"],
                                 ["--mount", "type=volume,src=nc,dst=/data,volume-nocopy=true"]])
def test_nocopy_leaves_it_empty(image, volumes, how):
    volumes.append("nc")
    assert run(*how, image, "ls", "-A", "/data").stdout == ""
    assert os.listdir(mountpoint("nc")) == []
    cid = ok(cli("create", *how, image)).stdout.strip()
    try:  # kept in the record, for the container's later starts
        assert "nocopy" in ok(cli("inspect", "-f", "{{json .HostConfig.Binds}}", cid)).stdout
    finally:
        ok(cli("rm", cid))


def test_bind_mounts_are_never_filled(image, tmp_path):
    empty = tmp_path / "bind"
    empty.mkdir()
    assert run("-v", f"{empty}:/data", image, "ls", "-A", "/data").stdout == ""
    assert os.listdir(empty) == []
    r = cli("run", "--rm", "-v", f"{empty}:/data:nocopy", image, "true")
    assert r.returncode == 125 and "nocopy is for volumes" in one_line_error(r)


def test_mount_point_that_is_a_symlink_is_refused_and_nothing_copied(image, volumes):
    """/etc-link -> /etc as the mount point: the start fails (the mount never follows
    it), and the volume gets nothing, of the image's /etc or the host's."""
    volumes.append("etc-attack")
    r = cli("run", "--rm", "-v", "etc-attack:/etc-link", image, "true")
    assert r.returncode == 125 and "symlink" in one_line_error(r)
    assert os.listdir(mountpoint("etc-attack")) == []


def test_symlink_above_the_mount_point_resolves_inside_the_image(image, volumes):
    """/etc-link/conf.d is the image's /etc/conf.d: its file, and nothing of the host."""
    volumes.append("conf")
    assert run("-v", "conf:/etc-link/conf.d", image, "cat", "/etc/conf.d/a").stdout == "image-conf\n"
    d = mountpoint("conf")
    assert os.listdir(d) == ["a"]
    with open(os.path.join(d, "a")) as f:
        assert f.read() == "image-conf\n"


@pytest.mark.parametrize("target", ["/host-link", "/host-parent/sub", "/data/host-dir-link"])
def test_symlinks_to_a_host_directory_bring_nothing_of_it(image, volumes, hostdir, target):
    """The mount point, or a directory above it, is a symlink to a real host directory:
    inside the image that path does not exist, so the volume stays empty (whether the
    mount then refuses the path is the mount's business), and the host's is untouched."""
    volumes.append("host-attack")
    r = cli("run", "--rm", "-v", f"host-attack:{target}", image, "true")
    assert r.returncode in (0, 125), r.stderr
    assert os.listdir(mountpoint("host-attack")) == []
    assert os.listdir(hostdir) == ["secret"]
    assert (hostdir / "secret").read_text() == "host secret\n"


def test_xattrs_whiteouts_and_opaque_dirs_of_the_layers(tmp_path):
    """The copy itself, over two layer directories in the store's format: extended
    attributes kept (overlay's own dropped), a whiteout and an opaque directory hide
    what is below them."""
    from fastbox.volumes import populate
    lower, upper, vol = tmp_path / "lower", tmp_path / "upper", tmp_path / "vol"
    for d in (lower / "data" / "opq", upper / "data" / "opq", vol / "_data"):
        d.mkdir(parents=True)
    (lower / "data" / "hidden").write_text("x")
    (lower / "data" / "opq" / "below").write_text("x")
    (lower / "data" / "kept").write_text("kept\n")
    os.setxattr(lower / "data" / "kept", "user.origin", b"lower")
    os.mknod(upper / "data" / "hidden", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(upper / "data" / "opq", "trusted.overlay.opaque", b"y")
    (upper / "data" / "opq" / "above").write_text("x")
    os.setxattr(upper / "data", "user.dir", b"upper")
    populate.from_image(str(vol / "_data"), [str(upper), str(lower)], "/data")
    got = vol / "_data"
    assert sorted(os.listdir(got)) == ["kept", "opq"]
    assert os.listdir(got / "opq") == ["above"]
    assert os.getxattr(got / "kept", "user.origin") == b"lower"
    assert os.getxattr(got, "user.dir") == b"upper"
    assert "trusted.overlay.opaque" not in os.listxattr(got / "opq")
