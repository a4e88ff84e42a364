"""What a container sees and where its writes go: real containers through fastbox.run()."""
import hashlib
import os
import signal
import stat

import pytest

import fastbox
from fastbox import errors
from fbtest import DEFAULT_PATH

NETWORKS = ["none", "host"]


# ------------------------------------------------------------------ basics, both networks

@pytest.mark.parametrize("network", NETWORKS)
def test_echo_and_exit_code(sh, network):
    r = sh("echo hello; exit 7", network=network)
    assert r.exit_code == 7
    assert r.stdout == b"hello\n"
    assert len(r.id) == 64 and all(c in "0123456789abcdef" for c in r.id)


@pytest.mark.parametrize("network", NETWORKS)
def test_program_is_pid_1(probe, network):
    r = probe.run("pid", network=network)
    assert (r.exit_code, r.stdout) == (0, b"1\n")


@pytest.mark.parametrize("network", NETWORKS)
def test_no_host_processes_visible(sh, network):
    r = sh("ls /proc; echo ---; ps -o pid,comm", network=network)
    assert r.exit_code == 0, r.stderr
    listing, _, ps = r.stdout.decode().partition("---\n")
    pids = sorted(int(e) for e in listing.split() if e.isdigit())
    # sh (pid 1) and, unless sh exec'd it, ls; nothing of the host's.
    assert pids[0] == 1 and len(pids) <= 2, pids
    ps_pids = [int(line.split()[0]) for line in ps.splitlines()[1:]]
    assert 1 in ps_pids and len(ps_pids) <= 2, ps
    host_pids = [e for e in os.listdir("/proc") if e.isdigit()]
    assert len(host_pids) > 2  # so the check above means something


