"""Parsing of the run options beyond limits (fastbox.run_options) and -v's Docker forms,
and the restart policy's decisions and back-off."""
import os
import resource

import pytest

from fastbox import run_options as ro
from fastbox.errors import SpecError
from fastbox.runtime import restart_policy
from fastbox.spec import RunSpec, merged_limits, parse_volume, spec_from_dict, spec_to_dict


def test_volume_forms():
    v = parse_volume("/host/dir:/ctr:ro")
    assert (v.source, v.target, v.readonly, v.kind, v.anonymous) == ("/host/dir", "/ctr", True, "bind", False)
    v = parse_volume("./rel:/ctr")
    assert v.kind == "bind" and v.source == os.path.join(os.getcwd(), "rel")
    v = parse_volume("data:/data")
    assert (v.source, v.kind, v.anonymous) == ("data", "volume", False)
    v = parse_volume("/data")
    assert v.kind == "volume" and v.anonymous and len(v.source) == 64 and v.target == "/data"
    v = parse_volume("/data:ro")
    assert v.anonymous and v.readonly
    assert parse_volume("/data").source != parse_volume("/data").source


def test_spec_round_trip_keeps_the_new_fields():
    spec = RunSpec("busybox", ["true"], labels=["a=1", "b="], restart="on-failure:3",
                   stop_signal="USR1", stop_timeout="4", shm_size="128m", init=True,
                   ulimits=["nofile=10:20"], volumes=["data:/d", "/anon"],
                   mounts=["type=tmpfs,target=/t,tmpfs-size=1m"])
    again = spec_from_dict(spec_to_dict(spec))
    assert again.labels == (("a", "1"), ("b", ""))
    assert (again.restart, again.stop_signal, again.stop_timeout) == ("on-failure:3", "SIGUSR1", 4)
    assert (again.shm_size, again.init, again.ulimits) == (128 << 20, True, (("nofile", 10, 20),))
    assert [v.source for v in again.volumes] == [v.source for v in spec.volumes]
    assert again.tmpfs[0].target == "/t" and "size=1048576" in again.tmpfs[0].options


@pytest.mark.parametrize("value, expected", [
    ("type=bind,source=/tmp,target=/x,readonly", ("volume", "/tmp:/x:ro")),
    ("type=bind,src=./rel,dst=/x", ("volume", "./rel:/x")),
    ("type=volume,source=v,target=/x", ("volume", "v:/x")),
    ("type=volume,target=/x", ("volume", "/x")),
    ("type=tmpfs,destination=/t,tmpfs-mode=700", ("tmpfs", "/t:mode=700")),
])
def test_mount_option(value, expected):
    assert ro.mount_option(value) == expected


@pytest.mark.parametrize("value, words", [
    ("type=bind,target=/x", "needs a source"), ("type=tmpfs,source=a,target=/x", "no source"),
    ("type=volume,source=/abs,target=/x", "volume name"), ("type=x,target=/y", "type must be"),
    ("type=volume,source=v", "target"), ("type=volume,target=/x,colour=red", "unknown option"),
])
def test_mount_option_errors(value, words):
    with pytest.raises(SpecError) as e:
        ro.mount_option(value)
    assert words in str(e.value)


@pytest.mark.parametrize("value", ["no", "always", "unless-stopped", "on-failure", "on-failure:5"])
def test_restart_policies(value):
    assert ro.restart_policy(value) == value


@pytest.mark.parametrize("value", ["sometimes", "always:2", "on-failure:x", "on-failure:-1"])
def test_bad_restart_policies(value):
    with pytest.raises(SpecError):
        ro.restart_policy(value)


def test_stop_signal_and_labels():
    assert ro.stop_signal("term") == "SIGTERM" and ro.stop_signal("9") == "SIGKILL"
    assert ro.stop_signal(None) is None
    with pytest.raises(SpecError):
        ro.stop_signal("SIGNOPE")
    assert ro.labels(["a=1", "a=2", "b"]) == (("a", "2"), ("b", ""))
    assert ro.labels({"x": 1}) == (("x", "1"),)


def test_ulimits_within_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert ro.ulimits(["nofile=5"]) == (("nofile", 5, 5),)
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(SpecError, match="CAP_SYS_RESOURCE"):
            ro.ulimits([f"nofile=1:{hard + 1}"])
    with pytest.raises(SpecError, match="soft limit exceeds"):
        ro.ulimits(["nofile=3:2"])


def test_merged_limits_replace_cpus_and_quota():
    d = spec_to_dict(RunSpec("busybox", cpus="0.5"))
    merged = merged_limits(d, {"cpu_quota": "20000", "cpu_period": "100000"})
    assert merged["cpus"] is None and RunSpec("b", **{k: merged[k] for k in ("cpu_quota", "cpu_period")})
    assert merged_limits(d, {"memory": "64m"})["cpus"] == 0.5
    with pytest.raises(SpecError, match="cannot update"):
        merged_limits(d, {"image": "x"})


@pytest.mark.parametrize("policy, code, count, stopped, expected", [
    ("no", 1, 0, False, False), ("always", 0, 9, False, True), ("always", 1, 0, True, False),
    ("unless-stopped", 0, 0, False, True), ("on-failure", 0, 0, False, False),
    ("on-failure", 2, 100, False, True), ("on-failure:2", 2, 1, False, True),
    ("on-failure:2", 2, 2, False, False),
])
def test_should_restart(policy, code, count, stopped, expected):
    assert restart_policy.should_restart(policy, code, count, stopped) is expected


def test_backoff_doubles_to_a_minute_and_resets_after_a_long_run():
    d, seen = None, []
    for _ in range(12):
        d = restart_policy.delay(d, 0.5)
        seen.append(d)
    assert seen[:4] == [0.1, 0.2, 0.4, 0.8] and seen[-1] == 60.0
    assert restart_policy.delay(60.0, 11.0) == 0.1
