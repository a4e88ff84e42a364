"""Real registries and real images for the registry, archive and pull-safety tests.

Loaded as a plugin (`pytest_plugins = ["conftest_registry"]` in those modules), so its session
fixtures exist once however many modules use them.

- Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, free ports, filesystem storage
  in the session's temp dir and a config written here (never the package's own, which turns
  htpasswd on with a bad path): a plain one, one with htpasswd Basic auth (`htpasswd -Bbn`:
  bcrypt is required), one with token auth whose token service is TokenServer below.
- Test images built with `umoci` (init/new/unpack, edit the rootfs, `repack --refresh-bundle`
  per layer, `config --config.cmd`) or written as an OCI layout here when umoci cannot make
  them (uncompressed or hostile layers, an index), pushed with `skopeo`.

Lifetimes and the leak check: the registries are session-scoped, and pytest sets up a
session fixture before the test's function-scoped autouse `_isolated`, which records the
child processes alive at its start and fails the test only for new ones. So a registry is not
a leak; its finalizer kills it (SIGKILL, by its own pid, then reaped) at the end of the
session. Threads (the token server, the stalling proxy) are not processes.

skopeo keeps a blob-info cache in /var/lib/containers/cache (as root) and uses it to reuse or
mount blobs across runs; every skopeo here runs in a private mount namespace with a tmpfs
there, so runs are independent and the host's cache is untouched.
"""
import base64
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse

import pytest

TOOLS = ("docker-registry", "umoci", "skopeo", "htpasswd", "openssl")
USER, PASSWORD = "fbuser", "fb-secret-pw"
MTIME = 1_650_000_000


def require_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt: docker-registry umoci skopeo apache2-utils openssl)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes

class Registry:
    """One docker-registry process; `host` is what image references name ("127.0.0.1:PORT")."""

    def __init__(self, workdir, name, auth=None, tls=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.storage = os.path.join(self.dir, "storage")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        http_cfg = {"addr": self.host}
        if tls:
            http_cfg["tls"] = tls
        config = {"version": "0.1", "log": {"level": "info", "accesslog": {"disabled": False}},
                  "storage": {"filesystem": {"rootdirectory": self.storage},
                              "delete": {"enabled": True}},
                  "http": http_cfg}
        if auth:
            config["auth"] = auth
        path = os.path.join(self.dir, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.log_path = os.path.join(self.dir, "registry.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError("docker-registry did not start listening")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def blob_data(self, digest):
        """Where the registry keeps a blob's bytes (for tests that corrupt them)."""
        hex_ = digest[7:]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hex_[:2], hex_, "data")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class TokenServer:
    """A token service for the registry's `auth.token`: RS256 JWTs whose x5c chain is a
    self-signed certificate, the registry's rootcertbundle. USER/PASSWORD get every action
    they ask for; anonymous callers get pull on repositories under "public/". Answers GET
    (Basic auth) and, unless `post` is False, POST (the OAuth2 password form). Records each
    request as (method, scopes, user)."""

    SERVICE, ISSUER = "fastbox-test-registry", "fastbox-test-issuer"

    def __init__(self, workdir, post=True):
        self.dir = os.path.join(workdir, f"token-{os.urandom(3).hex()}")
        os.makedirs(self.dir)
        self.key, self.cert = os.path.join(self.dir, "key.pem"), os.path.join(self.dir, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=fastbox-test-token", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        with open(self.cert) as f:
            self.x5c = "".join(line.strip() for line in f if not line.startswith("-----"))
        self.post, self.requests = post, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = _basic_user(self.headers.get("Authorization", ""))
                server._answer(self, "GET", query.get("scope", []), user)

            def do_POST(self):
                if not server.post:
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                user = None
                if form.get("grant_type") == ["password"]:
                    user = (form.get("username", [""])[0], form.get("password", [""])[0])
                scopes = " ".join(form.get("scope", [])).split()
                server._answer(self, "POST", scopes, user)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def auth_config(self):
        return {"token": {"realm": self.realm, "service": self.SERVICE, "issuer": self.ISSUER,
                          "rootcertbundle": self.cert}}

    def _answer(self, handler, method, scopes, user):
        if user is not None and user != (USER, PASSWORD):
            self.requests.append((method, scopes, "rejected"))
            handler.send_error(401)
            return
        self.requests.append((method, scopes, user[0] if user else None))
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = actions.split(",") if user else \
                [a for a in actions.split(",") if a == "pull" and name.startswith("public/")]
            access.append({"type": kind, "name": name, "actions": allowed})
        body = json.dumps({"token": self._sign(user[0] if user else "", access),
                           "expires_in": 300}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _sign(self, subject, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": subject, "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        return signing_input + "." + _b64url(signature)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class StallingProxy:
    """A plain-HTTP proxy in front of a registry. While `stall_after` is set, a blob body is
    passed on up to that many bytes, then the proxy stalls (until release()), so a pull can
    be killed in the middle of a download. Records every blob request's Range header."""

    def __init__(self, upstream, stall_after):
        self.upstream, self.stall_after = upstream, stall_after
        self.stalled, self.released, self.ranges = threading.Event(), threading.Event(), []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._forward(self)

            def do_HEAD(self):
                proxy._forward(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _forward(self, handler):
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
        is_blob = "/blobs/" in handler.path
        if is_blob and handler.command == "GET":
            self.ranges.append(handler.headers.get("Range"))
        conn.request(handler.command, handler.path, headers=headers)
        r = conn.getresponse()
        handler.send_response(r.status)
        for key, value in r.getheaders():
            if key.lower() not in ("connection", "transfer-encoding"):
                handler.send_header(key, value)
        body = r.read() if handler.command != "HEAD" else b""
        if "content-length" not in {k.lower() for k, _ in r.getheaders()}:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            limit = self.stall_after if is_blob else None
            if limit is not None and len(body) > limit:
                handler.wfile.write(body[:limit])
                handler.wfile.flush()
                self.stalled.set()
                self.released.wait(60)
                body = body[limit:]
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            conn.close()

    def release(self):
        self.stall_after = None
        self.released.set()

    def stop(self):
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


def _basic_user(header):
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return (user, password)


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- tools

def skopeo(*args, check=True):
    """skopeo in a private mount namespace, its blob-info cache on a throwaway tmpfs."""
    cache = "/var/lib/containers"
    script = (f'mount -t tmpfs tmpfs {cache} && exec "$@"' if os.path.isdir(cache) else 'exec "$@"')
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "_",
                        "skopeo", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)}: {r.stderr}")
    return r


def skopeo_push(layout, tag, dest, *extra):
    return skopeo("copy", "-q", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}", f"docker://{dest}")


def umoci(*args):
    return subprocess.run(["umoci", *args], check=True, capture_output=True, text=True)


class Layout:
    """An OCI image layout written by hand, for what umoci cannot make."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.manifests = []

    def blob(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers, tag=None, cmd=("/bin/sh",), arch="amd64", compress=None):
        """layers: plain tar bytes each (compressed with `compress`: None, "gzip", "zstd")."""
        descs, diff_ids = [], []
        for tar in layers:
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
            data, suffix = tar, ""
            if compress == "gzip":
                import gzip
                data, suffix = gzip.compress(tar, mtime=0), "+gzip"
            elif compress == "zstd":
                import zstandard
                data, suffix = zstandard.ZstdCompressor().compress(tar), "+zstd"
            descs.append(self.blob(data, "application/vnd.oci.image.layer.v1.tar" + suffix))
        cfg = {"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
               "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"]},
               "rootfs": {"type": "layers", "diff_ids": diff_ids},
               "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
                           for i in range(len(layers))]}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": self.blob(json.dumps(cfg).encode(), "application/vnd.oci.image.config.v1+json"),
                    "layers": descs}
        desc = self.blob(json.dumps(manifest).encode(), manifest["mediaType"])
        if tag:
            self.add(desc, tag)
        return desc

    def index(self, entries, tag):
        """entries: [(manifest descriptor, {"os":..., "architecture":...})]."""
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [dict(d, platform=p) for d, p in entries]}
        desc = self.blob(json.dumps(index).encode(), index["mediaType"])
        self.add(desc, tag)
        return desc

    def add(self, desc, tag):
        self.manifests.append(dict(desc, annotations={"org.opencontainers.image.ref.name": tag}))
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f)


def tar_of(entries):
    """A layer tar from (name, kind, data/target, mode) tuples; kind: file, dir, symlink,
    hardlink, or a ready TarInfo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = MTIME, mode
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE}[kind]
            info.linkname = data or ""
            tar.addfile(info)
    return buf.getvalue()


def busybox_layer():
    """/bin/busybox (static) and /bin/sh -> busybox."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    return tar_of([("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755),
                   ("bin/sh", "symlink", "busybox", 0o777), ("tmp", "dir", None, 0o1777)])


def build_multilayer(workdir):
    """A 4-layer image made with umoci, as a real build would leave one:
    1. busybox; /etc/gone; /d/f; /keep (0640, 1000:1001, fixed mtime, user xattr);
       /hard1 = /hard2; /link -> keep; /fbnull (char 1:3); /opq/old
    2. /etc/gone deleted; the directory /d replaced by a file; /opq emptied and refilled; /x a file
    3. the file /x replaced by a directory; /added
    4. /big-ish: a 256 KiB file, so one layer is worth downloading
    Returns the OCI layout path (tag "multi")."""
    layout, bundle = os.path.join(workdir, "oci"), os.path.join(workdir, "bundle")
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:multi")
    umoci("unpack", "--image", f"{layout}:multi", bundle)
    root = os.path.join(bundle, "rootfs")

    def write(rel, data, mode=0o644):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    os.makedirs(os.path.join(root, "bin"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
    os.symlink("busybox", os.path.join(root, "bin/sh"))
    write("etc/gone", b"gone\n")
    write("d/f", b"f\n")
    write("keep", b"keep\n", 0o640)
    os.chown(os.path.join(root, "keep"), 1000, 1001)
    os.setxattr(os.path.join(root, "keep"), "user.fastbox", b"yes")
    os.utime(os.path.join(root, "keep"), (MTIME, MTIME))
    write("hard1", b"hard\n")
    os.link(os.path.join(root, "hard1"), os.path.join(root, "hard2"))
    os.symlink("keep", os.path.join(root, "link"))
    os.mknod(os.path.join(root, "fbnull"), 0o20666, os.makedev(1, 3))
    write("opq/old", b"old\n")
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:multi", bundle)

    os.unlink(os.path.join(root, "etc/gone"))
    shutil.rmtree(os.path.join(root, "d"))
    write("d", b"now a file\n")
    shutil.rmtree(os.path.join(root, "opq"))
    write("opq/new", b"new\n")
    write("x", b"x was a file\n")
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:multi", bundle)

    os.unlink(os.path.join(root, "x"))
    write("x/inner", b"x is a dir\n")
    write("added", b"added\n")
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:multi", bundle)

    write("bigish", os.urandom(256 << 10))
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:multi", bundle)
    umoci("config", "--image", f"{layout}:multi", "--config.cmd", "/bin/sh",
          "--config.cmd", "-c", "--config.cmd", "echo hello from multi",
          "--config.env", "FOO=bar", "--config.workingdir", "/x")
    return layout


def build_big(workdir, size):
    """busybox plus one layer holding `size` random bytes (incompressible: gzip keeps it big)."""
    layout = Layout(os.path.join(workdir, "big"))
    big = tar_of([("blob.bin", "file", os.urandom(size), 0o644)])
    layout.image([busybox_layer(), big], tag="big", compress="gzip")
    return layout.path


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def registry_workdir(tmp_path_factory):
    require_tools()
    return str(tmp_path_factory.mktemp("registries"))


@pytest.fixture(scope="session")
def registry(registry_workdir):
    """A plain registry (no auth), loopback so fastbox allows plain HTTP."""
    reg = Registry(registry_workdir, "plain")
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def basic_registry(registry_workdir):
    """A registry with htpasswd Basic auth for USER/PASSWORD."""
    path = os.path.join(registry_workdir, "htpasswd")
    line = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True,
                          text=True).stdout.strip()
    with open(path, "w") as f:
        f.write(line + "\n")
    reg = Registry(registry_workdir, "basic", auth={"htpasswd": {"realm": "fastbox-test", "path": path}})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_server(registry_workdir):
    server = TokenServer(registry_workdir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(registry_workdir, token_server):
    """A registry with token auth, tokens from token_server."""
    reg = Registry(registry_workdir, "token", auth=token_server.auth_config())
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The test images as OCI layouts: `multi` (umoci, 4 layers) and `plain` (one uncompressed
    layer), `zstd` (the same layers zstd-compressed), `multiarch` (an index: amd64 = the
    multi image, arm64 = a one-layer image) and `hostile` (escape attempts)."""
    require_tools()
    work = str(tmp_path_factory.mktemp("images"))
    multi = build_multilayer(work)
    layout = Layout(os.path.join(work, "hand"))
    layout.image([busybox_layer()], tag="plain", cmd=("/bin/sh", "-c", "echo plain"))
    layout.image([busybox_layer(), tar_of([("z", "file", b"zstd layer\n", 0o644)])], tag="zstd",
                 compress="zstd", cmd=("/bin/sh", "-c", "cat /z"))
    amd64 = layout.image([busybox_layer(), tar_of([("arch", "file", b"amd64\n", 0o644)])], compress="gzip")
    arm64 = layout.image([tar_of([("arch", "file", b"arm64\n", 0o644)])], arch="arm64", compress="gzip")
    layout.index([(amd64, {"os": "linux", "architecture": "amd64"}),
                  (arm64, {"os": "linux", "architecture": "arm64", "variant": "v8"})], "multiarch")
    return {"multi": multi, "hand": layout.path, "work": work}


@pytest.fixture(scope="session")
def pushed(registry, built):
    """The built images in the plain registry: {name: reference}."""
    refs = {
        "multi": f"{registry.host}/fbtest/multi:v1",
        "multi_v2s2": f"{registry.host}/fbtest/multi:v2s2",
        "plain": f"{registry.host}/fbtest/plain:v1",
        "zstd": f"{registry.host}/fbtest/zstd:v1",
        "multiarch": f"{registry.host}/fbtest/multiarch:v1",
        "multiarch_v2s2": f"{registry.host}/fbtest/multiarch:v2s2",
    }
    skopeo_push(built["multi"], "multi", refs["multi"])
    skopeo_push(built["multi"], "multi", refs["multi_v2s2"], "--format", "v2s2")
    skopeo_push(built["hand"], "plain", refs["plain"], "--preserve-digests")
    skopeo_push(built["hand"], "zstd", refs["zstd"], "--preserve-digests")
    skopeo_push(built["hand"], "multiarch", refs["multiarch"], "--all", "--preserve-digests")
    skopeo_push(built["hand"], "multiarch", refs["multiarch_v2s2"], "--all", "--format", "v2s2")
    return refs


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """An empty $DOCKER_CONFIG for the test (login state never leaks between tests)."""
    path = tmp_path / "docker-config"
    path.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(path))
    return path


@pytest.fixture
def own_store(tmp_path, monkeypatch):
    """A FASTBOX_ROOT with an image store of the test's own (not the session's shared one),
    for tests that count what the store holds."""
    root = tmp_path / "own-root"
    root.mkdir()
    monkeypatch.setenv("FASTBOX_ROOT", str(root))
    return root / "images"