def test_output_goes_to_given_fds(busybox, tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        r = fastbox.run("busybox", ["sh", "-c", "echo to-out; echo to-err >&2"], stdout=o, stderr=e)
    assert r.exit_code == 0
    assert r.stdout is None and r.stderr is None
    assert out.read_bytes() == b"to-out\n"
    assert err.read_bytes() == b"to-err\n"


def test_stdin_is_dev_null_by_default(sh):
    r = sh("cat; echo rc=$?")
    assert r.stdout == b"rc=0\n"


def test_stdin_from_a_pipe(busybox, pipes):
    p = pipes()
    os.write(p.w, b"from the host\n")
    p.close_w()
    r = fastbox.run("busybox", ["cat"], stdin=p.r, capture_output=True)
    assert r.stdout == b"from the host\n"


# ------------------------------------------------------------------ hostname

def test_default_hostname_is_short_id(probe):
    r = probe.run("hostname")
    assert r.stdout.decode().strip() == r.id[:12]


@pytest.mark.parametrize("network", NETWORKS)
def test_hostname_option(probe, network):
    r = probe.run("hostname", hostname="web-1.example", network=network)
    assert r.stdout == b"web-1.example\n"


def test_hostname_does_not_change_the_hosts(probe):
    before = os.uname().nodename
    probe.run("hostname", hostname="not-the-host")
    assert os.uname().nodename == before


def test_host_network_keeps_host_hostname_by_default(probe):
    r = probe.run("hostname", network="host")
    assert r.stdout.decode().strip() == os.uname().nodename


def test_hostname_env_matches(sh):
    r = sh('echo "$HOSTNAME"; hostname', hostname="box")
    assert r.stdout == b"box\nbox\n"


# ------------------------------------------------------------------ filesystem

def _snapshot(root):
    """Every path under root with its type, mode, owner, size and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                 st.st_mtime_ns, digest)
    return out


WRITER = ("echo new > /etc/new-file && echo changed > /etc/fixture && rm /etc/passwd"
          " && mkdir -p /var/lib/made && echo deep > /var/lib/made/x && chmod 600 /srv/data/layer-file"
          " && rm -r /srv/data && echo ok")


def test_writes_land_in_upperdir_not_in_layers(probe, fb_env):
    layers = {d: _snapshot(d) for d in probe.layer_dirs}
    r = fastbox.run(probe.image, ["sh", "-c", WRITER], remove=False, capture_output=True)
    assert (r.exit_code, r.stdout) == (0, b"ok\n"), r.stderr
    upper = os.path.join(fb_env.root, "containers", r.id, "upper")
    assert open(os.path.join(upper, "etc/new-file")).read() == "new\n"
    assert open(os.path.join(upper, "etc/fixture")).read() == "changed\n"  # copied up
    assert open(os.path.join(upper, "var/lib/made/x")).read() == "deep\n"
    for gone in ("etc/passwd", "srv/data"):  # deletions are overlay whiteouts (0/0 char devices)
        st = os.lstat(os.path.join(upper, gone))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, gone
    for d, before in layers.items():
        assert _snapshot(d) == before, f"layer {d} changed"
    fastbox_rm(r.id)


def test_ephemeral_writes_touch_neither_layers_nor_disk(probe, fb_env):
    layers = {d: _snapshot(d) for d in probe.layer_dirs}
    r = fastbox.run(probe.image, ["sh", "-c", WRITER], capture_output=True)
    assert (r.exit_code, r.stdout) == (0, b"ok\n"), r.stderr
    for d, before in layers.items():
        assert _snapshot(d) == before, f"layer {d} changed"
    assert not os.path.exists(os.path.join(fb_env.root, "containers", r.id))
    owners = os.path.join(fb_env.run, "owners")
    for dirpath, dirnames, filenames in os.walk(fb_env.run):
        if dirpath == owners:  # this process's owner slot stays, emptied, for its next run
            assert all(os.path.getsize(os.path.join(owners, f)) == 0 for f in filenames)
            continue
        assert not filenames, (dirpath, filenames)  # the scratch upper lived in a tmpfs


def test_ephemeral_container_keeps_no_record(sh, fb_env):
    r = sh("true")
    containers = os.path.join(fb_env.root, "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) in ([], ["names"])


def test_containers_do_not_see_each_others_writes(sh):
    first = sh("echo one > /marker && cat /marker")
    second = sh("cat /marker 2>&1; echo rc=$?")
    assert first.stdout == b"one\n"
    assert b"rc=1" in second.stdout


def test_concurrent_containers_are_isolated(busybox, pipes):
    """A keeps running (blocked on stdin) while B runs; neither sees the other's files."""
    a_in, a_out = pipes(), pipes()
    seen = {}

    def while_a_runs(pid):
        try:
            seen["a_ready"] = a_out.readline()
            b = fastbox.run("busybox", ["sh", "-c", "test -e /marker-a && echo SEES-A;"
                                                    " echo b > /marker-b; echo b-done"],
                            capture_output=True)
            seen["b"] = b.stdout
        finally:
            a_in.close_w()

    a = fastbox.run("busybox", ["sh", "-c", "echo a > /marker-a; echo ready; read x;"
                                            " test -e /marker-b && echo SEES-B; echo a-done"],
                    stdin=a_in.r, stdout=a_out.w, on_start=while_a_runs)
    a_out.close_w()
    rest = a_out.read_all()
    assert a.exit_code == 0
    assert seen["a_ready"] == "ready\n"
    assert seen["b"] == b"b-done\n"
    assert rest == "a-done\n"


def test_root_is_an_overlay(probe):
    r = probe.run("mounts")
    root = [line.split() for line in r.stdout.decode().splitlines() if line.split()[4] == "/"]
    assert root, r.stdout
    fields = root[-1]
    assert fields[fields.index("-") + 1] == "overlay"


# ------------------------------------------------------------------ volumes and tmpfs

def test_volume_read_write(probe, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-host").write_text("host data\n")
    r = fastbox.run(probe.image, ["sh", "-c", "cat /data/from-host && echo container > /data/from-ct"],
                    volumes=[f"{vol}:/data"], capture_output=True)
    assert (r.exit_code, r.stdout) == (0, b"host data\n"), r.stderr
    assert (vol / "from-ct").read_text() == "container\n"


def test_volume_read_only(probe, tmp_path):
    vol = tmp_path / "ro"
    vol.mkdir()
    (vol / "f").write_text("x")
    r = probe.run("write", "/data/new", volumes=[f"{vol}:/data:ro"])
    assert (r.exit_code, r.stdout) == (1, b"EROFS\n")
    r = probe.run("read", "/data/f", volumes=[f"{vol}:/data:ro"])
    assert (r.exit_code, r.stdout) == (0, b"1\n")
    assert os.listdir(vol) == ["f"]


def test_volume_of_a_file(probe, tmp_path):
    f = tmp_path / "config.txt"
    f.write_text("abc")
    r = probe.run("read", "/etc/app/config.txt", volumes=[f"{f}:/etc/app/config.txt:ro"])
    assert (r.exit_code, r.stdout) == (0, b"3\n")


def test_volume_missing_host_dir_is_created(probe, tmp_path):
    src = tmp_path / "made-by-run"
    r = probe.run("write", "/mnt/x", volumes=[f"{src}:/mnt"])
    assert (r.exit_code, r.stdout) == (0, b"ok\n")
    assert (src / "x").read_text() == "x"


def test_volume_relative_source_is_refused(probe):
    with pytest.raises(errors.SpecError) as e:
        probe.run("pid", volumes=["relative/path:/data"])
    assert e.value.exit_code == 125


def test_tmpfs(probe, fb_env):
    r = fastbox.run(probe.image, ["sh", "-c", "echo t > /scratch/t && cat /scratch/t"
                                               " && grep ' /scratch ' /proc/self/mountinfo"],
                    tmpfs=["/scratch"], remove=False, capture_output=True)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "t"
    assert "tmpfs" in lines[1].split(" - ")[1]
    assert not os.path.exists(os.path.join(fb_env.root, "containers", r.id, "upper", "scratch", "t"))
    fastbox_rm(r.id)


def test_read_only_root(probe):
    r = fastbox.run(probe.image, ["sh", "-c", "/probe write /etc/x; /probe write /scratch/x"],
                    read_only=True, tmpfs=["/scratch"], capture_output=True)
    assert r.stdout == b"EROFS\nok\n"


def test_read_only_root_still_has_writable_dev_shm(probe):
    r = probe.run("write", "/dev/shm/x", read_only=True)
    assert r.stdout == b"ok\n"


# ------------------------------------------------------------------ environment, workdir, user

def _env(result):
    return dict(line.split("=", 1) for line in result.stdout.decode().splitlines() if "=" in line)


def test_default_environment(probe):
    r = fastbox.run(probe.image, ["env"], capture_output=True)
    env = _env(r)
    assert env["PATH"] == DEFAULT_PATH  # the probe image sets no Env
    assert env["HOSTNAME"] == r.id[:12]
    assert env["HOME"] == "/root"
    assert "FASTBOX_ROOT" not in env  # nothing of ours leaks in


def test_env_options_and_precedence(probe, tmp_path, monkeypatch):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=file\nBOTH=file\n\nSPACED=a b\n")
    monkeypatch.setenv("FROM_OUR_ENV", "ours")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    r = fastbox.run(probe.image, ["env"], capture_output=True, env_file=str(env_file),
                    env=["BOTH=cli", "FOO=bar", "FROM_OUR_ENV", "NOT_SET_ANYWHERE", "EMPTY="])
    env = _env(r)
    assert env["FROM_FILE"] == "file"
    assert env["BOTH"] == "cli"
    assert env["FOO"] == "bar"
    assert env["SPACED"] == "a b"
    assert env["FROM_OUR_ENV"] == "ours"
    assert env["EMPTY"] == ""
    assert "NOT_SET_ANYWHERE" not in env


@pytest.fixture(scope="module")
def configured_image(probe, session_dirs):
    """The probe rootfs with image config: Env, WorkingDir, User, Entrypoint+Cmd."""
    from fastbox.images.store import ImageStore
    tar = probe.tarball
    ref = "fastbox-test/configured:1"
    ImageStore(root=session_dirs.images).import_tar(tar, ref, changes={
        "Env": ["IMAGE_VAR=image", "PATH=/bin:/custom", "OVERRIDDEN=image"],
        "WorkingDir": "/srv/data",
        "User": "nobody",
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo default-cmd; pwd; id -u"],
    })
    return ref


def test_image_config_is_applied(configured_image):
    r = fastbox.run(configured_image, capture_output=True)
    assert r.stdout == b"default-cmd\n/srv/data\n65534\n", r.stderr


def test_image_env_and_cli_env(configured_image):
    r = fastbox.run(configured_image, ["env"], env=["OVERRIDDEN=cli"], capture_output=True)
    env = _env(r)
    assert env["IMAGE_VAR"] == "image"
    assert env["PATH"] == "/bin:/custom"
    assert env["OVERRIDDEN"] == "cli"
    assert env["HOME"] == "/home"  # nobody's home in the image's /etc/passwd


def test_command_is_appended_to_image_entrypoint(configured_image):
    r = fastbox.run(configured_image, ["echo from-command"], capture_output=True)
    assert r.stdout == b"from-command\n"


def test_entrypoint_override_drops_image_cmd(configured_image):
    r = fastbox.run(configured_image, entrypoint=["/probe", "hostname"], hostname="ep",
                    capture_output=True)
    assert r.stdout == b"ep\n"


def test_workdir_is_created(probe):
    r = fastbox.run(probe.image, ["sh", "-c", "pwd; ls -ld ."], workdir="/does/not/exist",
                    capture_output=True)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.decode().splitlines()[0] == "/does/not/exist"


def test_workdir_relative_is_refused(probe):
    with pytest.raises(errors.SpecError):
        probe.run("pid", workdir="relative")


def test_numeric_user_and_group(probe):
    r = probe.run("uid", user="1000:1000")
    assert r.stdout == b"uid 1000\ngid 1000\ngroups 1000\n"


def test_default_user_is_the_same_as_explicit_root(probe):
    """No -u and `-u root` (uid 0 in the image's passwd) must give the same credentials."""
    default = probe.run("uid").stdout
    assert default == probe.run("uid", user="root").stdout
    assert default == probe.run("uid", user="0").stdout
    assert default.startswith(b"uid 0\ngid 0\n")


def test_numeric_user_without_group_gets_gid_0(probe):
    r = probe.run("uid", user="1000")
    assert r.stdout.decode().splitlines()[:2] == ["uid 1000", "gid 0"]


def test_named_user_from_image_passwd(probe):
    r = fastbox.run(probe.image, ["sh", "-c", "/probe uid; echo HOME=$HOME"], user="nobody",
                    capture_output=True)
    assert r.stdout == b"uid 65534\ngid 65534\ngroups 65534\nHOME=/home\n"


def test_unknown_user_is_refused(probe):
    with pytest.raises(errors.SpecError) as e:
        probe.run("uid", user="no-such-user")
    assert e.value.exit_code == 125


def test_non_root_cannot_write_root_owned_files(probe):
    r = probe.run("write", "/etc/passwd", user="1000:1000")
    assert (r.exit_code, r.stdout) == (1, b"EACCES\n")


# ------------------------------------------------------------------ exit codes (API)

def test_own_exit_codes(probe):
    assert probe.run("exit", 0).exit_code == 0
    assert probe.run("exit", 7).exit_code == 7
    assert probe.run("exit", 255).exit_code == 255


def test_killed_by_signal_is_128_plus_signal(busybox, pipes):
    stdin = pipes()  # `read` blocks until the container is killed from outside
    r = fastbox.run("busybox", ["sh", "-c", "read x"], stdin=stdin.r,
                    on_start=lambda pid: os.kill(pid, signal.SIGKILL))
    assert r.exit_code == 137


@pytest.mark.parametrize("kwargs", [
    {"memory": "lots"},
    {"memory": "1k"},
    {"cpus": "many"},
    {"pids_limit": 0},
    {"volumes": ["rel/ative:/path"]},  # neither a path nor a volume name
    {"volumes": ["/abs:relative"]},
    {"volumes": ["/proc/fastbox-cannot-create/x:/data"]},
    {"tmpfs": ["relative"]},
    {"network": "bridge"},
    {"name": "bad name"},
    {"hostname": "bad_host"},
    {"env": ["=novalue"]},
])
def test_bad_input_raises_spec_error(busybox, kwargs):
    with pytest.raises(errors.SpecError) as e:
        fastbox.run("busybox", ["true"], **kwargs)
    assert e.value.exit_code == 125


def test_unknown_image(busybox):
    with pytest.raises(errors.ImageNotFound) as e:
        fastbox.run("fastbox-test/no-such-image:nope", ["true"])
    assert e.value.exit_code == 125


@pytest.mark.parametrize("command", [["/etc/not-executable"], ["/etc"], ["/srv/data"]])
def test_not_executable_is_126(probe, command):
    with pytest.raises(errors.CommandNotExecutable) as e:
        fastbox.run(probe.image, command)
    assert e.value.exit_code == 126


@pytest.mark.parametrize("command", [["/no/such/program"], ["no-such-command"]])
def test_missing_command_is_127(probe, command):
    with pytest.raises(errors.CommandNotFound) as e:
        fastbox.run(probe.image, command)
    assert e.value.exit_code == 127
    assert command[0] in str(e.value)


def test_failed_start_of_a_kept_container_leaves_nothing(probe, fb_env):
    with pytest.raises(errors.CommandNotFound):
        fastbox.run(probe.image, ["/nope"], remove=False, name="failed-one")
    containers = os.path.join(fb_env.root, "containers")
    left = [e for e in os.listdir(containers) if e != "names"] if os.path.isdir(containers) else []
    assert left == []
    # and the name was released
    r = fastbox.run(probe.image, ["/probe", "exit", "0"], remove=False, name="failed-one")
    assert r.exit_code == 0
    fastbox_rm("failed-one")


def test_on_start_exception_propagates_and_tears_down(busybox):
    """A raising on_start callback must not leak the container (process, cgroups)."""
    class Boom(Exception):
        pass

    def on_start(pid):
        raise Boom(pid)

    with pytest.raises(Boom):
        fastbox.run("busybox", ["true"], on_start=on_start)
    # the conftest leak check verifies no child process or cgroup is left


def test_timings(sh):
    r = sh("true")
    t = r.timings
    for key in ("image", "cgroup_ready", "cloned", "child_start", "cgroup", "rootfs", "pivot",
                "mounts", "exec", "execed", "exited", "total"):
        assert key in t and t[key] >= 0, key
    parent = [t["image"], t["cgroup_ready"], t["cloned"], t["execed"], t["exited"], t["total"]]
    child = [t["child_start"], t["cgroup"], t["rootfs"], t["pivot"], t["mounts"], t["exec"],
             t["execed"]]
    assert parent == sorted(parent)
    assert child == sorted(child)


def test_storage_opt_volatile(sh):
    assert sh("echo v > /v && cat /v", storage_opts=["volatile"]).stdout == b"v\n"


def fastbox_rm(ref):
    from fastbox.state.store import StateStore
    StateStore().remove(ref)


# ------------------------------------------------------------------ stdio given as the caller's fds

def test_stderr_to_callers_stdout(busybox, pipes, capfd):
    """stderr=1 means the caller's fd 1, even when stdout goes elsewhere (fds are put on
    0-2 in an order that must not clobber a source fd that is itself 0-2)."""
    out = pipes()
    fastbox.run("busybox", ["sh", "-c", "echo out; echo err >&2"], stdout=out.w, stderr=1)
    out.close_w()
    assert out.read_all() == "out\n"
    assert capfd.readouterr().out == "err\n"


def test_stdout_and_stderr_swapped(busybox, capfd):
    fastbox.run("busybox", ["sh", "-c", "echo out; echo err >&2"], stdout=2, stderr=1)
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("err\n", "out\n")


def test_stdout_and_stderr_to_one_fd(busybox, pipes):
    p = pipes()
    fastbox.run("busybox", ["sh", "-c", "echo out; echo err >&2"], stdout=p.w, stderr=p.w)
    p.close_w()
    assert p.read_all() == "out\nerr\n"


def test_capture_both(sh):
    r = sh("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def test_large_output_is_captured_whole(sh):
    r = sh("head -c 1048576 /dev/zero; head -c 300000 /dev/zero >&2")
    assert len(r.stdout) == 1 << 20 and len(r.stderr) == 300000


# ------------------------------------------------------------------ command lookup

def test_path_search_uses_the_containers_path(probe):
    r = fastbox.run(probe.image, ["probe", "exit", "5"], env=["PATH=/nowhere:/"])
    assert r.exit_code == 5


def test_path_search_finding_only_a_non_executable_is_126(probe):
    """Like execvp: a candidate that exists but cannot run makes it EACCES (126), not 127."""
    with pytest.raises(errors.CommandNotExecutable):
        fastbox.run(probe.image, ["not-executable"], env=["PATH=/etc:/bin"])


def test_relative_command_resolves_against_workdir(probe):
    r = fastbox.run(probe.image, ["./probe", "exit", "4"], workdir="/")
    assert r.exit_code == 4


def test_command_not_found_with_custom_path(probe):
    with pytest.raises(errors.CommandNotFound):
        fastbox.run(probe.image, ["sh"], env=["PATH=/nowhere"])


# ------------------------------------------------------------------ the caller's process

def test_no_fds_leak_into_the_caller(probe):
    """Only the spare network namespace and its worker's home namespace stay open."""
    def fds():
        links = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                links[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:  # listdir's own
                pass
        netns = {fd for fd, link in links.items() if link.startswith("net:")}
        assert len(netns) <= 2
        return sorted(set(links) - netns)

    probe.run("exit", 0), probe.run("exit", 0)  # the shared /dev/null and the spare's worker
    before = fds()
    for _ in range(3):
        probe.run("exit", 0)
        probe.run("exit", 1, capture_output=False)
        with pytest.raises(errors.CommandNotFound):
            fastbox.run(probe.image, ["/nope"], capture_output=True)
        with pytest.raises(errors.SpecError):
            fastbox.run(probe.image, ["/probe"], memory="lots")
    assert fds() == before


def test_containers_from_threads(busybox):
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        r = fastbox.run("busybox", ["sh", "-c", f"echo {i} > /f; cat /f; exit {i % 5}"],
                        capture_output=True)
        return r.stdout, r.exit_code

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [(f"{i}\n".encode(), i % 5) for i in range(16)]


# ------------------------------------------------------------------ tmpfs options, ro + volumes

def test_tmpfs_is_noexec_nosuid_nodev(probe):
    r = fastbox.run(probe.image, ["sh", "-c", "cp /probe /t/p && /t/p exit 0; echo rc=$?;"
                                               " grep ' /t ' /proc/self/mountinfo"],
                    tmpfs=["/t"], capture_output=True)
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "rc=126"
    opts = lines[1].split()[5].split(",")
    assert {"noexec", "nosuid", "nodev"} <= set(opts)


def test_tmpfs_options_size(probe):
    r = fastbox.run(probe.image, ["sh", "-c", "head -c 2097152 /dev/zero > /t/big; echo rc=$?;"
                                               " wc -c < /t/big"],
                    tmpfs=["/t:size=1m"], capture_output=True)
    rc, size = r.stdout.decode().split()
    assert rc == "rc=1" and int(size) <= 1 << 20


def test_tmpfs_read_only_option(probe):
    r = probe.run("write", "/t/x", tmpfs=["/t:ro"])
    assert r.stdout == b"EROFS\n"


def test_read_only_root_with_rw_volume(probe, tmp_path):
    vol = tmp_path / "vol"
    r = fastbox.run(probe.image, ["sh", "-c", "/probe write /x; /probe write /vol/x"],
                    read_only=True, volumes=[f"{vol}:/vol"], capture_output=True)
    assert r.stdout == b"EROFS\nok\n"
    assert (vol / "x").read_text() == "x"


def test_volume_over_image_content_hides_it(probe, tmp_path):
    (tmp_path / "empty").mkdir()
    r = fastbox.run(probe.image, ["ls", "-A", "/srv/data"], volumes=[f"{tmp_path / 'empty'}:/srv/data"],
                    capture_output=True)
    assert r.stdout == b""


@pytest.mark.parametrize("remove", [True, False])
def test_unusable_stdio_leaves_no_record_and_frees_the_name(busybox, fb_env, remove):
    """An argument that fails before the container starts must not keep its name taken
    (or leave a 'created' record of a container that never existed)."""
    with pytest.raises(Exception):
        fastbox.run("busybox", ["true"], name="stdio-fail", remove=remove, stdout=object())
    containers = os.path.join(fb_env.root, "containers")
    left = [e for e in os.listdir(containers) if e != "names"] if os.path.isdir(containers) else []
    assert left == []
    r = fastbox.run("busybox", ["true"], name="stdio-fail", remove=remove)
    assert r.exit_code == 0
    if not remove:
        fastbox_rm("stdio-fail")


@pytest.mark.parametrize("remove", [True, False])
def test_interrupted_wait_kills_and_tears_down(busybox, pipes, fb_env, remove):
    """An exception raised while run() waits (here from a signal handler, as Ctrl-C
    would) kills the container, removes its cgroups and, if kept, records it exited."""
    import threading

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted()

    out = pipes()
    stdin = pipes()  # never closed by us before the container dies: it would block forever

    def on_start(pid):
        def interrupt_when_ready():
            out.readline()  # the container is up and about to block
            os.kill(os.getpid(), signal.SIGUSR1)
        threading.Thread(target=interrupt_when_ready, daemon=True).start()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(Interrupted):
            fastbox.run("busybox", ["sh", "-c", "echo ready; read x"], stdin=stdin.r,
                        stdout=out.w, on_start=on_start, remove=remove, name="interrupted")
    finally:
        signal.signal(signal.SIGUSR1, old)
    if not remove:
        from fastbox.state.store import StateStore
        record = StateStore().lookup("interrupted")
        assert record["status"] == "exited" and record["exit_code"] == 137
        fastbox_rm("interrupted")
    # and the name is free again
    fastbox.run("busybox", ["true"], name="interrupted")


# ------------------------------------------------------------ the spare network namespace

NETNS_SCRIPT = ("readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate; ip -o link | wc -l; "
                "sleep 0.4")


def _concurrent_netns(sh, count):
    """Each of COUNT containers alive at once: its netns, lo's state, its link count."""
    import threading
    outs = [None] * count

    def one(i):
        outs[i] = sh(NETNS_SCRIPT).stdout.decode().split()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
        t.join(0.05)  # staggered: each start may take the spare the previous one left
    for t in threads:
        t.join()
    return outs


def test_spare_network_namespaces_are_never_shared(sh):
    """From a process's second container on, each enters a namespace made ahead of time:
    it must be new for each (containers alive together never share one), with lo up."""
    host = os.readlink("/proc/thread-self/ns/net")
    sh("true"), sh("true")  # the spare is being made from here on
    outs = _concurrent_netns(sh, 4) + _concurrent_netns(sh, 3)
    assert all(o[1:] == ["unknown", "1"] for o in outs)  # only lo, and it is up
    for group in (outs[:4], outs[4:]):
        spaces = [o[0] for o in group]
        assert len(set(spaces)) == len(spaces) and host not in spaces
    # every thread of ours, the core's worker included, is back home: none keeps a
    # handed-out namespace alive after its container
    threads = [os.readlink(f"/proc/self/task/{t}/ns/net") for t in os.listdir("/proc/self/task")]
    assert set(threads) == {host}, threads


def test_forked_child_never_gets_the_parents_spare(sh):
    """A fork() copies the spare's fd: the child must drop it, or the parent's next
    container and the child's would share one network namespace."""
    sh("true"), sh("true")  # now a spare is ready, or being made
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            os.write(w, sh(NETNS_SCRIPT).stdout.split()[0])
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    ours = sh(NETNS_SCRIPT).stdout.split()[0]
    with os.fdopen(r, "rb") as f:
        theirs = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert theirs.startswith(b"net:[") and theirs != ours
