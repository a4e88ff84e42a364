"""RunSpec: user input parsed and validated once, then frozen."""
import os

import pytest

from fastbox.errors import SpecError
from fastbox.spec import RunSpec, Tmpfs, Volume, parse_cpus, parse_env, parse_pids, parse_size, \
    parse_tmpfs, parse_volume

MiB, GiB = 1 << 20, 1 << 30


# ------------------------------------------------------------------ sizes

@pytest.mark.parametrize("value, expected", [
    ("512m", 512 * MiB), ("512M", 512 * MiB), ("512mb", 512 * MiB), ("512MB", 512 * MiB),
    ("1g", GiB), ("1gb", GiB), ("1.5g", 3 * GiB // 2), ("6m", 6 * MiB),
    ("8192k", 8 * MiB), ("8192kb", 8 * MiB), ("1t", 1 << 40),
    ("10485760", 10 * MiB), ("10485760b", 10 * MiB), (" 64m ", 64 * MiB),
    (10 * MiB, 10 * MiB),
])
def test_parse_size(value, expected):
    assert parse_size(value, "--memory") == expected


@pytest.mark.parametrize("value", [None, ""])
def test_parse_size_unset(value):
    assert parse_size(value, "--memory") is None


@pytest.mark.parametrize("value", ["lots", "m", "12x", "1.2.3m", "--1m", "1e", True, "5m", "1048576",
                                   "-1", "0", 0, "1k"])
def test_parse_size_invalid(value):
    with pytest.raises(SpecError) as e:
        parse_size(value, "--memory")
    assert "--memory" in str(e.value)
    assert e.value.exit_code == 125


# ------------------------------------------------------------------ cpus, pids

@pytest.mark.parametrize("value, expected", [("0.5", 0.5), ("1", 1.0), (1, 1.0), ("0.01", 0.01)])
def test_parse_cpus(value, expected):
    assert parse_cpus(value) == expected


def test_parse_cpus_up_to_host_cpus():
    n = os.cpu_count()
    assert parse_cpus(str(n)) == n
    with pytest.raises(SpecError):
        parse_cpus(str(n + 1))


@pytest.mark.parametrize("value", ["0", "0.001", "-1", "many", "nan?", [1]])
def test_parse_cpus_invalid(value):
    with pytest.raises(SpecError) as e:
        parse_cpus(value)
    assert "--cpus" in str(e.value)


def test_parse_cpus_unset():
    assert parse_cpus(None) is None and parse_cpus("") is None


@pytest.mark.parametrize("value, expected", [("100", 100), (1, 1), ("-1", -1), (-1, -1), (None, None), ("", None)])
def test_parse_pids(value, expected):
    assert parse_pids(value) == expected


@pytest.mark.parametrize("value", ["0", 0, "-2", "ten", "1.5"])
def test_parse_pids_invalid(value):
    with pytest.raises(SpecError) as e:
        parse_pids(value)
    assert "--pids-limit" in str(e.value)


# ------------------------------------------------------------------ environment

def test_env_list_and_dict():
    assert parse_env(["A=1", "B=x=y", "C="]) == ("A=1", "B=x=y", "C=")
    assert parse_env({"A": "1", "B": 2}) == ("A=1", "B=2")


def test_env_later_wins_and_keeps_first_position():
    assert parse_env(["A=1", "B=2", "A=3"]) == ("A=3", "B=2")


def test_env_key_only_copies_ours_or_is_dropped(monkeypatch):
    monkeypatch.setenv("FB_UNIT_SET", "from-us")
    monkeypatch.delenv("FB_UNIT_UNSET", raising=False)
    assert parse_env(["FB_UNIT_SET", "FB_UNIT_UNSET"]) == ("FB_UNIT_SET=from-us",)


def test_env_file_then_cli(tmp_path):
    f = tmp_path / "env"
    f.write_text("# a comment\n\nA=file\n  B=file  \nC=has spaces inside\n   # indented comment\n")
    assert parse_env(["A=cli"], str(f)) == ("A=cli", "B=file", "C=has spaces inside")


def test_env_files_in_order(tmp_path):
    (tmp_path / "1").write_text("A=one\nB=one\n")
    (tmp_path / "2").write_text("A=two\n")
    assert parse_env([], [str(tmp_path / "1"), str(tmp_path / "2")]) == ("A=two", "B=one")


def test_env_file_missing(tmp_path):
    with pytest.raises(SpecError) as e:
        parse_env([], str(tmp_path / "missing"))
    assert "--env-file" in str(e.value)


@pytest.mark.parametrize("item", ["=value", "A B=1", "\tA=1", "A\n=1"])
def test_env_invalid(item):
    with pytest.raises(SpecError):
        parse_env([item])


def test_runspec_env_precedence(tmp_path):
    f = tmp_path / "env"
    f.write_text("X=file\nY=file\n")
    spec = RunSpec("busybox", env=["Y=cli"], env_file=str(f))
    assert spec.env == ("X=file", "Y=cli")


# ------------------------------------------------------------------ volumes, tmpfs

def test_volume_rw_and_ro():
    v = parse_volume("/host:/ctr")
    assert (v.source, v.target, v.readonly) == ("/host", "/ctr", False)
    v = parse_volume("/host:/ctr:ro")
    assert v.readonly is True
    assert parse_volume("/host:/ctr:rw").readonly is False


def test_volume_paths_normalized():
    v = parse_volume("/a/../b/:/c//d/.")
    assert (v.source, v.target) == ("/b", "/c/d")


def test_volume_object_passes_through():
    v = Volume("/a", "/b", True)
    assert parse_volume(v) is v


@pytest.mark.parametrize("value, words", [
    ("rel/path:/ctr", "neither a host path"),
    ("/host:relative", "absolute"),
    ("/host:/", "not /"),
    ("/host:/ctr:zz", "expected"),
    ("/host:/ctr:ro:extra", "expected"),
    ("bad name:/data", "neither a host path"),
    ("", "expected"),
])
def test_volume_errors(value, words):
    with pytest.raises(SpecError) as e:
        parse_volume(value)
    assert words in str(e.value) and e.value.exit_code == 125


def test_tmpfs():
    t = parse_tmpfs("/run")
    assert (t.target, t.options) == ("/run", "mode=1777")
    t = parse_tmpfs("/run/x/:size=64m,mode=700")
    assert (t.target, t.options) == ("/run/x", "size=64m,mode=700")
    t = Tmpfs("/a")
    assert parse_tmpfs(t) is t


@pytest.mark.parametrize("value", ["relative", "/", "", ":size=1m"])
def test_tmpfs_errors(value):
    with pytest.raises(SpecError):
        parse_tmpfs(value)


# ------------------------------------------------------------------ names, hostname, misc

@pytest.mark.parametrize("name", ["web", "web-1", "a.b_c-d", "X9", "1abc"])
def test_valid_names(name):
    assert RunSpec("busybox", name=name).name == name


@pytest.mark.parametrize("name", ["-web", "_web", ".web", "a b", "a/b", "a:b", "é"])
def test_invalid_names(name):
    with pytest.raises(SpecError) as e:
        RunSpec("busybox", name=name)
    assert "name" in str(e.value)


def test_empty_name_is_none():
    assert RunSpec("busybox", name="").name is None


@pytest.mark.parametrize("hostname", ["box", "web-1.example.com", "a" * 64])
def test_valid_hostnames(hostname):
    assert RunSpec("busybox", hostname=hostname).hostname == hostname


@pytest.mark.parametrize("hostname", ["a" * 65, "bad_host", "has space", "a/b", "h\u00e9"])
def test_invalid_hostnames(hostname):
    with pytest.raises(SpecError):
        RunSpec("busybox", hostname=hostname)


@pytest.mark.parametrize("network", ["none", "host"])
def test_networks(network):
    assert RunSpec("busybox", network=network).network == network


@pytest.mark.parametrize("network", ["bridge", "", "HOST", "container:x"])
def test_invalid_networks(network):
    with pytest.raises(SpecError):
        RunSpec("busybox", network=network)


def test_defaults():
    spec = RunSpec("busybox")
    assert spec.command is None and spec.entrypoint is None
    assert spec.env == () and spec.volumes == () and spec.tmpfs == ()
    assert spec.network == "none"
    assert spec.read_only is False
    assert spec.memory is None and spec.cpus is None and spec.pids_limit is None
    assert spec.user is None and spec.workdir is None and spec.hostname is None


def test_command_forms():
    assert RunSpec("busybox", "true").command == ("true",)
    assert RunSpec("busybox", ["sh", "-c", "x"]).command == ("sh", "-c", "x")
    assert RunSpec("busybox", []).command == ()
    assert RunSpec("busybox", entrypoint="").entrypoint == ()
    with pytest.raises(SpecError):
        RunSpec("busybox", ["sh", 1])


@pytest.mark.parametrize("image", ["", None, 5])
def test_image_required(image):
    with pytest.raises(SpecError):
        RunSpec(image)


def test_workdir():
    assert RunSpec("busybox", workdir="/a/b/../c").workdir == "/a/c"
    with pytest.raises(SpecError):
        RunSpec("busybox", workdir="relative")


def test_user_normalized_to_string():
    assert RunSpec("busybox", user=1000).user == "1000"
    assert RunSpec("busybox", user="").user is None


def test_spec_is_frozen():
    spec = RunSpec("busybox", memory="64m")
    with pytest.raises(AttributeError):
        spec.memory = 1
    with pytest.raises(AttributeError):
        spec.extra = 1
    assert spec.memory == 64 * MiB
    assert isinstance(spec.volumes, tuple)


def test_volumes_and_tmpfs_in_spec():
    spec = RunSpec("busybox", volumes=["/h:/c:ro"], tmpfs=["/t"])
    assert [(v.source, v.target, v.readonly) for v in spec.volumes] == [("/h", "/c", True)]
    assert [(t.target, t.options) for t in spec.tmpfs] == [("/t", "mode=1777")]


# ------------------------------------------------------------------ more limits (Docker's rules)

def test_memory_swap_forms():
    assert RunSpec("busybox", memory="32m").memory_swap is None  # the plan makes it 2x
    assert RunSpec("busybox", memory="32m", memory_swap="64m").memory_swap == 64 * MiB
    assert RunSpec("busybox", memory="32m", memory_swap="32m").memory_swap == 32 * MiB
    assert RunSpec("busybox", memory="32m", memory_swap="-1").memory_swap == -1
    assert RunSpec("busybox", memory="32m", memory_swap=-1).memory_swap == -1
    assert RunSpec("busybox", memory="32m", memory_swap="0").memory_swap is None
    assert RunSpec("busybox", memory_swap=-1).memory_swap == -1  # harmless without -m


@pytest.mark.parametrize("opts, words", [
    ({"memory_swap": "64m"}, "needs --memory"),
    ({"memory": "64m", "memory_swap": "32m"}, "at least --memory"),
    ({"memory": "64m", "memory_swap": "lots"}, "--memory-swap"),
    ({"memory": "32m", "memory_reservation": "64m"}, "must not exceed --memory"),
    ({"cpus": "0.5", "cpu_quota": 50000}, "conflicting options"),
    ({"cpus": "0.5", "cpu_period": 50000}, "conflicting options"),
    ({"cpu_period": 999}, "--cpu-period"),
    ({"cpu_period": 1000001}, "--cpu-period"),
    ({"cpu_quota": 999}, "--cpu-quota"),
    ({"cpu_quota": -2}, "--cpu-quota"),
    ({"cpu_shares": 1}, "--cpu-shares"),
    ({"cpu_shares": 262145}, "--cpu-shares"),
    ({"cpu_shares": "lots"}, "--cpu-shares"),
    ({"cpuset_cpus": "0-"}, "--cpuset-cpus"),
    ({"cpuset_cpus": "1-0"}, "--cpuset-cpus"),
    ({"cpuset_cpus": "a"}, "--cpuset-cpus"),
    ({"cpuset_cpus": "4096"}, "not available"),
    ({"cpuset_mems": "4096"}, "not available"),
])
def test_more_limits_invalid(opts, words):
    with pytest.raises(SpecError) as e:
        RunSpec("busybox", **opts)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_more_limits_valid_and_in_cgroup_limits():
    spec = RunSpec("busybox", memory="64m", memory_swap="128m", memory_reservation="16m",
                   cpu_shares="512", cpu_period="50000", cpu_quota="25000", cpuset_cpus=" 0 ",
                   cpuset_mems="0")
    assert spec.cgroup_limits == {"memory_swap": 128 * MiB, "memory_reservation": 16 * MiB,
                                  "cpu_shares": 512, "cpu_period": 50000, "cpu_quota": 25000,
                                  "cpuset_cpus": "0", "cpuset_mems": "0"}
    assert RunSpec("busybox").cgroup_limits == {}
    assert RunSpec("busybox", cpu_quota=-1).cpu_quota == -1
    assert RunSpec("busybox", cpu_shares=0).cpu_shares is None  # Docker's 0: unset


def test_more_limits_survive_the_record():
    from fastbox.spec import spec_from_dict, spec_to_dict
    spec = RunSpec("busybox", memory="64m", memory_swap=-1, cpu_shares=512, cpuset_cpus="0")
    again = spec_from_dict(spec_to_dict(spec))
    assert again.cgroup_limits == spec.cgroup_limits and again.memory == spec.memory


def test_cpuset_every_online_cpu():
    n = os.cpu_count()
    assert RunSpec("busybox", cpuset_cpus=f"0-{n - 1}").cpuset_cpus == f"0-{n - 1}"
    assert RunSpec("busybox", cpuset_cpus=",".join(map(str, range(n)))).cpuset_cpus
