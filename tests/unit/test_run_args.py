"""`fastbox run` argument parsing (fastbox/cli/run_args.py): Docker's rules."""
import pytest

from fastbox.cli import run_args
from fastbox.cli.run_args import parse
from fastbox.errors import SpecError


def test_options_stop_at_the_image():
    opts, image, command = parse(["--rm", "-e", "A=1", "busybox", "sh", "-c", "echo --rm -e X"])
    assert opts["remove"] is True
    assert opts["env"] == ["A=1"]
    assert image == "busybox"
    assert command == ["sh", "-c", "echo --rm -e X"]


def test_flags_after_the_image_belong_to_the_command():
    opts, image, command = parse(["busybox", "--rm", "-e", "X=1", "--bogus"])
    assert image == "busybox"
    assert command == ["--rm", "-e", "X=1", "--bogus"]
    assert opts["remove"] is False and opts["env"] == []


def test_image_only():
    opts, image, command = parse(["busybox"])
    assert (image, command) == ("busybox", None)


def test_no_image():
    _, image, command = parse(["--rm"])
    assert (image, command) == (None, None)
    assert parse([])[1:] == (None, None)


def test_double_dash_ends_options():
    opts, image, command = parse(["--rm", "--", "busybox", "true"])
    assert (opts["remove"], image, command) == (True, "busybox", ["true"])


def test_double_dash_lets_an_image_start_with_dash():
    _, image, command = parse(["--", "-weird", "x"])
    assert (image, command) == ("-weird", ["x"])


@pytest.mark.parametrize("args, dest, value", [
    (["--memory=64m", "img"], "memory", "64m"),
    (["--memory", "64m", "img"], "memory", "64m"),
    (["-m", "64m", "img"], "memory", "64m"),
    (["-m64m", "img"], "memory", "64m"),
    (["--cpus=0.5", "img"], "cpus", "0.5"),
    (["--pids-limit", "-1", "img"], "pids_limit", "-1"),
    (["--network=host", "img"], "network", "host"),
    (["--net", "none", "img"], "network", "none"),
    (["-h", "box", "img"], "hostname", "box"),
    (["--hostname=box", "img"], "hostname", "box"),
    (["-w", "/w", "img"], "workdir", "/w"),
    (["-w/w", "img"], "workdir", "/w"),
    (["-u", "1000:1000", "img"], "user", "1000:1000"),
    (["-uroot", "img"], "user", "root"),
    (["--name", "web", "img"], "name", "web"),
    (["--entrypoint", "/bin/sh", "img"], "entrypoint", "/bin/sh"),
    (["--entrypoint=", "img"], "entrypoint", ""),
    (["--name=a=b", "img"], "name", "a=b"),
    (["--memory-swap", "-1", "img"], "memory_swap", "-1"),
    (["--memory-swap=128m", "img"], "memory_swap", "128m"),
    (["--memory-reservation", "32m", "img"], "memory_reservation", "32m"),
    (["-c", "512", "img"], "cpu_shares", "512"),
    (["--cpu-shares=512", "img"], "cpu_shares", "512"),
    (["--cpu-period", "50000", "img"], "cpu_period", "50000"),
    (["--cpu-quota=-1", "img"], "cpu_quota", "-1"),
    (["--cpuset-cpus", "0-1", "img"], "cpuset_cpus", "0-1"),
    (["--cpuset-mems=0", "img"], "cpuset_mems", "0"),
])
def test_value_options(args, dest, value):
    opts, image, _ = parse(args)
    assert opts[dest] == value
    assert image == "img"


@pytest.mark.parametrize("args, env", [
    (["-e", "A=1", "img"], ["A=1"]),
    (["-eA=1", "img"], ["A=1"]),
    (["--env", "A=1", "img"], ["A=1"]),
    (["--env=A=1", "img"], ["A=1"]),
    (["-e", "A=1", "-eB=2", "--env=C=3", "--env", "D", "img"], ["A=1", "B=2", "C=3", "D"]),
])
def test_env_forms(args, env):
    assert parse(args)[0]["env"] == env


