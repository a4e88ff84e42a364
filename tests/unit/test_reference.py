import pytest

from fastbox.errors import SpecError
from fastbox.images.reference import normalize, parse

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("ref, normalized", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("user/app:v2", "docker.io/user/app:v2"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:x", "docker.io/user/app:x"),
    ("127.0.0.1:5000/repo:tag", "127.0.0.1:5000/repo:tag"),
    ("host:5000/repo", "host:5000/repo:latest"),
    ("localhost/repo", "localhost/repo:latest"),
    ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
    ("example.com/team/app:1.0-rc_1", "example.com/team/app:1.0-rc_1"),
    ("[::1]:5000/repo", "[::1]:5000/repo:latest"),
    ("Registry/repo", "Registry/repo:latest"),  # an uppercase first component is a domain
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST),
    ("busybox:1@" + DIGEST, "docker.io/library/busybox:1@" + DIGEST),
    ("host:5000/repo@" + DIGEST, "host:5000/repo@" + DIGEST),
    ("user/a.b_c__d-e---f", "docker.io/user/a.b_c__d-e---f:latest"),
    ("a_b/c", "docker.io/a_b/c:latest"),
    ("busybox:" + "x" * 128, "docker.io/library/busybox:" + "x" * 128),
    ("busybox:_A.b-", "docker.io/library/busybox:_A.b-"),
])
def test_normalize(ref, normalized):
    assert normalize(ref) == normalized
    assert normalize(normalized) == normalized


@pytest.mark.parametrize("ref", [
    "", "Busybox", "user/App", "busybox:", ":tag", "busybox:a:b", "busybox@", "@" + DIGEST,
    "busybox@sha256:abc", "busybox@sha256:" + "A" * 64, "busybox@md5:" + "0" * 32,
    "a b", " busybox", "/busybox", "busybox/", "a//b", "-a", "a-", "a._b", "a...b", "a___b",
    "host:port/repo", "-host:5000/repo", "host-:5000/repo", "busybox:-tag", "busybox:" + "x" * 129,
    "0123456789abcdef" * 4, "a/" + "b" * 260, "a.b_c/d", "busybox@" + DIGEST + "@" + DIGEST, "[::1/repo",
])
def test_invalid(ref):
    with pytest.raises(SpecError, match=r"^invalid reference format: '"):
        normalize(ref)


def test_uppercase_says_why():
    with pytest.raises(SpecError, match="must be lowercase"):
        normalize("Busybox")


@pytest.mark.parametrize("ref, familiar", [
    ("busybox", "busybox:latest"),
    ("docker.io/library/busybox:1", "busybox:1"),
    ("user/app", "user/app:latest"),
    ("docker.io/library/a/b", "library/a/b:latest"),
    ("host:5000/repo", "host:5000/repo:latest"),
    ("busybox@" + DIGEST, "busybox@" + DIGEST),
])
def test_familiar(ref, familiar):
    assert parse(ref).familiar == familiar


def test_parse_fields():
    ref = parse("localhost:5000/team/app:v1@" + DIGEST)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == \
        ("localhost:5000", "team/app", "v1", DIGEST)
    assert ref.name == "localhost:5000/team/app"
    hub = parse("busybox")
    assert (hub.registry, hub.repository, hub.tag, hub.digest) == ("docker.io", "library/busybox", "latest", "")
    assert parse("busybox") == parse("docker.io/library/busybox:latest")
