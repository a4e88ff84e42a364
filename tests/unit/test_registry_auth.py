"""The parts of the registry client that need no server: challenges, the credentials file,
the insecure-registry policy, manifest types and platform selection."""
import base64
import json

import pytest

from fastbox.errors import RegistryError, SpecError
from fastbox.images import auth, registry
from fastbox.images.pull import parse_platform, select_platform


@pytest.fixture(autouse=True)
def docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    monkeypatch.delenv("FASTBOX_INSECURE_REGISTRIES", raising=False)
    monkeypatch.setenv("FASTBOX_REGISTRIES_CONFIG", str(tmp_path / "registries.json"))
    return tmp_path / "dc"


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('Basic realm="a, b", Bearer realm="https://x/token",service=reg',
     [("basic", {"realm": "a, b"}), ("bearer", {"realm": "https://x/token", "service": "reg"})]),
    ('Bearer realm="q\\"uoted" , error="insufficient_scope"',
     [("bearer", {"realm": 'q"uoted', "error": "insufficient_scope"})]),
    ("", []),
    ("Negotiate", [("negotiate", {})]),
])
def test_parse_challenges(header, expected):
    assert auth.parse_challenges(header) == expected


def test_credentials_are_stored_as_docker_does(docker_config):
    auth.store("127.0.0.1:5000", auth.Credentials("u", "p:w"))
    auth.store("docker.io", auth.Credentials("hub", "secret"))
    cfg = json.loads((docker_config / "config.json").read_text())
    assert cfg["auths"]["127.0.0.1:5000"] == {"auth": base64.b64encode(b"u:p:w").decode()}
    assert "https://index.docker.io/v1/" in cfg["auths"]
    assert (docker_config / "config.json").stat().st_mode & 0o777 == 0o600
    c = auth.credentials("127.0.0.1:5000")
    assert (c.username, c.password) == ("u", "p:w")
    assert auth.credentials("docker.io").username == "hub"
    assert auth.credentials("other:5000") is None
    assert "secret" not in repr(auth.credentials("docker.io"))
    assert auth.remove("127.0.0.1:5000") and not auth.remove("127.0.0.1:5000")
    assert auth.credentials("127.0.0.1:5000") is None
    assert auth.credentials("docker.io").password == "secret"


def test_keys_with_scheme_path_and_other_fields_are_read(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({
        "auths": {"https://reg.example:5000/v2/": {"auth": base64.b64encode(b"a:b").decode()},
                  "tok.example": {"auth": base64.b64encode(b"t:").decode(), "identitytoken": "rt"},
                  "plain.example": {"username": "x", "password": "y"}},
        "psFormat": "keep me"}))
    assert auth.credentials("reg.example:5000").password == "b"
    assert auth.credentials("tok.example").identity_token == "rt"
    assert auth.credentials("plain.example").username == "x"
    auth.store("new.example", auth.Credentials("n", "m"))
    assert json.loads((docker_config / "config.json").read_text())["psFormat"] == "keep me"


def test_broken_config_is_a_clear_error(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text("{nope")
    with pytest.raises(RegistryError, match="not valid JSON"):
        auth.credentials("x.example")


def test_missing_credential_helper_is_named(docker_config):
    docker_config.mkdir()
    (docker_config / "config.json").write_text('{"credsStore": "no-such-helper-xyz"}')
    with pytest.raises(RegistryError, match="docker-credential-no-such-helper-xyz"):
        auth.credentials("x.example")


def test_insecure_policy(monkeypatch, tmp_path):
    for host in ("127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000"):
        assert registry.is_insecure(host), host
    assert not registry.is_insecure("registry.example:5000")
    (tmp_path / "registries.json").write_text('{"insecure-registries": ["registry.example:5000", "10.0.0.0/8"]}')
    assert registry.is_insecure("registry.example:5000") and registry.is_insecure("10.1.2.3:443")
    assert not registry.is_insecure("registry.example") and registry.is_insecure("127.0.0.1")
    monkeypatch.setenv("FASTBOX_INSECURE_REGISTRIES", "")  # explicit: not even loopback
    assert not registry.is_insecure("127.0.0.1:5000")
    monkeypatch.setenv("FASTBOX_INSECURE_REGISTRIES", "a.example, 192.168.0.0/16")
    assert registry.is_insecure("a.example") and registry.is_insecure("192.168.3.4:5000")


@pytest.mark.parametrize("doc, header, expected", [
    ({"mediaType": registry.OCI_INDEX, "manifests": []}, "", registry.OCI_INDEX),
    ({"schemaVersion": 2, "config": {}, "layers": []}, "", registry.OCI_MANIFEST),  # umoci's
    ({"config": {}, "layers": []}, registry.DOCKER_MANIFEST + "; charset=utf-8", registry.DOCKER_MANIFEST),
    ({"manifests": []}, "application/json", registry.OCI_INDEX),
    ({"fsLayers": []}, "", registry.SCHEMA1_TYPES[0]),
])
def test_media_type_of(doc, header, expected):
    assert registry.media_type_of(json.dumps(doc).encode(), header) == expected


def test_media_type_of_garbage():
    with pytest.raises(RegistryError):
        registry.media_type_of(b"[1]")
    with pytest.raises(RegistryError):
        registry.media_type_of(b'{"what": 1}')


def test_platforms():
    assert parse_platform("linux/amd64") == ("linux", "amd64", "")
    assert parse_platform("Linux/aarch64") == ("linux", "arm64", "")
    assert parse_platform("linux/arm/v7") == ("linux", "arm", "v7")
    assert parse_platform(None)[0] == "linux"
    for bad in ("amd64", "linux/", "a/b/c/d"):
        with pytest.raises(SpecError):
            parse_platform(bad)
    index = {"manifests": [
        {"digest": "a", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "arm7", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "arm64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "amd", "platform": {"os": "linux", "architecture": "amd64"}},
    ]}
    assert select_platform(index, ("linux", "amd64", ""), "x")["digest"] == "amd"
    assert select_platform(index, ("linux", "arm64", ""), "x")["digest"] == "arm64"
    assert select_platform(index, ("linux", "arm", "v7"), "x")["digest"] == "arm7"
    with pytest.raises(RegistryError, match="no matching manifest for linux/arm/v6"):
        select_platform(index, ("linux", "arm", "v6"), "x")
