"""Volumes as Docker has them: `volume create/ls/inspect/rm/prune`, `-v NAME:/path`
(made on first use, data that outlives the container), `-v /path` (anonymous, gone
with `rm -v` and `run --rm`), `-v ./relative:/path`, and `--mount` of each type."""
import json
import os
import subprocess

import pytest

from test_lifecycle import FASTBOX, cli, one_line_error, reap  # noqa: F401


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


def names():
    return ok(cli("volume", "ls", "-q")).stdout.split()


def test_volume_create_ls_inspect_rm():
    assert ok(cli("volume", "create", "data")).stdout == "data\n"
    anon = ok(cli("volume", "create")).stdout.strip()
    assert len(anon) == 64
    out = ok(cli("volume", "ls")).stdout.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split()[1] for line in out[1:]) == sorted(["data", anon])
    (info,) = json.loads(ok(cli("volume", "inspect", "data")).stdout)
    assert (info["Name"], info["Driver"], info["Scope"]) == ("data", "local", "local")
    assert os.path.isdir(info["Mountpoint"]) and info["Mountpoint"].endswith("/data/_data")
    assert ok(cli("volume", "inspect", "-f", "{{.Name}} {{.Mountpoint}}", "data")).stdout == \
        f"data {info['Mountpoint']}\n"
    r = cli("volume", "inspect", "--format", "{{.Nope}}", "data")
    assert r.returncode != 0 and "Nope" in one_line_error(r)
    assert ok(cli("volume", "rm", "data", anon)).stdout == f"data\n{anon}\n"
    assert names() == []
    r = cli("volume", "rm", "data")
    assert r.returncode != 0 and "no such volume" in one_line_error(r)
    ok(cli("volume", "rm", "-f", "data"))
    r = cli("volume", "create", "bad/name")
    assert r.returncode != 0 and "invalid volume name" in one_line_error(r)


def test_named_volume_outlives_its_container(busybox):
    r = ok(cli("run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo saved > /data/f"))
    assert names() == ["keep"]
    assert ok(cli("run", "--rm", "-v", "keep:/data:ro", "busybox", "cat", "/data/f")).stdout == "saved\n"
    r = cli("run", "--rm", "-v", "keep:/data:ro", "busybox", "touch", "/data/g")
    assert r.returncode != 0
    (info,) = json.loads(ok(cli("volume", "inspect", "keep")).stdout)
    with open(os.path.join(info["Mountpoint"], "f")) as f:
        assert f.read() == "saved\n"
    ok(cli("volume", "rm", "keep"))


def test_a_volume_in_use_is_not_removed(busybox):
    ref = ok(cli("run", "-d", "-v", "busy:/data", "busybox", "sleep", "1000")).stdout.strip()
    try:
        r = cli("volume", "rm", "busy")
        assert r.returncode != 0 and "volume is in use" in one_line_error(r)
        assert ref[:12] in r.stderr
    finally:
        ok(cli("rm", "-f", ref))
    ok(cli("volume", "rm", "busy"))


