"""Parsing of --security-opt, --cap-add/--cap-drop, --privileged and of seccomp profiles in
Docker's format: what a spec keeps, what a container gets, and the one-line errors."""
import json

import pytest

from fastbox import capabilities, seccomp_profile
from fastbox.cli import run_args
from fastbox.errors import SpecError
from fastbox.spec import RunSpec, parse_security_opts, spec_from_dict, spec_to_dict

CAP = capabilities.NUMBER


def test_capability_names_are_dockers_spellings():
    assert capabilities.normalize(["sys_admin", "CAP_NET_ADMIN", "Net_Raw", "all"], "--cap-add") == (
        "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "ALL")
    assert capabilities.normalize("chown", "--cap-drop") == ("CAP_CHOWN",)
    assert capabilities.normalize(["SYS_ADMIN", "sys_admin"], "--cap-add") == ("CAP_SYS_ADMIN",)


@pytest.mark.parametrize("bad", ["SYS_WIZARD", "CAP_", "", "CAP_ALL"])
def test_unknown_capabilities_are_spec_errors(bad):
    with pytest.raises(SpecError, match="invalid --cap-add .*unknown capability"):
        capabilities.normalize([bad], "--cap-add")


def test_effective_capabilities_follow_dockers_rules():
    eff = capabilities.effective
    assert eff() == capabilities.DEFAULT
    assert eff(("CAP_SYS_ADMIN",)) == capabilities.DEFAULT | 1 << CAP["CAP_SYS_ADMIN"]
    assert eff((), ("CAP_CHOWN",)) == capabilities.DEFAULT & ~1
    assert eff(("CAP_NET_RAW",), ("ALL",)) == 1 << CAP["CAP_NET_RAW"]
    assert eff(("ALL",), ("CAP_SYS_ADMIN",)) == capabilities.ALL & ~(1 << CAP["CAP_SYS_ADMIN"])
    assert eff(("ALL",), ("ALL",)) == capabilities.ALL  # add ALL wins, as in Docker
    assert eff((), ("ALL",), privileged=True) == capabilities.ALL  # privileged ignores drops
    assert len(capabilities.names(capabilities.DEFAULT)) == 14


def test_security_opts_are_normalized():
    assert parse_security_opts(["no-new-privileges"]) == ("no-new-privileges=true",)
    assert parse_security_opts(["no-new-privileges:false"]) == ("no-new-privileges=false",)
    assert parse_security_opts(["no-new-privileges=FALSE", "no-new-privileges=true"]) == (
        "no-new-privileges=true",)  # the last one wins
    assert parse_security_opts(["seccomp=unconfined"]) == ("seccomp=unconfined",)
    assert parse_security_opts(["seccomp:unconfined"]) == ("seccomp=unconfined",)


def test_a_profile_file_is_read_and_kept_as_one_line(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile, indent=4))
    (opt,) = parse_security_opts([f"seccomp={path}"])
    assert opt == "seccomp=" + json.dumps(profile, separators=(",", ":"))
    spec = RunSpec("busybox", security_opt=[f"seccomp={path}"])
    assert json.loads(spec.seccomp_profile) == profile


@pytest.mark.parametrize("opt, message", [
    ("apparmor=unconfined", "supported are seccomp"),
    ("label=disable", "supported are seccomp"),
    ("seccomp", "supported are seccomp"),
    ("seccomp=", "supported are seccomp"),
    ("no-new-privileges=yes please", "takes true or false"),
    ("seccomp=/nonexistent.json", "cannot read seccomp profile '/nonexistent.json'"),
    ("seccomp={", "invalid seccomp profile"),
])
def test_bad_security_opts(opt, message):
    with pytest.raises(SpecError, match=message) as e:
        parse_security_opts([opt])
    assert "\n" not in str(e.value)


PROFILE_ERRORS = [
    ([], "expected a JSON object"),
    ({}, "no defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "not supported"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "errnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "syscalls must be a list"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "names"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]},
     "index must be 0-5"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_ABOUT"}]}]},
     "unknown op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": -1}]}]}, "unsigned 64-bit"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]},
     "kernel version"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}, "unknown architecture"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}, "not supported"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}, "not supported"),
]


