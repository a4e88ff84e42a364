"""Mount targets and mask sources are opened through fds (the CVE-2025-31133 pattern, and
CVE-2021-30465's family): nothing a container's image or volumes contain can make the
runtime bind something else over a mask, or mount or create anything on a host path.

Each attack aims at a host file or directory the container was never given: an fd this
test process holds (not inheritable), which the container child still has while it
builds the filesystem, reached through a /proc/self/fd/N magic link. After the start (or
its refusal) nothing on the host changed, the masks still show nothing, and /proc/sys
is mounted read-only (read from mountinfo: nothing sensitive is ever written to).
"""
import io
import os
import tarfile

import pytest

import fastbox
from fastbox.errors import StartError

MASK = "/proc/keys"  # one of rootfs.MASKED_FILES on every kernel with keys
SECRET = b"host secret\n"


def image_with(tmp_path, name, symlinks=(), dirs=()):
    """busybox plus the given (path, target) symlinks and directories, as an image."""
    tar_path = tmp_path / f"{name}.tar"
    with tarfile.open(tar_path, "w") as t:
        for d in ("bin", *dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        t.add("/bin/busybox", "bin/busybox")
        for path, target in [("bin/sh", "busybox"), *symlinks]:
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    from fastbox.images.store import ImageStore
    ref = f"fastbox-test/mount-races-{name}:latest"
    ImageStore().import_tar(str(tar_path), ref)
    return ref


@pytest.fixture
def host(tmp_path):
    """A host directory and a secret file in it, held open by this process only (the
    container child inherits them; its program never does)."""
    d = tmp_path / "host-only"
    d.mkdir()
    secret = d / "secret"
    secret.write_bytes(SECRET)
    dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    file_fd = os.open(secret, os.O_RDONLY)
    yield type("Host", (), {"dir": d, "secret": secret, "dir_fd": dir_fd, "file_fd": file_fd})
    os.close(dir_fd)
    os.close(file_fd)


def host_unchanged(host):
    assert host.secret.read_bytes() == SECRET, "the container wrote a host file"
    assert sorted(os.listdir(host.dir)) == ["secret"], f"host dir changed: {os.listdir(host.dir)}"


CHECK = (f"echo pwned > {MASK} 2>/dev/null; echo mask=$(cat {MASK} | wc -c); "
         "echo sys-ro=$(grep -c ' /proc/sys ro,' /proc/self/mountinfo)")


def started_safely(run):
    """The container ran CHECK: its mask stayed empty and /proc/sys read-only."""
    out = run.stdout.decode()
    assert "mask=0\n" in out and "sys-ro=1\n" in out, out


def run_or_refused(image, script, **opts):
    """The run's result, or None if the start was refused (with a StartError)."""
    try:
        return fastbox.run(image, ["sh", "-c", script], capture_output=True, **opts)
    except StartError as e:
        return e


# ------------------------------------------------------------------ mask sources

@pytest.mark.parametrize("null_target", ["fd", "/proc/sys/kernel/core_pattern"])
def test_volume_at_dev_cannot_choose_what_masks_bind(busybox, host, tmp_path, null_target):
    """-v HOST:/dev whose `null` is a symlink. To core_pattern: main bound it over every
    mask. To a host fd: main failed only because the kernel will not bind from a mount
    outside the namespace (the old root is detached by then); kept as a regression test."""
    vol = tmp_path / "devvol"
    vol.mkdir()
    target = f"/proc/self/fd/{host.file_fd}" if null_target == "fd" else null_target
    os.symlink(target, vol / "null")
    r = run_or_refused("busybox", CHECK, volumes=[f"{vol}:/dev"])
    host_unchanged(host)
    if not isinstance(r, StartError):  # refused now: "would hide the container's devices"
        started_safely(r)
    assert os.listdir(vol) == ["null"], "fastbox wrote into the volume"


def test_volume_on_dev_null_cannot_unmask(busybox, tmp_path):
    """A file volume at /dev/null: main bound the volume over every mask."""
    f = tmp_path / "not-null"
    f.write_bytes(b"seen through the mask\n")
    r = run_or_refused("busybox", CHECK, volumes=[f"{f}:/dev/null"])
    if not isinstance(r, StartError):  # refused now: "is a device node"
        started_safely(r)


def test_image_dev_null_symlink_is_not_used(busybox, tmp_path):
    """An image whose /dev/null points at core_pattern: /dev is our own tmpfs, so main
    was not vulnerable; kept as a regression test."""
    image = image_with(tmp_path, "devnull", symlinks=[("dev/null", "/proc/sys/kernel/core_pattern")],
                       dirs=["dev"])
    r = fastbox.run(image, ["sh", "-c", CHECK + "; ls -l /dev/null"], capture_output=True)
    started_safely(r)
    assert r.stdout.decode().split("\n")[-2].startswith("crw-rw-rw-"), r.stdout


# ------------------------------------------------------------------ volume targets

@pytest.mark.parametrize("kind", ["dir", "file"])
def test_image_symlink_cannot_send_a_volume_to_the_host(busybox, host, tmp_path, kind):
    """An image's /data is a magic link to a host directory: main made the volume's
    mount point there (mkdir or an empty file: a write on the host)."""
    image = image_with(tmp_path, f"magic-{kind}",
                       symlinks=[("data", f"/proc/self/fd/{host.dir_fd}")])
    src = tmp_path / "src"
    if kind == "dir":
        src.mkdir()
    else:
        src.write_bytes(b"volume\n")
    r = run_or_refused(image, "true", volumes=[f"{src}:/data/made-on-host"])
    host_unchanged(host)
    assert isinstance(r, StartError), f"started: {r}"


def test_shared_volume_symlink_cannot_send_a_volume_to_the_host(busybox, host, tmp_path):
    """A symlink in one volume (say, made by another container sharing it) is the path
    to the next volume's target: as above, through the volume instead of the image."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.symlink(f"/proc/self/fd/{host.dir_fd}", shared / "link")
    src = tmp_path / "src"
    src.mkdir()
    r = run_or_refused("busybox", "true", volumes=[f"{shared}:/a", f"{src}:/a/link/sub"])
    host_unchanged(host)
    assert isinstance(r, StartError), f"started: {r}"


def test_tmpfs_target_cannot_reach_the_host(busybox, host, tmp_path):
    image = image_with(tmp_path, "magic-tmpfs", symlinks=[("t", f"/proc/self/fd/{host.dir_fd}")])
    r = run_or_refused(image, "true", tmpfs=["/t/sub"])
    host_unchanged(host)
    assert isinstance(r, StartError), f"started: {r}"


def test_workdir_cannot_be_made_on_the_host(busybox, host, tmp_path):
    """A missing working directory is made (as Docker does), never through a magic link."""
    r = run_or_refused("busybox", "pwd", workdir=f"/proc/self/fd/{host.dir_fd}/made-on-host")
    host_unchanged(host)
    assert isinstance(r, StartError), f"started: {r}"


def test_volume_target_that_is_a_symlink_is_refused(busybox, tmp_path):
    """main refused it too, with a bare EINVAL from move_mount; now it says why."""
    image = image_with(tmp_path, "final-link", symlinks=[("data", "/etc")])
    src = tmp_path / "src"
    src.mkdir()
    r = run_or_refused(image, "true", volumes=[f"{src}:/data"])
    assert isinstance(r, StartError) and "symlink" in str(r), r


def test_image_symlinks_inside_the_root_still_lead_volumes(busybox, tmp_path):
    """Docker's behaviour kept: /var/run -> /run, and -v X:/var/run/x lands in /run/x."""
    image = image_with(tmp_path, "var-run", symlinks=[("var/run", "/run")], dirs=["var", "run"])
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("in the volume\n")
    r = fastbox.run(image, ["sh", "-c", "cat /run/sock/f"], capture_output=True,
                    volumes=[f"{src}:/var/run/sock"])
    assert (r.exit_code, r.stdout) == (0, b"in the volume\n"), r


# ------------------------------------------------------------------ volumes in /dev

def test_volume_at_dev_shm(busybox, host, tmp_path):
    """Allowed (it replaces our /dev/shm, as with Docker); the masks and devices stay."""
    vol = tmp_path / "shm"
    vol.mkdir()
    r = fastbox.run("busybox", ["sh", "-c", CHECK + "; echo hi > /dev/shm/x; ls -l /dev/null"],
                    capture_output=True, volumes=[f"{vol}:/dev/shm"])
    started_safely(r)
    assert (vol / "x").read_text() == "hi\n"
    assert r.stdout.decode().split("\n")[-2].startswith("crw-rw-rw-"), r.stdout
    host_unchanged(host)


def test_volume_under_dev(busybox, tmp_path):
    vol = tmp_path / "x"
    vol.mkdir()
    (vol / "f").write_text("under dev\n")
    r = fastbox.run("busybox", ["sh", "-c", CHECK + "; cat /dev/x/f"], capture_output=True,
                    volumes=[f"{vol}:/dev/x"])
    started_safely(r)
    assert r.stdout.decode().endswith("under dev\n"), r.stdout


@pytest.mark.parametrize("target", ["/dev", "/dev/pts", "/dev/pts/x", "/dev/ptmx", "/proc/x"])
def test_volume_over_what_fastbox_makes_is_refused(busybox, tmp_path, target):
    """/dev and /dev/pts were allowed on main (hiding the devices and the devpts that
    -t opens); the others failed there already, on a mkdir."""
    vol = tmp_path / "vol"
    vol.mkdir()
    with pytest.raises(StartError):
        fastbox.run("busybox", ["true"], capture_output=True, volumes=[f"{vol}:{target}"])
    assert os.listdir(vol) == []
