"""A client for the OCI distribution API (a registry's /v2/), over httpx.

One RegistryClient talks to one registry and may be shared by threads (downloads in parallel).
It finds the scheme and the auth scheme with one ping of /v2/ and then follows whatever 401
challenges come: Basic with stored credentials, or Bearer with a token from the challenge's
realm, fetched the way containerd does (an OAuth2 POST form when there is a secret, falling back
to GET with Basic auth for token servers without one; an anonymous GET otherwise), one token per
set of scopes.

TLS is the default. Plain HTTP is allowed only for insecure registries: --insecure, the
FASTBOX_INSECURE_REGISTRIES list or /etc/fastbox/registries.json ("insecure-registries"), and
loopback addresses (127.0.0.0/8, ::1, localhost) unless that list is given explicitly. As
Docker does, an insecure registry is tried over HTTPS without certificate checks first, then
over plain HTTP. A registry's own CA and client certificates are read from
/etc/fastbox/certs.d/HOST[:PORT]/ (or $FASTBOX_CERTS_DIR/...), then /etc/docker/certs.d/...:
*.crt are CAs, NAME.cert with NAME.key a client certificate.

What this registry server quirks taught (distribution 2.8): an OCI manifest asked for with
Docker's Accept types only is a 404, and a Docker manifest asked for with no Accept header
comes back as schema 1, so every request names all four manifest types; a one-request
monolithic upload (POST ?digest=) stores nothing, so uploads are POST then PUT, or POST,
PATCHes, PUT.
"""
import hashlib
import ipaddress
import json
import os
import threading

import httpx

from fastbox.errors import DigestMismatch, RegistryError
from fastbox.images import auth

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
MAX_MANIFEST = 4 << 20  # containerd's limit: a manifest or index is small JSON
CHUNK = 1 << 20
LOOPBACK = ("127.0.0.0/8", "::1/128", "localhost")
_USER_AGENT = "fastbox/0.1"


class TransportFailure(RegistryError):
    """The connection failed (refused, reset, timed out): worth retrying, unlike an answer."""