@pytest.mark.parametrize("profile, message", PROFILE_ERRORS, ids=[m for _, m in PROFILE_ERRORS])
def test_bad_profiles_are_one_line_spec_errors(profile, message):
    with pytest.raises(SpecError, match=message) as e:
        seccomp_profile.load(json.dumps(profile), "p.json")
    assert str(e.value).startswith("invalid seccomp profile p.json: ") and "\n" not in str(e.value)


def test_rules_are_picked_by_capabilities_arch_and_kernel():
    p = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},  # the default action: dropped
        {"name": "write", "action": "SCMP_ACT_ALLOW"},     # the old format
    ]}
    seccomp_profile.check(p)
    ALLOW, ENOSYS_RET = seccomp_profile.ALLOW, 0x00050000 | 38

    def names(caps, arch=("amd64",), kernel=(6, 1)):
        return sorted((n, v) for v, n, _ in seccomp_profile.select(p, caps, arch, kernel))

    assert names(set()) == [("arch_prctl", ALLOW), ("clone3", ENOSYS_RET), ("ptrace", ALLOW),
                            ("write", ALLOW)]
    assert names({"CAP_SYS_ADMIN"}) == [("arch_prctl", ALLOW), ("mount", ALLOW), ("ptrace", ALLOW),
                                        ("write", ALLOW)]
    assert ("arch_prctl", ALLOW) not in names(set(), arch=("arm64",))
    assert ("ptrace", ALLOW) not in names(set(), kernel=(4, 4))


def test_conditions_on_one_argument_are_separate_rules():
    rule = {"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]}
    both = {"names": ["x"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 7, "op": "SCMP_CMP_GT"}]}
    eq, gt = seccomp_profile.OPS["SCMP_CMP_EQ"], seccomp_profile.OPS["SCMP_CMP_GT"]
    p = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]}
    assert [c for _, _, c in seccomp_profile.select(p, set(), (), (6, 1))] == [
        [(0, eq, 1, 0)], [(0, eq, 2, 0)]]
    p = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [both]}
    assert [c for _, _, c in seccomp_profile.select(p, set(), (), (6, 1))] == [
        [(0, eq, 1, 0), (1, gt, 7, 0)]]


def test_the_default_profile_is_valid_and_dockers_shape():
    from fastbox.runtime import seccomp
    p = seccomp_profile.load(seccomp.default_profile_text(), "default")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p.get("defaultErrnoRet", 1) == 1
    every = seccomp_profile.all_names(p)
    assert {"io_uring_setup", "io_uring_enter", "kexec_load", "add_key", "keyctl"}.isdisjoint(every)
    assert {"read", "clone", "clone3", "personality", "socket", "mount"} <= every


def test_specs_keep_the_options_through_records():
    spec = RunSpec("busybox", ["true"], security_opt=["seccomp=unconfined", "no-new-privileges=false"],
                   cap_add=["sys_admin"], cap_drop=["all"], privileged=True)
    d = spec_to_dict(spec)
    assert json.loads(json.dumps(d)) == d
    again = spec_from_dict(json.loads(json.dumps(d)))
    assert repr(again) == repr(spec)
    assert again.cap_add == ("CAP_SYS_ADMIN",) and again.cap_drop == ("ALL",)
    assert again.no_new_privileges is False and again.seccomp_profile == "unconfined"


def test_spec_defaults():
    spec = RunSpec("busybox")
    assert spec.seccomp_profile is None and spec.no_new_privileges is True
    assert spec.capability_mask == capabilities.DEFAULT and spec.privileged is False
    assert RunSpec("busybox", privileged=True).seccomp_profile == "unconfined"


def test_run_arguments():
    opts, image, command = run_args.parse(
        ["--security-opt", "seccomp=unconfined", "--security-opt=no-new-privileges", "--cap-add",
         "SYS_ADMIN", "--cap-drop=MKNOD", "--privileged", "busybox", "true"])
    assert opts["security_opt"] == ["seccomp=unconfined", "no-new-privileges"]
    assert opts["cap_add"] == ["SYS_ADMIN"] and opts["cap_drop"] == ["MKNOD"]
    assert opts["privileged"] is True and (image, command) == ("busybox", ["true"])
    assert "--privileged" in run_args.help_text() and "--security-opt" in run_args.help_text()