def test_list_options_accumulate_in_order():
    opts, _, _ = parse(["-v", "/a:/a", "--volume=/b:/b:ro", "-v/c:/c", "--tmpfs", "/t1",
                        "--tmpfs=/t2", "--env-file", "f1", "--env-file=f2",
                        "--storage-opt", "volatile", "img"])
    assert opts["volumes"] == ["/a:/a", "/b:/b:ro", "/c:/c"]
    assert opts["tmpfs"] == ["/t1", "/t2"]
    assert opts["env_file"] == ["f1", "f2"]
    assert opts["storage_opts"] == ["volatile"]


@pytest.mark.parametrize("args, expected", [
    (["--rm", "img"], True),
    (["--rm=true", "img"], True),
    (["--rm=false", "img"], False),
    (["--rm=0", "img"], False),
    (["img"], False),
])
def test_boolean_flags(args, expected):
    assert parse(args)[0]["remove"] is expected


def test_other_flags():
    opts, _, _ = parse(["-i", "--read-only", "--timings", "img"])
    assert opts["interactive"] is True and opts["read_only"] is True and opts["timings"] is True
    assert parse(["--help"])[0]["help"] is True


def test_defaults():
    opts, _, _ = parse(["img"])
    for _, dest, kind, _ in run_args.OPTIONS:
        if kind == "list":
            assert opts[dest] == [], dest
        elif kind == "flag":
            assert opts[dest] is False, dest
        elif dest == "network":
            assert opts[dest] == "bridge"  # Docker's default for run and create
        else:
            assert opts[dest] is None, dest


@pytest.mark.parametrize("args, flag", [
    (["--bogus", "img"], "--bogus"),
    (["--bogus=1", "img"], "--bogus"),
    (["-x", "img"], "-x"),
    (["--r", "img"], "--r"),
    (["--rmx", "img"], "--rmx"),
])
def test_unknown_flag(args, flag):
    with pytest.raises(SpecError) as e:
        parse(args)
    assert f"unknown flag: {flag}" in str(e.value)
    assert e.value.exit_code == 125


@pytest.mark.parametrize("args, flag", [
    (["-e"], "-e"),
    (["--memory"], "--memory"),
    (["--rm", "--name"], "--name"),
    (["-v"], "-v"),
])
def test_missing_value(args, flag):
    with pytest.raises(SpecError) as e:
        parse(args)
    assert f"flag needs an argument: {flag}" in str(e.value)


def test_value_may_look_like_a_flag():
    opts, image, _ = parse(["-e", "--rm", "img"])
    assert opts["env"] == ["--rm"] and opts["remove"] is False and image == "img"


@pytest.mark.parametrize("args, interactive, tty, detach, env", [
    (["-it", "img"], True, True, False, []),
    (["-ti", "img"], True, True, False, []),
    (["-dit", "img"], True, True, True, []),
    (["-ie", "A=1", "img"], True, False, False, ["A=1"]),  # the last may take a value
    (["-ieA=1", "img"], True, False, False, ["A=1"]),
    (["-d=false", "-t", "img"], False, True, False, []),
])
def test_short_flags_run_together_as_docker_takes_them(args, interactive, tty, detach, env):
    opts, image, _ = parse(args)
    assert (opts["interactive"], opts["tty"], opts["detach"], opts["env"], image) == \
        (interactive, tty, detach, env, "img")


def test_an_unknown_letter_among_short_flags_is_named():
    with pytest.raises(SpecError) as e:
        parse(["-ix", "img"])
    assert "unknown flag: -x" in str(e.value)


def test_single_dash_is_an_image_name():
    _, image, command = parse(["-", "x"])
    assert (image, command) == ("-", ["x"])


def test_args_not_mutated():
    args = ["--rm", "-e", "A=1", "img", "cmd"]
    copy = list(args)
    parse(args)
    assert args == copy


def test_help_text_lists_every_option():
    text = run_args.help_text()
    assert text.startswith(run_args.USAGE)
    for names, _, _, _ in run_args.OPTIONS:
        for name in names:
            assert name in text
