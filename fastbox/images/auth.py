"""Registry credentials, kept where Docker keeps them so that `docker login` and `fastbox login`
share them: $DOCKER_CONFIG/config.json, else ~/.docker/config.json.

    {"auths": {"HOST[:PORT]": {"auth": base64("user:password")} or {"identitytoken": "..."}},
     "credsStore": "NAME", "credHelpers": {"HOST": "NAME"}}

A credsStore/credHelpers entry hands the secret to the program docker-credential-NAME (its
get/store/erase protocol) instead of the file. Docker Hub's key is the historical
"https://index.docker.io/v1/"; other keys are matched by host, whatever scheme or path they
carry ("https://host:5000/v2/" names host:5000 too), as Docker does.

Also the WWW-Authenticate challenge parser, which is all of HTTP auth fastbox parses itself.
"""
import base64
import json
import os
import subprocess

from fastbox.errors import RegistryError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


class Credentials:
    __slots__ = ("username", "password", "identity_token")

    def __init__(self, username="", password="", identity_token=""):
        self.username, self.password, self.identity_token = username, password, identity_token

    def __repr__(self):
        return f"Credentials(username={self.username!r})"  # never the secret


def config_path():
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def server_key(registry):
    """The key a registry's credentials are stored under."""
    return DOCKER_HUB_KEY if registry in _HUB_NAMES else registry


def credentials(registry):
    """The stored Credentials for `registry` (as image references name it), or None."""
    cfg = _load()
    helper = _helper_for(cfg, registry)
    if helper:
        return _helper_get(helper, server_key(registry))
    for key, entry in (cfg.get("auths") or {}).items():
        if _host_of(key) == _host_of(registry) and isinstance(entry, dict):
            found = _decode(entry, key)
            if found:
                return found
    return None


def store(registry, creds):
    """Save credentials for `registry` (what `fastbox login` does once they are accepted)."""
    cfg = _load()
    key = server_key(registry)
    helper = _helper_for(cfg, registry)
    auths = cfg.setdefault("auths", {})
    for old in [k for k in auths if _host_of(k) == _host_of(registry)]:
        del auths[old]
    if helper:
        secret = creds.identity_token or creds.password
        user = "<token>" if creds.identity_token else creds.username
        _helper_run(helper, "store", json.dumps({"ServerURL": key, "Username": user,
                                                 "Secret": secret}))
        auths[key] = {}  # Docker lists the registry, the secret is the helper's
    elif creds.identity_token:
        auths[key] = {"auth": _b64(creds.username + ":"), "identitytoken": creds.identity_token}
    else:
        auths[key] = {"auth": _b64(creds.username + ":" + creds.password)}
    _save(cfg)


def remove(registry):
    """`fastbox logout`: forget `registry`'s credentials. Returns whether any were stored."""
    cfg = _load()
    auths = cfg.get("auths") or {}
    keys = [k for k in auths if _host_of(k) == _host_of(registry)]
    helper = _helper_for(cfg, registry)
    found = bool(keys)
    if helper:
        try:
            _helper_run(helper, "erase", server_key(registry))
            found = True
        except RegistryError:
            pass
    for key in keys:
        del auths[key]
    if keys:
        _save(cfg)
    return found


def parse_challenges(header):
    """`Bearer realm="https://auth.example/token",service="reg",scope="a b"` ->
    [("bearer", {"realm": ..., "service": ..., "scope": ...})]. Several challenges may share
    one header, separated by commas like their parameters; a scheme is a token not followed
    by "="."""
    challenges, i, n = [], 0, len(header or "")
    while i < n:
        while i < n and header[i] in " ,\t":
            i += 1
        start = i
        while i < n and header[i] not in " ,=\t":
            i += 1
        word = header[start:i]
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if not word:
            break
        if j < n and header[j] == "=" and challenges:
            value, i = _param_value(header, j + 1)
            challenges[-1][1][word.lower()] = value
        else:
            challenges.append((word.lower(), {}))
    return challenges


def _param_value(header, i):
    while i < len(header) and header[i] in " \t":
        i += 1
    if i < len(header) and header[i] == '"':
        out, i = [], i + 1
        while i < len(header) and header[i] != '"':
            if header[i] == "\\" and i + 1 < len(header):
                i += 1
            out.append(header[i])
            i += 1
        return "".join(out), i + 1
    start = i
    while i < len(header) and header[i] not in ", \t":
        i += 1
    return header[start:i], i


def _decode(entry, key):
    token = entry.get("identitytoken") or ""
    auth = entry.get("auth") or ""
    user, password = entry.get("username") or "", entry.get("password") or ""
    if auth:
        try:
            user, sep, password = base64.b64decode(auth).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{config_path()}: invalid auth for {key}") from None
        if not sep:
            raise RegistryError(f"{config_path()}: invalid auth for {key}")
    if not (user or password or token):
        return None
    return Credentials(user, password, token)


def _host_of(key):
    """"https://host:5000/v2/" -> "host:5000"; Docker Hub's names -> "docker.io"."""
    host = key.partition("://")[2] if "://" in key else key
    host = host.partition("/")[0]
    return "docker.io" if host in _HUB_NAMES else host


def _helper_for(cfg, registry):
    helpers = cfg.get("credHelpers") or {}
    for key, name in helpers.items():
        if _host_of(key) == _host_of(registry):
            return name
    return cfg.get("credsStore") or None


def _helper_get(helper, server):
    try:
        out = _helper_run(helper, "get", server)
    except RegistryError as e:
        if "credentials not found" in str(e).lower():
            return None
        raise
    try:
        data = json.loads(out)
    except ValueError:
        raise RegistryError(f"docker-credential-{helper} get: invalid output") from None
    user, secret = data.get("Username") or "", data.get("Secret") or ""
    if user == "<token>":
        return Credentials("", "", secret)
    return Credentials(user, secret) if user or secret else None


def _helper_run(helper, action, stdin):
    program = f"docker-credential-{helper}"
    try:
        r = subprocess.run([program, action], input=stdin.encode(), capture_output=True,
                           timeout=60)
    except FileNotFoundError:
        raise RegistryError(f"credential helper {program} is configured in {config_path()} "
                            "but not installed") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{program} {action} timed out") from None
    if r.returncode != 0:
        msg = (r.stdout or r.stderr).decode(errors="replace").strip()
        raise RegistryError(f"{program} {action}: {msg or 'failed'}")
    return r.stdout.decode()


def _load():
    try:
        with open(config_path(), "rb") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise RegistryError(f"{config_path()} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise RegistryError(f"{config_path()} is not a JSON object")
    return cfg


def _save(cfg):
    path = config_path()
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    tmp = path + ".tmp-" + os.urandom(6).hex()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cfg, f, indent="\t")
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _b64(text):
    return base64.b64encode(text.encode()).decode()
