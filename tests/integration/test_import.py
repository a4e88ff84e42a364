"""`fastbox import`: a good rootfs becomes a runnable image; a tarball that tries to write
outside its layer is refused with 1 (Docker's code for a failed non-run command) and writes nothing anywhere."""
import io
import os
import subprocess
import sys
import tarfile

import pytest

import fastbox

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def cli(*args):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def _file(name, data=b"pwned\n", mode=0o644):
    info = tarfile.TarInfo(name)
    info.mode, info.size = mode, len(data)
    return info, io.BytesIO(data)


def _dir(name):
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def _hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def _tar(path, entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, data)
    return path


def _all_files(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        out.update(os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames + filenames)
    return out


def test_import_and_run(busybox, tmp_path):
    tar = _tar(tmp_path / "ok.tar", [_dir("bin"), _file("hello.txt", b"hello\n")])
    # a rootfs with only a text file: add busybox as /bin/sh by hand
    with tarfile.open(tar, "a") as t:
        t.add("/bin/busybox", "bin/sh")
    r = cli("import", tar, "fastbox-test/imported:v1")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    out = fastbox.run("fastbox-test/imported:v1", ["/bin/sh", "-c", "read l < /hello.txt; echo $l"],
                      capture_output=True)
    assert out.stdout == b"hello\n"
    assert any(line.split()[:2] == ["fastbox-test/imported", "v1"]
               for line in cli("images").stdout.splitlines())


UNSAFE = {
    "dotdot": lambda outside: [_file("../../../../../../.." + outside + "/dotdot")],
    "dotdot-inner": lambda outside: [_dir("a"), _file("a/../../escape-inner")],
    "absolute": lambda outside: [_file(outside + "/absolute")],
    "symlink-dir": lambda outside: [_symlink("link", outside), _file("link/through-symlink")],
    "symlink-relative": lambda outside: [_symlink("up", "../../../../../../../../" + outside),
                                         _file("up/through-relative")],
    "symlink-nested": lambda outside: [_dir("d"), _symlink("d/l", outside), _file("d/l/nested")],
    "hardlink-out": lambda outside: [_hardlink("hl", outside + "/target-file")],
    "hardlink-dotdot": lambda outside: [_hardlink("hl", "../../../../../../.." + outside + "/target-file")],
    "symlink-then-dir": lambda outside: [_symlink("s", outside), _dir("s/sub")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_tarball_is_refused(busybox, tmp_path, fb_env, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target-file").write_text("original\n")
    before_outside = _all_files(outside)
    images = os.path.join(fb_env.root, "images")
    before_images = _all_files(images)
    tar = _tar(tmp_path / f"{case}.tar", UNSAFE[case](str(outside)))

    r = cli("import", tar, f"fastbox-test/evil-{case}")
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr

    assert _all_files(outside) == before_outside
    assert (outside / "target-file").read_text() == "original\n"
    for name in ("escape-inner", "dotdot", "absolute"):
        assert not os.path.exists(os.path.join(tmp_path, name))
        assert not os.path.exists(os.path.join(os.path.dirname(images), name))
    # nothing new in the store either: no image, no layer, no temporaries
    after = _all_files(images)
    new = after - before_images
    assert new == set(), new
    assert not [line for line in cli("images").stdout.splitlines() if "evil" in line]


def test_symlink_pointing_outside_is_kept_as_a_link(busybox, tmp_path):
    """A symlink may point anywhere: it is only ever resolved inside the container."""
    tar = _tar(tmp_path / "link.tar", [_symlink("etc-link", "/etc"), _dir("etc"), _dir("bin")])
    with tarfile.open(tar, "a") as t:
        t.add("/bin/busybox", "bin/sh")
    assert cli("import", tar, "fastbox-test/links").returncode == 0
    r = fastbox.run("fastbox-test/links", ["/bin/sh", "-c", "echo $(cd /etc-link && pwd -P)"],
                    capture_output=True)
    assert r.stdout == b"/etc\n"


def test_import_missing_file(busybox, tmp_path):
    r = cli("import", tmp_path / "nope.tar", "fastbox-test/nope")
    assert r.returncode == 1
    assert r.stderr.startswith("fastbox: ")


def test_import_not_a_tarball(busybox, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    r = cli("import", junk, "fastbox-test/junk")
    assert r.returncode == 1
    assert r.stderr.startswith("fastbox: ")


def test_import_with_changes(probe, tmp_path):
    r = cli("import", "-c", 'CMD ["sh", "-c", "echo $GREETING from $(pwd); exit 9"]',
            "--change", "ENV GREETING=hello", "-c", "WORKDIR /srv/data", probe.tarball,
            "fastbox-test/changed:1")
    assert r.returncode == 0, r.stderr
    out = subprocess.run([FASTBOX, "run", "--rm", "--network", "none", "fastbox-test/changed:1"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (out.returncode, out.stdout) == (9, "hello from /srv/data\n")


def test_import_bad_change(probe):
    r = cli("import", "-c", "EXPOSE 80", probe.tarball, "fastbox-test/badchange")
    assert r.returncode == 1
    assert r.stderr.startswith("fastbox: ")


def test_retag_and_rmi_by_another_process_are_seen_at_once(busybox, tmp_path):
    """fastbox.run remembers what a tag resolved to; a tag moved or removed by another
    process (the CLI here) must be seen by the very next run."""
    def image(path, word):
        tar = _tar(tmp_path / path, [_dir("bin"), _file("word", word.encode())])
        with tarfile.open(tar, "a") as t:
            t.add("/bin/busybox", "bin/cat")
        return tar

    def word():
        return fastbox.run("fastbox-test/moving:v1", ["/bin/cat", "/word"],
                           capture_output=True).stdout

    assert cli("import", image("a.tar", "first"), "fastbox-test/moving:v1").returncode == 0
    assert word() == word() == b"first"
    assert cli("import", image("b.tar", "second"), "fastbox-test/moving:v1").returncode == 0
    assert word() == b"second"
    assert cli("rmi", "fastbox-test/moving:v1").returncode == 0
    with pytest.raises(fastbox.errors.ImageNotFound):
        word()


@pytest.mark.parametrize("link", ["etc", "etc/passwd"])
def test_user_names_never_come_from_a_host_file(busybox, tmp_path, link):
    """An image whose /etc (or /etc/passwd) is a symlink to a host path: `-u NAME` must read
    the image's files as the container sees them (the link leads nowhere in there), never
    the host's file the link names, which would choose the container's uid."""
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "passwd").write_text("intruder:x:5555:5555::/:/bin/sh\n")
    (host / "group").write_text("intruder:x:5555:\n")
    target = str(host) if link == "etc" else str(host / "passwd")
    entries = [_dir("bin"), _symlink(link, target)]
    if link == "etc/passwd":
        entries.insert(1, _dir("etc"))
    tar = _tar(tmp_path / "links.tar", entries)
    with tarfile.open(tar, "a") as t:
        t.add("/bin/busybox", "bin/sh")
    assert cli("import", tar, f"fastbox-test/etc-link-{link.replace('/', '-')}").returncode == 0
    image = f"fastbox-test/etc-link-{link.replace('/', '-')}"
    with pytest.raises(fastbox.errors.SpecError, match="unable to find user intruder"):
        fastbox.run(image, ["/bin/sh", "-c", "echo $(id -u)"], user="intruder",
                    capture_output=True)
    r = cli("run", "--rm", "--network", "none", "-u", "intruder", image, "/bin/sh", "-c", "true")
    assert r.returncode == 125 and "unable to find user intruder" in r.stderr, r.stderr
