"""fastbox against a real registry (Debian's docker-registry), images made by umoci and pushed by
skopeo, and back: pull and run multi-layer images, manifest kinds and platforms, Basic and
token auth, TLS policy, push read back by skopeo, and the image commands around them."""
import base64
import json
import os
import subprocess
import sys

import pytest

import fastbox

pytest.register_assert_rewrite("conftest_registry")
from conftest_registry import (PASSWORD, USER, Registry, TokenServer, busybox_layer,  # noqa: E402
                               skopeo, skopeo_push, tar_of, umoci)
from fastbox.images.store import ImageStore  # noqa: E402
from test_lifecycle import ok  # noqa: F401

pytest_plugins = ["conftest_registry"]
FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


def cli(*args, input=None, env=None):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          env=dict(os.environ, **(env or {})))


def error_line(r):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr
    return lines[0]


def sh(ref, script, **opts):
    r = fastbox.run(ref, ["/bin/sh", "-c", script], capture_output=True, **opts)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r.stdout.decode()


def registry_manifest(host, repo, ref, accept="application/vnd.oci.image.manifest.v1+json"):
    import httpx
    r = httpx.get(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    r.raise_for_status()
    return r


# ---------------------------------------------------------------- pull and run

def test_pull_multilayer_image_and_run_it(pushed, own_store):
    r = ok(cli("pull", pushed["multi"]))
    lines = r.stdout.splitlines()
    assert lines[0] == "v1: Pulling from fbtest/multi"
    assert sum(line.endswith(": Pull complete") for line in lines) == 4
    assert lines[-1] == pushed["multi"] and lines[-2].startswith("Status: Downloaded newer image")

    image = ImageStore().resolve(pushed["multi"])
    assert len(image.layer_dirs) == 4 and image.cmd == ("/bin/sh", "-c", "echo hello from multi")
    assert fastbox.run(pushed["multi"], capture_output=True).stdout == b"hello from multi\n"
    out = sh(pushed["multi"], """
        test ! -e /etc/gone && echo gone-is-gone
        test -f /d && cat /d
        test -d /x && cat /x/inner
        ls /opq
        echo "$FOO $(pwd)"
        stat -c '%u:%g %a %Y' /keep
        test /hard1 -ef /hard2 && echo hardlinked
        readlink /link
        stat -c '%F %t:%T' /fbnull
    """)
    assert out.split("\n")[:-1] == [
        "gone-is-gone", "now a file", "x is a dir", "new", "bar /x", "1000:1001 640 1650000000",
        "hardlinked", "keep", "character special file 1:3"]
    bottom = image.layer_dirs[-1]  # the first layer on disk keeps the xattr
    assert os.getxattr(os.path.join(bottom, "keep"), "user.fastbox") == b"yes"


def test_docker_v2s2_manifest_shares_everything_with_the_oci_one(pushed, own_store):
    ok(cli("pull", "-q", pushed["multi"]))
    r = ok(cli("pull", pushed["multi_v2s2"]))
    assert r.stdout.count("Already exists") == 4  # same layer blobs: nothing downloaded
    store = ImageStore()
    oci, v2s2 = store.resolve(pushed["multi"]), store.resolve(pushed["multi_v2s2"])
    assert oci.id == v2s2.id and oci.layer_dirs == v2s2.layer_dirs
    assert oci.manifest_digest != v2s2.manifest_digest
    types = {name: e["mediaType"] for name, e in store.entries()}
    assert types[pushed["multi_v2s2"]] == "application/vnd.docker.distribution.manifest.v2+json"
    assert sh(pushed["multi_v2s2"], "cat /d") == "now a file\n"


def test_uncompressed_and_zstd_layers(pushed, own_store):
    ok(cli("pull", pushed["plain"]))
    ok(cli("pull", pushed["zstd"]))
    assert fastbox.run(pushed["plain"], capture_output=True).stdout == b"plain\n"
    assert fastbox.run(pushed["zstd"], capture_output=True).stdout == b"zstd layer\n"
    store = ImageStore()
    layers = {name: [d["mediaType"] for d in json.loads(store.read_blob(e["digest"]))["layers"]]
              for name, e in store.entries()}
    assert layers[pushed["plain"]] == ["application/vnd.oci.image.layer.v1.tar"]
    assert layers[pushed["zstd"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 2


@pytest.mark.parametrize("kind", ["multiarch", "multiarch_v2s2"])
def test_platform_is_chosen_from_an_index(pushed, registry, own_store, kind):
    ref = pushed[kind]
    ok(cli("pull", ref))
    assert sh(ref, "cat /arch") == "amd64\n"

    arm = ref.replace(":v", ":arm-v")
    ok(cli("tag", ref, arm))  # keep the amd64 one under another name
    ok(cli("pull", "--platform", "linux/arm64", ref))
    store = ImageStore()
    [arm_layer] = store.resolve(ref).layer_dirs
    with open(os.path.join(arm_layer, "arch")) as f:
        assert f.read() == "arm64\n"
    assert store.describe(ref)["config"]["architecture"] == "arm64"

    line = error_line(cli("pull", "--platform", "linux/s390x", ref))
    assert "no matching manifest for linux/s390x" in line
    assert "invalid platform" in error_line(cli("pull", "--platform", "amd64", ref))

    # The index digest is what the registry calls the image: it resolves locally too.
    accept = ("application/vnd.oci.image.index.v1+json" if kind == "multiarch"
              else "application/vnd.docker.distribution.manifest.list.v2+json")
    index_digest = registry_manifest(registry.host, "fbtest/multiarch", ref.rpartition(":")[2],
                                     accept).headers["docker-content-digest"]
    by_index = ref.rpartition(":")[0] + "@" + index_digest
    assert store.resolve(by_index).id == store.resolve(ref).id
    repo_digests = json.loads(ok(cli("image", "inspect", ref)).stdout)[0]["RepoDigests"]
    assert repo_digests == [by_index]


def test_pull_by_digest_is_untagged(pushed, registry, own_store):
    digest = registry_manifest(registry.host, "fbtest/plain", "v1").headers["docker-content-digest"]
    ref = f"{registry.host}/fbtest/plain@{digest}"
    r = ok(cli("pull", ref))
    assert r.stdout.splitlines()[-1] == ref
    assert ImageStore().resolve(ref).manifest_digest == digest
    rows = [json.loads(line) for line in ok(cli("images", "--format", "json")).stdout.splitlines()]
    assert [(row["Repository"], row["Tag"]) for row in rows] == [(f"{registry.host}/fbtest/plain", "<none>")]


def test_second_pull_downloads_nothing(pushed, registry, own_store):
    ok(cli("pull", pushed["multi"]))
    before = registry.log().count("/blobs/sha256:")
    r = ok(cli("pull", pushed["multi"]))
    assert "Status: Image is up to date for" in r.stdout
    assert registry.log().count("/blobs/sha256:") == before  # only the manifest was asked for


def test_missing_image_and_unreachable_registry(registry, own_store):
    line = error_line(cli("pull", f"{registry.host}/fbtest/nope:v1"))
    assert "not found" in line and line.count("manifest unknown") == 1, line
    assert "invalid reference format" in error_line(cli("pull", "team/UPPER"))
    line = error_line(cli("pull", "127.0.0.1:9/x:y"))
    assert "cannot reach registry" in line and "connection refused" in line
    assert "--insecure" not in line  # nothing listens: no plain-HTTP hint
    line = error_line(cli("pull", "no-such-host.invalid/x:y"))
    assert "does not resolve" in line and "DNS" in line and "--insecure" not in line


# ---------------------------------------------------------------- auth

def test_basic_auth_login_pull_push_logout(basic_registry, built, docker_config, own_store):
    ref = f"{basic_registry.host}/fbtest/private:v1"
    skopeo_push(built["hand"], "plain", ref, "--dest-creds", f"{USER}:{PASSWORD}")
    assert "authentication required" in error_line(cli("pull", ref))

    r = cli("login", basic_registry.host, "-u", USER, "-p", "wrong")
    assert "incorrect username or password" in error_line(r)
    assert not (docker_config / "config.json").exists()

    ok(cli("login", basic_registry.host, "-u", USER, "--password-stdin", input=PASSWORD + "\n"))
    cfg = json.loads((docker_config / "config.json").read_text())
    assert cfg["auths"][basic_registry.host]["auth"] == base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert oct((docker_config / "config.json").stat().st_mode & 0o777) == "0o600"

    ok(cli("pull", ref))
    ok(cli("tag", ref, f"{basic_registry.host}/fbtest/private:copy"))
    ok(cli("push", f"{basic_registry.host}/fbtest/private:copy"))
    assert skopeo("inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                  f"docker://{basic_registry.host}/fbtest/private:copy").returncode == 0

    assert ok(cli("logout", basic_registry.host)).stdout == f"Removing login credentials for {basic_registry.host}\n"
    assert json.loads((docker_config / "config.json").read_text())["auths"] == {}
    assert ok(cli("logout", basic_registry.host)).stdout.startswith("Not logged in")


def test_token_auth_anonymous_get_and_login_post(token_registry, token_server, built,
                                                  docker_config, own_store):
    creds = ("--dest-creds", f"{USER}:{PASSWORD}")
    public, private = f"{token_registry.host}/public/img:v1", f"{token_registry.host}/team/img:v1"
    skopeo_push(built["hand"], "plain", public, *creds)
    skopeo_push(built["hand"], "zstd", private, *creds)
    del token_server.requests[:]

    ok(cli("pull", public))  # anonymous: a GET to the token service, pull scope granted
    assert ("GET", ["repository:public/img:pull"], None) in token_server.requests
    assert "unauthorized" in error_line(cli("pull", private))

    ok(cli("login", token_registry.host, "-u", USER, "-p", PASSWORD))
    del token_server.requests[:]
    ok(cli("pull", private))  # with a secret: the OAuth2 POST form
    assert token_server.requests == [("POST", ["repository:team/img:pull"], USER)]
    assert fastbox.run(private, capture_output=True).stdout == b"zstd layer\n"

    del token_server.requests[:]
    ok(cli("tag", private, f"{token_registry.host}/team/copy:v1"))
    r = ok(cli("push", f"{token_registry.host}/team/copy:v1"))
    assert "Mounted from team/img" in r.stdout  # cross-repository mount, no upload
    assert ("POST", ["repository:team/copy:pull,push", "repository:team/img:pull"], USER) in token_server.requests


def test_token_service_without_post_gets_get_with_basic(registry_workdir, built, docker_config, own_store):
    server = TokenServer(registry_workdir, post=False)
    reg = Registry(registry_workdir, "token-get-only", auth=server.auth_config())
    try:
        ref = f"{reg.host}/team/img:v1"
        skopeo_push(built["hand"], "plain", ref, "--dest-creds", f"{USER}:{PASSWORD}")
        ok(cli("login", reg.host, "-u", USER, "-p", PASSWORD))
        del server.requests[:]
        ok(cli("pull", ref))
        assert server.requests == [("GET", ["repository:team/img:pull"], USER)]  # POST was a 404
    finally:
        reg.stop()
        server.stop()


def test_credential_helper(basic_registry, built, docker_config, own_store, tmp_path, monkeypatch):
    """credsStore: secrets go through docker-credential-NAME, never into config.json."""
    store_file = tmp_path / "helper-store.json"
    helper = tmp_path / "bin" / "docker-credential-fbtest"
    helper.parent.mkdir()
    helper.write_text(f"""#!{sys.executable}
import json, sys
path = {str(store_file)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action, body = sys.argv[1], sys.stdin.read()
if action == "store":
    entry = json.loads(body)
    data[entry["ServerURL"]] = entry
elif action == "get":
    if body.strip() not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(data[body.strip()]))
elif action == "erase":
    data.pop(body.strip(), None)
json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    (docker_config / "config.json").write_text('{"credsStore": "fbtest"}')
    ref = f"{basic_registry.host}/fbtest/helper:v1"
    skopeo_push(built["hand"], "plain", ref, "--dest-creds", f"{USER}:{PASSWORD}")

    ok(cli("login", basic_registry.host, "-u", USER, "-p", PASSWORD))
    assert PASSWORD not in (docker_config / "config.json").read_text()
    assert json.loads(store_file.read_text())[basic_registry.host]["Secret"] == PASSWORD
    ok(cli("pull", ref))
    ok(cli("logout", basic_registry.host))
    assert json.loads(store_file.read_text()) == {}


# ---------------------------------------------------------------- TLS policy

def test_plain_http_only_for_insecure_registries(pushed, own_store):
    env = {"FASTBOX_INSECURE_REGISTRIES": ""}  # not even loopback
    line = error_line(cli("pull", pushed["plain"], env=env))
    assert "cannot reach registry" in line and "--insecure" in line
    ok(cli("pull", "--insecure", pushed["plain"], env=env))
    ok(cli("pull", pushed["plain"], env={"FASTBOX_INSECURE_REGISTRIES": "10.0.0.0/8,127.0.0.0/8"}))


def test_tls_registry_verified_with_its_ca(registry_workdir, built, own_store, tmp_path):
    certs = tmp_path / "tls"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", certs / "key.pem", "-out", certs / "cert.pem"],
                   check=True, capture_output=True)
    reg = Registry(registry_workdir, "tls", tls={"certificate": str(certs / "cert.pem"),
                                                 "key": str(certs / "key.pem")})
    try:
        ref = f"{reg.host}/fbtest/tls:v1"
        skopeo_push(built["hand"], "plain", ref)
        secure = {"FASTBOX_INSECURE_REGISTRIES": "", "FASTBOX_CERTS_DIR": str(tmp_path / "certs.d")}
        assert "CERTIFICATE_VERIFY_FAILED" in error_line(cli("pull", ref, env=secure))
        (tmp_path / "certs.d" / reg.host).mkdir(parents=True)
        (tmp_path / "certs.d" / reg.host / "ca.crt").write_bytes((certs / "cert.pem").read_bytes())
        ok(cli("pull", ref, env=secure))
        ok(cli("pull", ref))  # loopback is insecure by default: TLS without verification
    finally:
        reg.stop()


# ---------------------------------------------------------------- push

def test_push_is_read_back_by_skopeo_with_the_same_digests(pushed, registry, own_store, tmp_path):
    ok(cli("pull", pushed["multi"]))
    target = f"{registry.host}/fbtest/pushed:v1"
    ok(cli("tag", pushed["multi"], target))
    r = ok(cli("push", target))
    assert r.stdout.splitlines()[0] == f"The push refers to repository [{registry.host}/fbtest/pushed]"
    assert r.stdout.count("Mounted from fbtest/multi") == 5  # 4 layers + config
    image = ImageStore().resolve(target)
    assert r.stdout.splitlines()[-1] == f"v1: digest: {image.manifest_digest} size: " \
        f"{len(ImageStore().read_blob(image.manifest_digest))}"

    out = tmp_path / "skopeo-oci"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:x")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.manifest_digest
    manifest = json.loads((out / "blobs/sha256" / image.manifest_digest[7:]).read_text())
    assert manifest["config"]["digest"] == image.id


def test_push_new_content_monolithic_and_chunked(registry, own_store, tmp_path):
    from fastbox.images.push import push
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(busybox_layer() + b"")
    big = tmp_path / "big.tar"
    big.write_bytes(tar_of([("data", "file", os.urandom(3 << 20), 0o644)]))
    ok(cli("import", tarball, f"{registry.host}/fbtest/fresh:mono"))
    ok(cli("import", big, f"{registry.host}/fbtest/fresh:chunked"))
    ok(cli("push", f"{registry.host}/fbtest/fresh:mono"))
    digest = push(f"{registry.host}/fbtest/fresh:chunked", chunk_size=1 << 20)
    assert registry.log().count("PATCH /v2/fbtest/fresh/blobs/uploads/") >= 3
    assert ImageStore().resolve(f"{registry.host}/fbtest/fresh:chunked").manifest_digest == digest

    for tag in ("mono", "chunked"):
        out = tmp_path / f"back-{tag}"
        skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{registry.host}/fbtest/fresh:{tag}",
               f"oci:{out}:x")
        umoci("unpack", "--image", f"{out}:x", str(tmp_path / f"bundle-{tag}"))
    assert (tmp_path / "bundle-chunked/rootfs/data").read_bytes() == \
        __import__("tarfile").open(big).extractfile("data").read()
    assert (tmp_path / "bundle-mono/rootfs/bin/busybox").read_bytes() == open("/bin/busybox", "rb").read()


def test_push_needs_the_tag_locally(registry, own_store):
    line = error_line(cli("push", f"{registry.host}/fbtest/absent:v1"))
    assert "unable to find image" in line


# ---------------------------------------------------------------- image commands

def test_inspect_and_history(pushed, registry, own_store):
    ok(cli("pull", pushed["multi"]))
    [info] = json.loads(ok(cli("image", "inspect", pushed["multi"])).stdout)
    image = ImageStore().resolve(pushed["multi"])
    assert info["Id"] == image.id and info["RepoTags"] == [pushed["multi"]]
    assert info["RepoDigests"] == [f"{registry.host}/fbtest/multi@{image.manifest_digest}"]
    assert info["Config"]["Env"][-1] == "FOO=bar" and len(info["RootFS"]["Layers"]) == 4
    assert ok(cli("image", "inspect", "-f", "{{.Config.WorkingDir}} {{json .Os}}",
                  pushed["multi"])).stdout == '/x "linux"\n'
    rows = [json.loads(line) for line in ok(cli("history", "--format", "json", pushed["multi"])).stdout.splitlines()]
    assert [r["created_by"] for r in rows] == ["umoci config"] + ["umoci repack"] * 4
    assert rows[0]["id"] == image.id and rows[0]["size"] == 0 and rows[1]["size"] > 256 << 10
    table = ok(cli("history", pushed["multi"])).stdout.splitlines()
    assert table[0].split()[:2] == ["IMAGE", "CREATED"] and table[1].startswith(image.id[7:19])
    assert "no such object" in error_line(cli("image", "inspect", "nothing-here"))


def test_rmi_refuses_an_image_a_kept_container_uses(pushed, own_store):
    ok(cli("pull", pushed["plain"]))
    kept = fastbox.run(pushed["plain"], ["/bin/sh", "-c", "true"], remove=False, capture_output=True)
    image = ImageStore().resolve(pushed["plain"])
    try:
        line = error_line(cli("rmi", pushed["plain"]))
        assert f"container {kept.id[:12]} is using its referenced image {image.id[7:19]}" in line
        r = ok(cli("rmi", "-f", pushed["plain"]))
        assert r.stdout == f"Untagged: {pushed['plain']}\n"  # untagged, but kept for the container
        assert all(os.path.isdir(d) for d in image.layer_dirs)
        assert ok(cli("image", "prune", "-f")).stdout == "Total reclaimed space: 0B\n"
    finally:
        ok(cli("rm", kept.id))
    r = ok(cli("image", "prune", "-f"))
    assert f"deleted: {image.id}" in r.stdout and "Total reclaimed space: " in r.stdout
    assert not any(os.path.exists(d) for d in image.layer_dirs)


def test_prune_and_system_df(pushed, own_store):
    ok(cli("pull", pushed["multi"]))
    ok(cli("pull", pushed["plain"]))
    df = ok(cli("system", "df")).stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "2", "0"]
    ok(cli("rmi", pushed["plain"]))
    r = ok(cli("image", "prune", "-a", "-f"))
    assert f"untagged: {pushed['multi']}" in r.stdout
    assert not r.stdout.endswith("Total reclaimed space: 0B\n")
    for sub in ("blobs/sha256", "layers", "resolved", "refs", "ingest"):
        assert os.listdir(own_store / sub) == [], sub
    assert ok(cli("system", "df")).stdout.splitlines()[1].split()[:3] == ["Images", "0", "0"]


def _pull_on_a_terminal(*args):
    """`fastbox pull ARGS` with stderr on a pty: (stdout, what the terminal showed)."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([FASTBOX, "pull", *args], stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL)
        os.close(slave)
        slave, shown = -1, []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            shown.append(data)
        out = p.communicate(timeout=120)[0]
        assert p.returncode == 0, out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return out.decode(), b"".join(shown).decode(errors="replace")


def test_progress_bars_on_a_terminal_and_quiet(pushed, own_store):
    out, shown = _pull_on_a_terminal(pushed["multi"])
    assert "Pull complete" in shown and "━" in shown  # a rich bar per layer, on stderr
    assert out.splitlines()[-1] == pushed["multi"] and "Pull complete" not in out
    ok(cli("rmi", pushed["multi"]))
    out, shown = _pull_on_a_terminal("-q", pushed["multi"])
    assert (out, shown) == (pushed["multi"] + "\n", "")


def test_platform_of_a_single_platform_image_must_match_when_asked(pushed, own_store):
    line = error_line(cli("pull", "--platform", "linux/arm64", pushed["plain"]))
    assert "does not match the specified platform: wanted linux/arm64, actual: linux/amd64" in line
    ok(cli("pull", "--platform", "linux/amd64", pushed["plain"]))