class RegistryClient:
    """client = RegistryClient("127.0.0.1:5000"); use as a context manager to close it."""

    def __init__(self, registry, *, insecure=False, credentials=None, lookup_credentials=True):
        self.registry = registry
        self.host = "registry-1.docker.io" if registry == "docker.io" else registry
        self.insecure = insecure or is_insecure(registry)
        if credentials is None and lookup_credentials:
            credentials = auth.credentials(registry)
        self.credentials = credentials
        self._http = httpx.Client(
            verify=_tls_context(registry, self.insecure), follow_redirects=True,
            timeout=httpx.Timeout(60.0, connect=15.0), trust_env=not _is_loopback(registry),
            headers={"User-Agent": _USER_AGENT})
        self._base = None        # "https://host" once a ping has answered
        self._challenge = None   # (scheme, params) from the registry's 401s
        self._tokens = {}        # scopes -> bearer token
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._http.close()

    # Manifests

    def manifest(self, repo, reference):
        """(bytes, media type, digest) of a manifest or index by tag or digest; the digest is
        checked against the one asked for or the one the registry announces."""
        r = self._request("GET", f"/v2/{repo}/manifests/{reference}", _pull(repo),
                          headers={"Accept": ACCEPT}, stream=True)
        try:
            _check(r, f"{self.registry}/{repo}:{reference}" if ":" not in reference
                   else f"{self.registry}/{repo}@{reference}")
            data = _read_limited(r, MAX_MANIFEST, "manifest")
        finally:
            r.close()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        announced = r.headers.get("docker-content-digest", "")
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"manifest {reference} from {self.registry}/{repo} has digest {digest}")
        if announced.startswith("sha256:") and announced != digest:
            raise DigestMismatch(f"manifest {self.registry}/{repo}:{reference}: the registry "
                                 f"announced {announced}, the content has digest {digest}")
        return data, media_type_of(data, r.headers.get("content-type", "")), digest

    def put_manifest(self, repo, reference, data, media_type):
        r = self._request("PUT", f"/v2/{repo}/manifests/{reference}", _push(repo),
                          headers={"Content-Type": media_type}, content=data)
        _check(r, f"{self.registry}/{repo}:{reference}", (201, 200, 202))
        return r.headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(data).hexdigest()

    # Blobs

    def small_blob(self, repo, desc, limit=MAX_MANIFEST * 2):
        """A config blob's bytes, checked against its descriptor."""
        r = self._request("GET", f"/v2/{repo}/blobs/{desc['digest']}", _pull(repo), stream=True)
        try:
            _check(r, f"blob {desc['digest']}")
            data = _read_limited(r, min(limit, desc["size"]) + 1, "blob")
        finally:
            r.close()
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != desc["digest"] or len(data) != desc["size"]:
            raise DigestMismatch(f"blob {desc['digest']}: expected {desc['size']} bytes with that "
                                 f"digest, got {len(data)} bytes with digest {got}")
        return data

    def open_blob(self, repo, digest, offset=0):
        """A streaming response for a blob from byte `offset`, and the offset it really starts
        at (0 if the server ignored the Range). The caller closes it."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self._request("GET", f"/v2/{repo}/blobs/{digest}", _pull(repo), headers=headers,
                          stream=True)
        try:
            _check(r, f"blob {digest}", (200, 206))
        except BaseException:
            r.close()
            raise
        return r, (offset if r.status_code == 206 else 0)

    def blob_exists(self, repo, digest, scopes=None):
        r = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes or _pull(repo))
        if r.status_code == 404:
            return False
        _check(r, f"blob {digest}")
        return True

    def mount_blob(self, repo, digest, source):
        """Cross-repository mount: True if the registry linked `source`'s blob into `repo`
        (no upload needed). An upload the registry opened instead is cancelled."""
        r = self._request("POST", f"/v2/{repo}/blobs/uploads/", _push(repo) + _pull(source),
                          params={"mount": digest, "from": source})
        if r.status_code == 201:
            return True
        if r.status_code == 202 and r.headers.get("location"):
            self._request("DELETE", self._url(r.headers["location"]), _push(repo))
        elif r.status_code not in (202, 401, 403, 404):
            _check(r, f"mount of {digest}")
        return False

    def upload_blob(self, repo, digest, size, fileobj, chunk_size, on_progress=None):
        """Upload a blob: POST then one PUT with the data, or, above `chunk_size`, POST, a
        PATCH per chunk (each with its Content-Range) and an empty PUT."""
        r = self._request("POST", f"/v2/{repo}/blobs/uploads/", _push(repo))
        _check(r, f"upload of {digest}", (202,))
        location = self._url(r.headers["location"])
        if size > chunk_size:
            start = 0
            while start < size:
                data = fileobj.read(min(chunk_size, size - start))
                if not data:
                    raise RegistryError(f"blob {digest} is shorter than {size} bytes")
                r = self._request("PATCH", location, _push(repo), content=data, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(data) - 1}",
                    "Content-Length": str(len(data))})
                _check(r, f"upload of {digest}", (202,))
                location = self._url(r.headers["location"])
                start += len(data)
                if on_progress:
                    on_progress(len(data))
            body, length = b"", 0
        else:
            body, length = _counting(fileobj, on_progress), size
        sep = "&" if "?" in location else "?"
        r = self._request("PUT", f"{location}{sep}digest={digest}", _push(repo), content=body,
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Length": str(length)})
        _check(r, f"upload of {digest}", (201, 204))

    # Auth and transport

    def login(self):
        """Check the credentials against the registry (for `fastbox login`)."""
        self._ping()
        if self._challenge is None:
            return
        scheme, params = self._challenge
        if scheme == "basic":
            r = self._http.get(self._base + "/v2/", headers={"Authorization": self._basic()})
            if r.status_code == 401:
                raise RegistryError(f"login to {self.registry} failed: unauthorized: "
                                    "incorrect username or password")
            _check(r, self.registry)
        else:
            self._fetch_token(params, ())

    def _request(self, method, path, scopes, *, headers=None, stream=False, **kw):
        """Send with the auth the registry wants for `scopes`, learning it from a 401 once.
        A body is sent at most twice (so it must be bytes or re-readable), streams once."""
        if self._base is None:
            self._ping()
        url = path if "://" in path else self._base + path
        for attempt in (0, 1):
            h = dict(headers or {})
            authorization = self._authorization(scopes, fresh=attempt > 0)
            if authorization:
                h["Authorization"] = authorization
            request = self._http.build_request(method, url, headers=h, **kw)
            try:
                r = self._http.send(request, stream=stream)
            except httpx.HTTPError as e:
                raise TransportFailure(f"{method} {url}: {_why(e)}") from None
            challenges = auth.parse_challenges(r.headers.get("www-authenticate", ""))
            if r.status_code != 401 or attempt or not challenges or _not_replayable(kw):
                return r
            r.close()
            self._challenge = challenges[0]
        return r

    def _ping(self):
        last = None
        for scheme in ("https", "http") if self.insecure else ("https",):
            try:
                r = self._http.get(f"{scheme}://{self.host}/v2/")
            except httpx.HTTPError as e:
                last = e
                continue
            if r.status_code not in (200, 401):
                raise RegistryError(f"{self.registry} does not look like a registry: "
                                    f"GET /v2/ answered {r.status_code}")
            self._base = f"{scheme}://{self.host}"
            challenges = auth.parse_challenges(r.headers.get("www-authenticate", ""))
            self._challenge = challenges[0] if r.status_code == 401 and challenges else None
            return
        hint = _reach_hint(last, self.insecure) if last is not None else None
        # A refused connection or an unknown name says all there is; TLS keeps the detail.
        detail = "" if hint in (REFUSED, UNRESOLVED) else _why(last)
        raise RegistryError(f"cannot reach registry {self.registry}: "
                            + ": ".join(x for x in (hint, detail) if x))

    def _authorization(self, scopes, fresh=False):
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        if scheme == "basic":
            return self._basic()
        if scheme != "bearer":
            raise RegistryError(f"{self.registry} wants unsupported authentication {scheme!r}")
        key = " ".join(sorted(set(scopes)))
        with self._lock:
            token = None if fresh else self._tokens.get(key)
        if token is None:
            token = self._fetch_token(params, scopes)
            with self._lock:
                self._tokens[key] = token
        return "Bearer " + token

    def _basic(self):
        c = self.credentials
        if c is None or not (c.username or c.password):
            raise RegistryError(f"{self.registry}: authentication required (fastbox login {self.registry})")
        import base64
        return "Basic " + base64.b64encode(f"{c.username}:{c.password}".encode()).decode()

    def _fetch_token(self, params, scopes):
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"{self.registry}: Bearer challenge without a realm")
        service = params.get("service", "")
        scopes = sorted(set(scopes))  # ours: a challenge's scope names the request it refused
        c = self.credentials
        r = None
        if c is not None and (c.password or c.identity_token):
            form = {"service": service, "scope": " ".join(scopes), "client_id": "fastbox"}
            if c.identity_token:
                form.update(grant_type="refresh_token", refresh_token=c.identity_token)
            else:
                form.update(grant_type="password", username=c.username, password=c.password)
            r = self._token_call("POST", realm, data=form)
            if r.status_code in (404, 405) and c.username and c.password:
                r = None  # a token server without OAuth2 POST: the GET form below
        if r is None:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            headers = {"Authorization": self._basic()} if c is not None and c.password else {}
            r = self._token_call("GET", realm, params=query, headers=headers)
        if r.status_code in (401, 403):
            raise RegistryError(f"{self.registry}: unauthorized: the token server refused "
                                f"{'the stored credentials' if c else 'anonymous access'}"
                                f"{'' if c else f' (fastbox login {self.registry})'}")
        _check(r, f"token from {realm}")
        try:
            body = r.json()
            return body.get("token") or body["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"token server {realm} answered without a token") from None

    def _token_call(self, method, url, **kw):
        try:
            return self._http.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise RegistryError(f"token server {url}: {_why(e)}") from None

    def _url(self, location):
        """Upload locations may be relative to the registry."""
        return location if "://" in location else self._base + location


def media_type_of(data, content_type=""):
    """A manifest's type: its mediaType field, else Content-Type, else its shape (OCI allows
    the field to be left out, and umoci does)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError("the registry sent a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("the registry sent a manifest that is not a JSON object")
    declared = doc.get("mediaType") or content_type.partition(";")[0].strip()
    if declared in MANIFEST_TYPES + INDEX_TYPES + SCHEMA1_TYPES:
        return declared
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    if "fsLayers" in doc:
        return SCHEMA1_TYPES[0]
    raise RegistryError(f"unsupported manifest type {declared or 'unknown'}")


def insecure_registries():
    """Registries allowed without verified TLS: $FASTBOX_INSECURE_REGISTRIES (comma separated
    HOST[:PORT] or CIDR; when set, it is the whole list), else registries.json's list plus the
    loopback addresses."""
    env = os.environ.get("FASTBOX_INSECURE_REGISTRIES")
    if env is not None:
        return [e.strip() for e in env.split(",") if e.strip()]
    path = os.environ.get("FASTBOX_REGISTRIES_CONFIG", "/etc/fastbox/registries.json")
    try:
        with open(path, "rb") as f:
            listed = json.load(f).get("insecure-registries") or []
    except FileNotFoundError:
        listed = []
    except (ValueError, AttributeError) as e:
        raise RegistryError(f"{path}: {e}") from None
    return [str(e) for e in listed] + list(LOOPBACK)


def is_insecure(registry):
    host = _host(registry)
    for entry in insecure_registries():
        if entry in (registry, host):
            return True
        if "/" in entry:
            try:
                net = ipaddress.ip_network(entry, strict=False)
                addrs = [ipaddress.ip_address(h) for h in
                         (("127.0.0.1", "::1") if host == "localhost" else (host,))]
            except ValueError:
                continue
            if any(a.version == net.version and a in net for a in addrs):
                return True
    return False


def _is_loopback(registry):
    host = _host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(registry):
    """"[::1]:5000" -> "::1", "host:5000" -> "host"."""
    if registry.startswith("["):
        return registry[1:registry.find("]")]
    return registry.rpartition(":")[0] if ":" in registry else registry


def _certs_dirs(registry):
    bases = [os.environ.get("FASTBOX_CERTS_DIR", "/etc/fastbox/certs.d"), "/etc/docker/certs.d"]
    return [os.path.join(b, registry) for b in bases if os.path.isdir(os.path.join(b, registry))]


def _tls_context(registry, insecure):
    """The system's CAs plus the registry's own from certs.d, and its client certificate;
    no verification at all for an insecure registry."""
    import ssl
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for d in _certs_dirs(registry):
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if name.endswith(".crt") and not insecure:
                context.load_verify_locations(path)
            elif name.endswith(".cert") and os.path.exists(path[:-5] + ".key"):
                context.load_cert_chain(path, path[:-5] + ".key")
    return context


def _pull(repo):
    return [f"repository:{repo}:pull"]


def _push(repo):
    return [f"repository:{repo}:pull,push"]


def _not_replayable(kw):
    content = kw.get("content")
    return content is not None and not isinstance(content, (bytes, str))


def _counting(fileobj, on_progress):
    while chunk := fileobj.read(CHUNK):
        if on_progress:
            on_progress(len(chunk))
        yield chunk


def _read_limited(r, limit, what):
    chunks, total = [], 0
    for chunk in r.iter_bytes(CHUNK):
        total += len(chunk)
        if total > limit:
            raise RegistryError(f"the registry sent a {what} larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check(r, what, ok=(200,)):
    if r.status_code in ok:
        return
    if r.is_stream_consumed is False and r.request.method != "HEAD":
        try:
            r.read()
        except httpx.HTTPError:
            pass
    detail = _errors(r)
    if r.status_code == 401:
        host = r.request.url.netloc.decode() if r.request is not None else ""
        raise RegistryError(f"{what}: unauthorized: {detail or 'authentication required'} "
                            f"(log in with: fastbox login {host})")
    if r.status_code == 403:
        raise RegistryError(f"{what}: denied: {detail or 'requested access to the resource is denied'}")
    if r.status_code == 404:
        raise RegistryError(f"{what}: not found{': ' + detail if detail else ''}")
    raise RegistryError(f"{what}: the registry answered {r.status_code} "
                        f"{r.reason_phrase}{': ' + detail if detail else ''}")


def _errors(r):
    """The distribution API's {"errors": [{"code", "message"}]} as one line."""
    try:
        errors = json.loads(r.content or b"{}").get("errors") or []
        return "; ".join(_error_text(e) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, httpx.HTTPError):
        return ""


def _error_text(e):
    """"manifest unknown: the tag is gone"; once when the message repeats the code
    (distribution answers MANIFEST_UNKNOWN with "manifest unknown")."""
    code = str(e.get("code") or "").lower().replace("_", " ")
    message = str(e.get("message") or "")
    if not message or message.lower() == code:
        return code or message
    return f"{code}: {message}".strip(": ")


REFUSED = "connection refused (is a registry listening there?)"
UNRESOLVED = "the host name does not resolve (check the name and this machine's DNS)"


def _reach_hint(e, insecure):
    """Why a registry could not be reached, as a hint that fits: DNS, TLS, a refused
    connection (a plain-HTTP registry needs --insecure), a timeout."""
    import socket
    import ssl
    chain, seen = [], e
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(x) for x in chain).lower()
    if any(isinstance(x, socket.gaierror) for x in chain) or "name or service not known" in text \
            or "temporary failure in name resolution" in text or "no address associated" in text:
        return UNRESOLVED
    if any(isinstance(x, ssl.SSLCertVerificationError) for x in chain) \
            or "certificate verify failed" in text:
        return ("its TLS certificate is not trusted (put its CA in /etc/docker/certs.d/HOST/ca.crt, "
                "or make it an insecure registry: --insecure)")
    if "wrong version number" in text or "record layer failure" in text \
            or any(isinstance(x, ssl.SSLError) for x in chain):
        return ("TLS failed" + ("" if insecure else
                                " (if it serves plain HTTP, it must be an insecure registry: --insecure)"))
    if "refused" in text:
        return REFUSED
    if isinstance(e, httpx.TimeoutException) or "timed out" in text:
        return "no answer in time"
    return None


def _why(e):
    text = str(e) or type(e).__name__
    cause = e.__context__ or e.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text
