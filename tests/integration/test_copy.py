"""`cp` and `export`: Docker's copy rules (into an existing directory under the
source's name, SRC/. for contents, '-' for a tar stream), and the attacks: a symlink
the container plants, absolute or through `..`, must never make cp read or write a
host file. Each attack is first shown to work on a naive implementation (the path
joined under /proc/PID/root), so the test can fail."""
import io
import json
import os
import subprocess
import tarfile

import pytest

from test_lifecycle import FASTBOX, cli, one_line_error, reap  # noqa: F401
from test_lifecycle import ok  # noqa: F401


@pytest.fixture
def box(busybox):
    ref = ok(cli("run", "-d", "--name", "box", "busybox", "sleep", "1000")).stdout.strip()
    yield "box"
    cli("rm", "-f", ref)


def sh(ref, script):
    return ok(cli("exec", ref, "sh", "-c", script)).stdout


def pid_of(ref):
    return json.loads(ok(cli("inspect", ref)).stdout)[0]["State"]["Pid"]


# ------------------------------------------------------------------ Docker's rules

def test_copy_a_file_in_and_out(box, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_text("hello\n")
    os.chmod(src, 0o640)
    r = ok(cli("cp", str(src), "box:/tmp/"))
    assert r.stdout == ""
    assert sh("box", "cat /tmp/hello.txt; stat -c '%a %u:%g' /tmp/hello.txt") == "hello\n640 0:0\n"
    ok(cli("cp", str(src), "box:/tmp/renamed"))
    assert sh("box", "cat /tmp/renamed") == "hello\n"
    out = tmp_path / "back"
    ok(cli("cp", "box:/tmp/renamed", str(out)))
    assert out.read_text() == "hello\n"
    # into an existing host directory: under the source's name
    d = tmp_path / "dir"
    d.mkdir()
    ok(cli("cp", "box:/etc/passwd", str(d)))
    assert (d / "passwd").read_text().startswith("root:")


def test_copy_directories_and_contents(box, tmp_path):
    sh("box", "mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && "
              "ln -s a /data/link")
    ok(cli("cp", "box:/data", str(tmp_path / "copy")))
    assert (tmp_path / "copy" / "sub" / "b").read_text() == "b\n"
    assert os.readlink(tmp_path / "copy" / "link") == "a"  # a symlink stays a symlink
    existing = tmp_path / "existing"
    existing.mkdir()
    ok(cli("cp", "box:/data", str(existing)))
    assert (existing / "data" / "a").read_text() == "a\n"
    contents = tmp_path / "contents"
    contents.mkdir()
    ok(cli("cp", "box:/data/.", str(contents)))
    assert sorted(os.listdir(contents)) == ["a", "link", "sub"]
    # and back in, into a new directory
    ok(cli("cp", str(tmp_path / "copy"), "box:/restored"))
    assert sh("box", "cat /restored/sub/b; readlink /restored/link") == "b\na\n"


def test_copy_tar_streams(box, tmp_path):
    sh("box", "mkdir /t && echo one > /t/one")
    r = subprocess.run([FASTBOX, "cp", "box:/t", "-"], capture_output=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        assert sorted(tar.getnames()) == ["t", "t/one"]
        assert tar.extractfile("t/one").read() == b"one\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from a tar\n"
        info = tarfile.TarInfo("in/file")
        info.size = len(data)
        d = tarfile.TarInfo("in")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(d)
        tar.addfile(info, io.BytesIO(data))
    r = subprocess.run([FASTBOX, "cp", "-", "box:/tmp"], input=buf.getvalue(), capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sh("box", "cat /tmp/in/file") == "from a tar\n"


def test_copy_errors_are_one_line(box, tmp_path):
    for args, text in ((("box:/nosuch", str(tmp_path / "x")), "no such container:path: box:/nosuch"),
                       ((str(tmp_path / "nosuch"), "box:/tmp"), "could not find"),
                       (("box:/etc", str(tmp_path / "nodir") + "/"), "does not exist"),
                       (("nosuch:/etc", str(tmp_path)), "no such container"),
                       ((str(tmp_path), str(tmp_path / "y")), "not supported")):
        r = cli("cp", *args)
        assert r.returncode != 0, args
        assert text in one_line_error(r), args


def test_cp_and_export_of_a_stopped_container(busybox, tmp_path, fb_env):
    """Its overlay is mounted in a mount namespace of the command's own: nothing is
    mounted here (conftest checks), and what is copied in is there at its start."""
    ref = ok(cli("create", "busybox", "cat", "/in/file")).stdout.strip()
    try:
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "file").write_text("before start\n")
        ok(cli("cp", str(tmp_path / "in"), f"{ref}:/"))
        ok(cli("cp", f"{ref}:/etc/passwd", str(tmp_path / "p")))
        assert (tmp_path / "p").read_text().startswith("root:")
        r = cli("cp", f"{ref}:/nosuch", str(tmp_path / "q"))
        assert r.returncode != 0 and "no such container:path" in one_line_error(r)
        assert ok(cli("start", "-a", ref)).stdout == "before start\n"
        out = subprocess.run([FASTBOX, "export", ref], capture_output=True, stdin=subprocess.DEVNULL)
        assert out.returncode == 0
        with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
            assert tar.extractfile("in/file").read() == b"before start\n"
        with open("/proc/self/mountinfo") as f:
            assert fb_env.root not in f.read()
    finally:
        cli("rm", ref)


# ------------------------------------------------------------------ the attacks

@pytest.fixture
def host_secret(tmp_path):
    """A host directory (absent from the container) holding a secret."""
    d = tmp_path / "host-only"
    d.mkdir()
    (d / "secret").write_text("HOST-SECRET\n")
    return d


def test_naive_join_under_proc_root_escapes(box, host_secret):
    """The control: the symlinks planted below do escape a path joined by string under
    /proc/PID/root (the kernel follows an absolute symlink from the reader's root)."""
    sh("box", f"ln -s {host_secret} /leak && ln -s / /rootlink")
    pid = pid_of("box")
    with open(f"/proc/{pid}/root/leak/secret") as f:
        assert f.read() == "HOST-SECRET\n"
    with open(f"/proc/{pid}/root/rootlink{host_secret}/secret") as f:
        assert f.read() == "HOST-SECRET\n"


@pytest.mark.parametrize("path", ["/leak/secret", "/rootlink{secret}", "/../../../..{secret}",
                                  "/dotdot/../../../../..{secret}"])
def test_cp_out_never_reads_a_host_file_through_a_symlink(box, host_secret, tmp_path, path):
    sh("box", f"ln -s {host_secret} /leak && ln -s / /rootlink && mkdir /dotdot")
    out = tmp_path / "out"
    r = cli("cp", "box:" + path.format(secret=host_secret / "secret"), str(out))
    assert r.returncode != 0, "cp read a host file"
    assert "no such container:path" in one_line_error(r)
    assert not out.exists()


def test_cp_out_of_a_symlink_copies_the_link_itself(box, host_secret, tmp_path):
    sh("box", f"ln -s {host_secret}/secret /leakfile")
    ok(cli("cp", "box:/leakfile", str(tmp_path / "got")))
    assert os.path.islink(tmp_path / "got")
    assert os.readlink(tmp_path / "got") == f"{host_secret}/secret"


def test_cp_in_never_writes_through_a_planted_symlink(box, host_secret, tmp_path):
    sh("box", f"ln -s {host_secret} /w && ln -s / /rootlink && "
              f"ln -s {host_secret}/secret /wfile")
    src = tmp_path / "payload"
    src.write_text("PWNED\n")
    pid = pid_of("box")
    # the control: a naive copy through /proc/PID/root would land on the host
    assert os.path.isdir(f"/proc/{pid}/root/w")
    for dest in ("box:/w/pwn", f"box:/rootlink{host_secret}/pwn", f"box:/rootlink{host_secret}/"):
        r = cli("cp", str(src), dest)
        assert r.returncode != 0, dest
        one_line_error(r)
    # a planted symlink as the destination file: replaced, never written through
    ok(cli("cp", str(src), "box:/wfile"))
    assert sh("box", "cat /wfile") == "PWNED\n"
    assert sorted(os.listdir(host_secret)) == ["secret"]
    assert (host_secret / "secret").read_text() == "HOST-SECRET\n"


def test_cp_tar_in_refuses_members_that_leave_the_destination(box, host_secret):
    def tar_of(*members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, kind, extra in members:
                info = tarfile.TarInfo(name)
                info.type = kind
                if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
                    info.linkname = extra
                    tar.addfile(info)
                else:
                    info.size = len(extra)
                    tar.addfile(info, io.BytesIO(extra))
        return buf.getvalue()

    attacks = [tar_of(("evil", tarfile.SYMTYPE, str(host_secret)), ("evil/pwn", tarfile.REGTYPE, b"x")),
               tar_of(("../../../../" + str(host_secret) + "/pwn", tarfile.REGTYPE, b"x")),
               tar_of(("hard", tarfile.LNKTYPE, str(host_secret / "secret")))]
    sh("box", "mkdir /dst")
    for data in attacks:
        r = subprocess.run([FASTBOX, "cp", "-", "box:/dst"], input=data, capture_output=True)
        assert r.returncode != 0
        assert len(r.stderr.decode().splitlines()) == 1
    assert sorted(os.listdir(host_secret)) == ["secret"]


# ------------------------------------------------------------------ export

def test_export_is_the_merged_root_without_mounts(box, tmp_path):
    sh("box", "echo mine > /added && rm /bin/vi")
    out = tmp_path / "fs.tar"
    r = ok(cli("export", "-o", str(out), "box"))
    assert r.stdout == ""
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("added").read() == b"mine\n"
    assert "bin/busybox" in names and "bin/vi" not in names
    assert "proc" in names and not any(n.startswith("proc/") for n in names)
    assert not any(n.startswith("sys/") for n in names)
    r = subprocess.run([FASTBOX, "export", "box"], capture_output=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        assert set(tar.getnames()) == names