def test_anonymous_volumes_go_with_rm_v_and_run_rm(busybox):
    ok(cli("run", "--rm", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/x"))
    assert names() == []  # run --rm removes its anonymous volumes, as Docker does
    ref = ok(cli("run", "-d", "-v", "/scratch", "busybox", "sh", "-c", "echo x > /scratch/x")).stdout.strip()
    ok(cli("wait", ref))
    (anon,) = names()
    assert len(anon) == 64
    ok(cli("rm", ref))
    assert names() == [anon]  # rm without -v keeps it
    ok(cli("volume", "rm", anon))
    ref = ok(cli("run", "-d", "-v", "/scratch", "busybox", "true")).stdout.strip()
    ok(cli("wait", ref))
    ok(cli("rm", "-v", ref))
    assert names() == []


def test_a_detached_rm_containers_anonymous_volumes_go_when_it_exits(busybox):
    """`run -d --rm -v /x`: its monitor removes the record at exit, and then its
    anonymous volumes (a named one stays, as with Docker)."""
    from waiting import eventually
    ok(cli("run", "-d", "--rm", "-v", "/scratch", "-v", "kept:/kept", "busybox", "sh", "-c",
           "echo x > /scratch/x; sleep 0.2"))
    eventually(lambda: names() == ["kept"], what="the anonymous volume to go")
    assert ok(cli("ps", "-aq")).stdout == ""
    ok(cli("volume", "rm", "kept"))


def test_volume_prune_removes_unused_anonymous_volumes(busybox):
    ok(cli("volume", "create", "named"))
    ref = ok(cli("create", "-v", "/a", "busybox", "true")).stdout.strip()
    ok(cli("rm", ref))
    ok(cli("create", "-v", "/b", "--name", "holder", "busybox", "true"))
    assert len(names()) == 3
    r = subprocess.run([FASTBOX, "volume", "prune"], input="n\n", capture_output=True, text=True)
    assert r.returncode == 0 and "[y/N]" in r.stdout and len(names()) == 3
    r = ok(cli("volume", "prune", "-f"))
    assert r.stdout.startswith("Deleted Volumes:\n")
    left = names()
    assert "named" in left and len(left) == 2  # the holder's anonymous volume stays
    ok(cli("rm", "holder"))
    ok(cli("volume", "prune", "-a", "-f"))
    assert names() == []


def test_relative_bind_and_mount_types(busybox, tmp_path):
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "f").write_text("relative\n")
    r = subprocess.run([FASTBOX, "run", "--rm", "-v", "./rel:/r", "busybox", "cat", "/r/f"],
                       cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (0, "relative\n"), r.stderr
    out = ok(cli("run", "--rm",
                 "--mount", f"type=bind,source={tmp_path / 'rel'},target=/b,readonly",
                 "--mount", "type=volume,source=mv,target=/v",
                 "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
                 "busybox", "sh", "-c",
                 "cat /b/f; touch /b/x 2>/dev/null || echo ro; echo v > /v/v; "
                 "df -k /t | tail -1 | awk '{print $2}'")).stdout
    assert out == "relative\nro\n1024\n"
    assert names() == ["mv"]
    ok(cli("volume", "rm", "mv"))
    for spec, text in (("type=bind,source=/no/such/dir,target=/x", "does not exist"),
                       ("type=nfs,target=/x", "type must be"), ("type=volume,source=v", "target")):
        r = cli("run", "--rm", "--mount", spec, "busybox", "true")
        assert r.returncode == 125 and text in one_line_error(r), spec


@pytest.mark.parametrize("arg", ["bad name:/x", "x/y:/z", "v:relative"])
def test_bad_volume_arguments_are_one_line(busybox, arg):
    r = cli("run", "--rm", "-v", arg, "busybox", "true")
    assert r.returncode == 125
    assert "invalid volume" in one_line_error(r)


def test_an_images_volume_paths_get_anonymous_volumes(busybox, tmp_path):
    """VOLUME in an image: each container gets an anonymous volume there, filled with
    the image's files, unless its own -v or --tmpfs takes the path; `run --rm` and
    `rm -v` remove it, as Docker's."""
    (tmp_path / "Containerfile").write_text(
        "FROM busybox\nRUN mkdir -p /data && echo seed > /data/seed\nVOLUME /data\n")
    ok(cli("build", "-q", "-t", "withvol", str(tmp_path)))
    try:
        out = ok(cli("run", "--rm", "withvol", "sh", "-c",
                     "cat /data/seed; grep -c ' /data ' /proc/self/mounts")).stdout.split()
        assert out == ["seed", "1"]  # the image's file, in a volume mounted there
        assert names() == []  # run --rm took it away
        ref = ok(cli("run", "-d", "withvol", "sh", "-c", "echo new > /data/new")).stdout.strip()
        ok(cli("wait", ref))
        (anon,) = names()
        (info,) = json.loads(ok(cli("volume", "inspect", anon)).stdout)
        assert sorted(os.listdir(info["Mountpoint"])) == ["new", "seed"]
        ok(cli("rm", "-v", ref))
        assert names() == []
        # the container's own volume or tmpfs at that path: no anonymous one
        ok(cli("run", "--rm", "-v", "mine:/data", "withvol", "true"))
        ok(cli("run", "--rm", "--tmpfs", "/data", "withvol", "true"))
        assert names() == ["mine"]
        ok(cli("volume", "rm", "mine"))
        # a Pool's (run_many's) containers too, each its own, removed with it
        import fastbox
        results = fastbox.run_many("withvol", ["sh", "-c", "cat /data/seed; echo x > /data/x; "
                                   "grep -c ' /data ' /proc/self/mounts"], count=3,
                                   capture_output=True)
        assert [r.stdout.decode().split() for r in results] == [["seed", "1"]] * 3
        assert names() == []
    finally:
        ok(cli("rmi", "withvol"))
