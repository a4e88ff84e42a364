"""--device and --device-cgroup-rule parsing (fastbox/device_options.py), the allow list a
container gets (fastbox/runtime/devices.py), and what the spec and the CLI keep of them."""
import os

import pytest

from fastbox.cli.run_args import parse
from fastbox.device_options import parse_cgroup_rule, parse_device, parse_devices
from fastbox.errors import SpecError
from fastbox.runtime import devices
from fastbox.spec import RunSpec, spec_from_dict, spec_to_dict


# ------------------------------------------------------------------ --device

@pytest.mark.parametrize("value, host, container, perms", [
    ("/dev/fuse", "/dev/fuse", "/dev/fuse", "rwm"),
    ("/dev/fuse:/dev/myfuse", "/dev/fuse", "/dev/myfuse", "rwm"),
    ("/dev/fuse:r", "/dev/fuse", "/dev/fuse", "r"),
    ("/dev/sdb:/dev/xvdb:mr", "/dev/sdb", "/dev/xvdb", "rm"),
    ("/dev/net/tun:/dev/net/tun:rw", "/dev/net/tun", "/dev/net/tun", "rw"),
    ("/dev/./fuse:/dev/a/../b/fuse", "/dev/fuse", "/dev/b/fuse", "rwm"),
])
def test_device_values(value, host, container, perms):
    d = parse_device(value)
    assert (d.host, d.container, d.permissions) == (host, container, perms)
    assert parse_device(str(d)) == d or str(parse_device(str(d))) == str(d)


@pytest.mark.parametrize("value, message", [
    ("", "expected HOST"),
    ("/dev/a:/dev/b:rw:x", "expected HOST"),
    ("/dev/a::rw", "expected HOST"),
    ("dev/fuse", "host path must be absolute"),
    ("/dev/fuse:fuse", "under /dev"),
    ("/dev/fuse:/mnt/fuse", "under /dev"),
    ("/dev/fuse:/dev", "under /dev"),
    ("/dev/fuse:/dev/../etc/fuse", "under /dev"),
    ("/dev/fuse:/dev/null", "made by fastbox"),
    ("/dev/fuse:/dev/pts/9", "made by fastbox"),
    ("/dev/fuse:/dev/shm/x", "made by fastbox"),
    ("/dev/fuse:/dev/fuse:rx", "permissions"),
    ("/dev/fuse:/dev/fuse:rwmr", "permissions"),
])
def test_bad_device_values(value, message):
    with pytest.raises(SpecError, match=message) as e:
        parse_device(value)
    assert str(e.value).startswith("invalid --device ") and "\n" not in str(e.value)


def test_devices_given_twice():
    twice = parse_devices(["/dev/fuse", "/dev/fuse:/dev/fuse:rwm"])
    assert [str(d) for d in twice] == ["/dev/fuse:/dev/fuse:rwm"]
    with pytest.raises(SpecError, match="already given"):
        parse_devices(["/dev/fuse", "/dev/loop0:/dev/fuse"])
    with pytest.raises(SpecError, match="already given"):
        parse_devices(["/dev/net/tun:/dev/net", "/dev/tun:/dev/net/tun"])
    assert len(parse_devices(["/dev/net/tun", "/dev/network"])) == 2


# ------------------------------------------------------------------ --device-cgroup-rule

@pytest.mark.parametrize("value, rule", [
    ("c 10:229 rwm", "c 10:229 rwm"),
    ("c 10:229 mwr", "c 10:229 rwm"),
    ("b 8:* r", "b 8:* r"),
    ("c *:* m", "c *:* m"),
    ("  c   010:07  w ", "c 10:7 w"),
    ("a *:* rwm", "a *:* rwm"),
    ("c 4095:1048575 r", "c 4095:1048575 r"),
])
def test_cgroup_rules(value, rule):
    assert parse_cgroup_rule(value) == rule


@pytest.mark.parametrize("value, message", [
    ("c 10:229", "expected TYPE"),
    ("x 10:229 r", "expected TYPE"),
    ("c 10 r", "expected TYPE"),
    ("c 10:229:1 r", "expected TYPE"),
    ("c -1:3 r", "major"),
    ("c 4096:0 r", "major"),
    ("c 1:1048576 r", "minor"),
    ("c 1:x r", "minor"),
    ("c 1:3 rx", "access"),
    ("c 1:3 ", "expected TYPE"),
    ("a 1:3 r", "type a"),
    ("a *:* r", "type a"),
])
def test_bad_cgroup_rules(value, message):
    with pytest.raises(SpecError, match=message) as e:
        parse_cgroup_rule(value)
    assert str(e.value).startswith("invalid --device-cgroup-rule ") and "\n" not in str(e.value)


# ------------------------------------------------------------------ the spec and the CLI

def test_spec_keeps_devices_and_rules_across_records():
    spec = RunSpec("busybox", ["true"], devices=["/dev/fuse", "/dev/sdb:/dev/xvdb:r"],
                   device_cgroup_rules=["c 10:237 rwm"], security_opt=["devices=unconfined"])
    assert [str(d) for d in spec.devices] == ["/dev/fuse:/dev/fuse:rwm", "/dev/sdb:/dev/xvdb:r"]
    assert spec.device_cgroup_rules == ("c 10:237 rwm",)
    assert spec.devices_confined is False
    again = spec_from_dict(spec_to_dict(spec))
    assert [str(d) for d in again.devices] == [str(d) for d in spec.devices]
    assert again.device_cgroup_rules == spec.device_cgroup_rules
    assert again.security_opt == ("devices=unconfined",)


def test_confined_by_default_not_when_privileged():
    assert RunSpec("busybox").devices_confined is True
    assert RunSpec("busybox", privileged=True).devices_confined is False


def test_cli_flags():
    opts, image, _ = parse(["--device", "/dev/fuse", "--device=/dev/net/tun", "--device-cgroup-rule",
                            "c 10:229 rwm", "busybox"])
    assert opts["devices"] == ["/dev/fuse", "/dev/net/tun"]
    assert opts["device_cgroup_rules"] == ["c 10:229 rwm"]


# ------------------------------------------------------------------ the allow list

def test_default_rules_match_runc():
    spec = RunSpec("busybox")
    assert devices.rules_for(spec) == devices.DEFAULT_RULES
    assert "c 10:229 rwm" not in devices.DEFAULT_RULES  # FUSE only when asked
    assert devices.rules_for(RunSpec("busybox", privileged=True)) is False
    assert devices.rules_for(RunSpec("busybox", security_opt=["devices=unconfined"])) is False


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_device_rule_comes_from_the_host_node():
    st = os.stat("/dev/null")
    spec = RunSpec("busybox", devices=["/dev/null:/dev/mynull:r"],
                   device_cgroup_rules=["c 1:3 rwm", "b 7:* r"])
    rules = devices.rules_for(spec)
    assert rules == devices.DEFAULT_RULES + (f"c {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} r", "b 7:* r")
    [node] = devices.nodes_for(spec)
    assert node == ("mynull", st.st_mode, 1, 3, st.st_uid, st.st_gid)


def test_flattened_for_the_core():
    assert devices.flatten(["c 1:3 rwm", "b *:* m", "c 136:* rw", "a *:* rwm", "c 10:229 r"]) == [
        (2, 1, 3, 7), (1, -1, -1, 1), (2, 136, -1, 6), (0, -1, -1, 7), (2, 10, 229, 2)]


def test_v1_writes():
    assert devices.v1_writes("/cg", ("c 1:3 rwm", "a *:* rwm")) == [
        ("/cg/devices.deny", "a"), ("/cg/devices.allow", "c 1:3 rwm\na")]
