"""Docker-style image references, parsed by hand: `import re` alone costs milliseconds on the run path.

The grammar is distribution/reference's:
    reference      := name [":" tag] ["@" digest]
    name           := [domain "/"] path-component ["/" path-component]*
    domain         := host [":" port]         host: dot-separated labels, or [IPv6]
    path-component := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
    tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest         := sha256:<64 hex> | sha384:<96 hex> | sha512:<128 hex>
The first component is a domain only if it contains "." or ":", is "localhost", or has an
uppercase letter (a path component cannot); otherwise the image lives on Docker Hub.
"""
from fastbox.errors import SpecError

DOCKER_HUB = "docker.io"
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TAG_TAIL = _WORD | frozenset(".-")
_HOST = _WORD - frozenset("_") | frozenset("-")
_HEX = frozenset("0123456789abcdef")
_IPV6 = frozenset("0123456789abcdefABCDEF:")
_DIGEST_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX = 255


class Reference:
    """A parsed, normalized reference; `tag` is "latest" when neither tag nor digest was given."""

    __slots__ = ("registry", "repository", "tag", "digest")

    def __init__(self, registry, repository, tag="", digest=""):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        return self.registry + "/" + self.repository

    @property
    def familiar(self):
        """The short form Docker shows: "busybox:latest", "user/app:1", "host:5000/x:y"."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository
            if name.startswith("library/") and name.count("/") == 1:
                name = name[8:]
        return name + _suffix(self.tag, self.digest)

    def __str__(self):
        return self.name + _suffix(self.tag, self.digest)

    def __repr__(self):
        return f"Reference({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def normalize(ref):
    """"busybox" -> "docker.io/library/busybox:latest"; raises SpecError on a malformed reference."""
    return str(parse(ref))


def parse(ref):
    if not isinstance(ref, str) or (len(ref) == 64 and _is_hex(ref)):
        _bad(ref)  # Docker refuses a bare 64-hex name: it would shadow an image id.
    rest, at, digest = ref.partition("@")
    if at and not _valid_digest(digest):
        _bad(ref)
    tag = ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _valid_tag(tag):
            _bad(ref)
    registry, path = _split_domain(rest, ref)
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(registry) + 1 + len(path) > _NAME_MAX:
        _bad(ref)
    for component in path.split("/"):
        if not _valid_component(component):
            _bad(ref, " (repository name must be lowercase)" if component.lower() != component else "")
    if not tag and not digest:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def _split_domain(name, ref):
    slash = name.find("/")
    first = name[:slash]
    if slash < 0 or ("." not in first and ":" not in first and first != "localhost"
                     and first.lower() == first):
        return DOCKER_HUB, name
    if not _valid_domain(first):
        _bad(ref)
    if first == "index.docker.io":
        first = DOCKER_HUB
    return first, name[slash + 1:]


def _valid_domain(domain):
    if domain.startswith("["):
        end = domain.find("]")
        host, port = domain[1:end], domain[end + 1:]
        if end < 0 or not host or not _IPV6.issuperset(host):
            return False
        if port and not port.startswith(":"):
            return False
        port = port[1:] if port else None
    else:
        host, colon, port = domain.partition(":")
        port = port if colon else None
        for label in host.split("."):
            if not label or not _HOST.issuperset(label) or label[0] == "-" or label[-1] == "-":
                return False
    return port is None or (port.isascii() and port.isdigit())


def _valid_component(component):
    if not component or component[0] not in _LOWER_ALNUM or component[-1] not in _LOWER_ALNUM:
        return False
    sep = ""
    for ch in component:
        if ch in _LOWER_ALNUM:
            if sep and sep not in (".", "_", "__") and sep.strip("-"):
                return False
            sep = ""
        else:
            sep += ch
    return True


def _valid_tag(tag):
    return 0 < len(tag) <= 128 and tag[0] in _WORD and _TAG_TAIL.issuperset(tag)


def _valid_digest(digest):
    algo, _, value = digest.partition(":")
    return len(value) == _DIGEST_LEN.get(algo, -1) and _is_hex(value)


def _is_hex(s):
    return _HEX.issuperset(s)


def _suffix(tag, digest):
    return (":" + tag if tag else "") + ("@" + digest if digest else "")


def _bad(ref, why=""):
    raise SpecError(f"invalid reference format: '{ref}'{why}")
