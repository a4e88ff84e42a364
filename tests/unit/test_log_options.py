"""Log options (fastbox/log_options.py, fastbox/config.py): --log-opt and log_opts with
Docker's json-file meanings, the config file's default, and their merge."""
import json

import pytest

from fastbox import config, log_options
from fastbox.cli import run_args
from fastbox.errors import SpecError
from fastbox.spec import RunSpec, spec_from_dict, spec_to_dict


# ------------------------------------------------------------------ sizes and counts

@pytest.mark.parametrize("text, expected", [
    ("10m", 10 ** 7), ("10M", 10 ** 7), ("10mb", 10 ** 7), ("10MiB", 10 ** 7), ("10 m", 10 ** 7),
    ("1k", 1000), ("1.5k", 1500), ("100", 100), ("100b", 100), ("1g", 10 ** 9),
    ("2t", 2 * 10 ** 12),
    (" 3m ", 3 * 10 ** 6),
])
def test_max_size_is_decimal_as_in_docker(text, expected):
    assert log_options.max_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "0k", "-1", "lots", "m", "1.", ".5m", "1.2.3m", "10x",
                                  "1e3", "k10"])
def test_max_size_invalid(text):
    with pytest.raises(SpecError) as e:
        log_options.max_size(text)
    assert "max-size" in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 125


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5", "three", "1001"])
def test_max_file_invalid(text):
    with pytest.raises(SpecError) as e:
        log_options.max_file(text)
    assert "max-file" in str(e.value)


# ------------------------------------------------------------------ --log-opt / log_opts

def test_parse_cli_pairs_and_api_dict_agree():
    cli = log_options.parse(["max-size=10m", "max-file=3"])
    api = log_options.parse({"max-size": "10m", "max-file": 3})
    assert cli == api == (("max-file", "3"), ("max-size", "10m"))


def test_a_later_option_wins():
    assert log_options.parse(["max-size=1m", "max-size=2m"]) == (("max-size", "2m"),)


@pytest.mark.parametrize("value, what", [
    (["max-size"], "KEY=VALUE"), (["=3"], "KEY=VALUE"), (["compress=true"], "unknown log opt"),
    (["max-size=lots"], "max-size"), (["max-file=0"], "max-file"), ({"max-file": True}, "max-file"),
])
def test_parse_invalid(value, what):
    with pytest.raises(SpecError) as e:
        log_options.parse(value)
    assert what in str(e.value)


def test_runspec_log_opts_round_trip():
    spec = RunSpec("busybox", log_opts=["max-size=10k", "max-file=2"])
    assert spec.log_opts == (("max-file", "2"), ("max-size", "10k"))
    d = spec_to_dict(spec)
    assert d["log_opts"] == {"max-file": "2", "max-size": "10k"}
    assert json.loads(json.dumps(d)) == d
    assert spec_from_dict(d).log_opts == spec.log_opts
    assert RunSpec("busybox").log_opts == ()
    old = spec_to_dict(RunSpec("busybox"))
    del old["log_opts"]  # a record from before log options
    assert spec_from_dict(old).log_opts == ()


def test_runspec_rejects_bad_log_opts():
    with pytest.raises(SpecError):
        RunSpec("busybox", log_opts={"max-size": "-5"})


def test_run_args_take_log_opt():
    opts, image, command = run_args.parse(["-d", "--log-opt", "max-size=1m", "--log-opt=max-file=2",
                                           "busybox", "true"])
    assert opts["log_opts"] == ["max-size=1m", "max-file=2"]
    assert (image, command) == ("busybox", ["true"])
    assert "--log-opt" in run_args.help_text()


# ------------------------------------------------------------------ the merge

def test_container_options_override_the_default_per_key():
    default = {"max-size": "10m", "max-file": "3"}
    assert log_options.effective((("max-size", "1m"),), default) == {
        "Type": "json-file", "Config": {"max-file": "3", "max-size": "1m"}}
    assert log_options.effective((), default)["Config"] == default


def test_max_file_without_max_size_is_an_error():
    with pytest.raises(SpecError) as e:
        log_options.effective((("max-file", "3"),), {})
    assert "max-file needs max-size" in str(e.value)
    assert log_options.effective((), {}) == {"Type": "json-file", "Config": {}}


def test_limits():
    assert log_options.limits({"Config": {"max-size": "10m", "max-file": "3"}}) == (10 ** 7, 3)
    assert log_options.limits({"Config": {"max-size": "2k"}}) == (2000, 1)
    assert log_options.limits({"Config": {}}) == (0, 1)
    assert log_options.limits({}) == (0, 1)


# ------------------------------------------------------------------ the config file

@pytest.fixture
def config_path(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    monkeypatch.setenv("FASTBOX_CONFIG", str(path))
    return path


def test_no_config_file_gives_the_built_in_default(config_path):
    assert config.log_opts() == {"max-size": "10m", "max-file": "3"}


def test_config_file_log_opts(config_path):
    config_path.write_text('{"log-opts": {"max-size": "1m", "max-file": "5"}}')
    assert config.log_opts() == {"max-size": "1m", "max-file": "5"}
    config_path.write_text('{"log-opts": {}}')  # no limit, as in a daemon.json without one
    assert config.log_opts() == {}
    config_path.write_text('{"other": 1}')
    assert config.log_opts() == config.DEFAULT_LOG_OPTS


def test_config_file_is_read_again_when_it_changes(config_path):
    config_path.write_text('{"log-opts": {"max-size": "1m"}}')
    assert config.log_opts() == {"max-size": "1m"}
    config_path.write_text('{"log-opts": {"max-size": "22m"}}')
    assert config.log_opts() == {"max-size": "22m"}


@pytest.mark.parametrize("body", ["{bad", "[1, 2]", '{"log-opts": "10m"}'])
def test_bad_config_file_is_a_one_line_error(config_path, body):
    config_path.write_text(body)
    with pytest.raises(SpecError) as e:
        config.log_opts()
    assert str(config_path) in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 125
