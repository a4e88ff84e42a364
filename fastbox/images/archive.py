"""`fastbox save` and `fastbox load`: images as one tar file.

save writes what Docker 25+ writes, one archive that is both formats at once:
  - an OCI image layout: oci-layout, index.json (annotations io.containerd.image.name = the
    full name, org.opencontainers.image.ref.name = the tag) and blobs/sha256/<hex>, the
    manifests, configs and layers exactly as stored, so every digest survives the trip;
  - `docker save`'s manifest.json ([{"Config", "RepoTags", "Layers"}], paths into blobs/) and
    repositories, for `docker load`, skopeo's docker-archive: and older tools.
load reads either (OCI first when both are there: it keeps manifest digests), also gzip- or
zstd-compressed, from a file or a pipe. Every blob named by a digest is checked against it,
every layer against the config's diff_id as it is unpacked, and nothing is extracted from the
archive by its member names: members are only looked up, so a hostile archive can name
"../../etc" all it likes.
"""
import hashlib
import io
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor

from fastbox.errors import DigestMismatch, ImageError, SpecError
from fastbox.images import ingest, reference, registry
from fastbox.images.pull import check_config, check_manifest, parse_platform, select_platform
from fastbox.images.files import write_hashed
from fastbox.images.index import INDEX_DIGEST
from fastbox.images.store import ImageStore, MissingContent
from fastbox.images.unpack import compression, unpack_layer

NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
FORMATS = ("oci", "docker")
_LAYER_TYPES = {"": "application/vnd.oci.image.layer.v1.tar",
                "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_MAX_JSON = 8 << 20
_CHUNK = 1 << 20


# ------------------------------------------------------------------ save

def save(refs, output, *, formats=FORMATS, store=None):
    """Write the images `refs` name to `output` (a path, written through a temp file and
    renamed, or a binary stream)."""
    store = store or ImageStore()
    images = _gather(store, refs)
    if not isinstance(output, str):
        with tarfile.open(fileobj=output, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _write(tar, store, images, formats)
        return
    tmp = os.path.join(os.path.dirname(os.path.abspath(output)),
                       f".{os.path.basename(output)}.tmp-{os.urandom(4).hex()}")
    try:
        with tarfile.open(tmp, "x", format=tarfile.PAX_FORMAT) as tar:
            _write(tar, store, images, formats)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _gather(store, refs):
    """{manifest digest: {"names": [...], "manifest": dict, "data": bytes, "type": str}}, in
    the order given; names are the tags the user named (an id names no tag, as in Docker)."""
    images = {}
    for ref in refs:
        image = store.resolve(ref)
        entry = images.get(image.manifest_digest)
        if entry is None:
            data = store.read_blob(image.manifest_digest)
            manifest = json.loads(data)
            media_type = manifest.get("mediaType") or next(
                (e["mediaType"] for _, e in store.entries() if e["digest"] == image.manifest_digest),
                registry.OCI_MANIFEST)
            entry = images[image.manifest_digest] = {"names": [], "manifest": manifest,
                                                     "data": data, "type": media_type}
        if image.ref != image.id and "@" not in image.ref and image.ref not in entry["names"]:
            entry["names"].append(image.ref)
    return images


def _write(tar, store, images, formats):
    _add_dir(tar, "blobs/")
    _add_dir(tar, "blobs/sha256/")
    written = set()
    for digest, image in images.items():
        m = image["manifest"]
        for desc in [m["config"]] + m["layers"]:
            if desc["digest"] not in written:
                written.add(desc["digest"])
                _add_blob(tar, store, desc["digest"], desc["size"])
        if "oci" in formats and digest not in written:
            written.add(digest)
            _add_bytes(tar, "blobs/sha256/" + digest[7:], image["data"])
    if "oci" in formats:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", _json(_oci_index(images)))
    if "docker" in formats:
        _add_bytes(tar, "manifest.json", _json(_docker_manifest(images)))
        _add_bytes(tar, "repositories", _json(_repositories(images)))


def _oci_index(images):
    manifests = []
    for digest, image in images.items():
        desc = {"mediaType": image["type"], "digest": digest, "size": len(image["data"])}
        for name in image["names"] or [None]:
            entry = dict(desc)
            if name:
                entry["annotations"] = {NAME_ANNOTATION: name,
                                        REF_ANNOTATION: reference.parse(name).tag}
            manifests.append(entry)
    return {"schemaVersion": 2, "mediaType": registry.OCI_INDEX, "manifests": manifests}


def _docker_manifest(images):
    return [{"Config": "blobs/sha256/" + image["manifest"]["config"]["digest"][7:],
             "RepoTags": [reference.parse(n).familiar for n in image["names"]],
             "Layers": ["blobs/sha256/" + layer["digest"][7:] for layer in image["manifest"]["layers"]]}
            for image in images.values()]


def _repositories(images):
    """The legacy {"repo": {"tag": top layer id}} map; loaders only read it without manifest.json."""
    repos = {}
    for image in images.values():
        layers = image["manifest"]["layers"]
        for name in image["names"]:
            ref = reference.parse(name)
            familiar = reference.Reference(ref.registry, ref.repository).familiar
            repos.setdefault(familiar, {})[ref.tag] = layers[-1]["digest"][7:] if layers else ""
    return repos


def _add_blob(tar, store, digest, size):
    """Copy a blob in, checking it on the way: a damaged store must not spread."""
    path = store.ensure_blob(digest)  # a built layer's tar is written now, once
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ImageError(f"blob {digest} is missing from the store") from None
    with f:
        checked = _Hashing(f)
        info = _info("blobs/sha256/" + digest[7:], os.fstat(f.fileno()).st_size)
        if info.size != size:
            raise DigestMismatch(f"blob {digest} in the store has {info.size} bytes, not {size}")
        tar.addfile(info, checked)
        if checked.digest() != digest:
            raise DigestMismatch(f"blob {digest} in the store is corrupt")


def _add_bytes(tar, name, data):
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_dir(tar, name):
    info = _info(name, 0)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _info(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # mtime 0: the same images, the same tar
    return info


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class _Hashing:
    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def read(self, size=-1):
        data = self.f.read(size)
        self.h.update(data)
        return data

    def digest(self):
        return "sha256:" + self.h.hexdigest()


# ------------------------------------------------------------------ load

def load(source, *, store=None, platform=None):
    """Load every image of an archive (a path or a binary stream); return
    [(name or None, Image)] in the archive's order, plus the tags added for docker-save
    entries with several."""
    store = store or ImageStore()
    want = parse_platform(platform)
    with ingest.Session(store.ingest_dir) as session:
        with _open_archive(source, session) as tar:
            try:
                members = {_clean(m.name): m for m in tar.getmembers()}
                reader = _Reader(tar, members, session, store)
                if "index.json" in members:
                    return _load_oci(reader, want)
                if "manifest.json" in members:
                    return _load_docker(reader)
            except (tarfile.TarError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
                # Malformed JSON or tar structure anywhere in an untrusted archive.
                raise ImageError(f"invalid archive: {type(e).__name__}: {e}") from None
    raise ImageError("not an image archive: it has neither index.json (OCI layout) nor "
                     "manifest.json (docker save)")


def _open_archive(source, session):
    """A random-access tarfile; a pipe or a compressed archive is first copied, decompressed,
    into the session."""
    try:
        f = open(source, "rb") if isinstance(source, str) else source
    except OSError as e:
        raise ImageError(f"cannot read {source}: {e.strerror}") from None
    try:
        seekable = f.seekable()
        head = f.read(4) if seekable else f.peek(4)[:4] if hasattr(f, "peek") else b""
        if seekable:
            f.seek(0)
        kind = compression(head)
        if seekable and not kind:
            return tarfile.open(source, "r:") if isinstance(source, str) else \
                tarfile.open(fileobj=f, mode="r:")
        path = session.path()
        with open(path, "xb") as out:
            src = _decompressed(f, kind)
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        return tarfile.open(path, "r:")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ImageError(f"not an image archive: {e}") from None
    finally:
        if isinstance(source, str):
            f.close()


def _decompressed(f, kind):
    if kind == "gzip":
        import gzip
        return gzip.GzipFile(fileobj=f, mode="rb")
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    return f


class _Reader:
    """Looks members up by name (following links inside the archive), checks what it reads."""

    def __init__(self, tar, members, session, store):
        self.tar, self.members, self.session, self.store = tar, members, session, store

    def open(self, name):
        member = self.members.get(_clean(name))
        if member is None:
            raise ImageError(f"invalid archive: {name!r} is missing")
        try:
            f = self.tar.extractfile(member)
        except (KeyError, tarfile.TarError):
            f = None
        if f is None:
            raise ImageError(f"invalid archive: {name!r} is not a file")
        return f

    def small(self, name, digest=None):
        data = self.open(name).read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise ImageError(f"invalid archive: {name!r} is too large")
        if digest and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"{name} in the archive does not match its digest {digest}")
        return data

    def json(self, name, digest=None):
        try:
            return json.loads(self.small(name, digest))
        except ValueError as e:
            raise ImageError(f"invalid archive: {name}: {e}") from None

    def copy(self, name, digest=None, size=None):
        """Copy a member into the session: (path, digest, size, compression), checked against
        `digest` and `size` when given."""
        path = self.session.path()
        got, total, head = write_hashed(self.open(name), path)
        if (digest and got != digest) or (size is not None and total != size):
            raise DigestMismatch(f"{name} in the archive: expected {size} bytes with digest "
                                 f"{digest}, got {total} bytes with digest {got}")
        return path, got, total, compression(head)


def _load_oci(reader, want):
    index = reader.json("index.json")
    loaded = []
    for desc in index.get("manifests") or []:
        digest = _blob_digest(desc)
        data = reader.small(_blob_name(digest), digest)
        media_type = registry.media_type_of(data, desc.get("mediaType", ""))
        index_digest = None
        if media_type in registry.INDEX_TYPES:
            index_digest = digest
            child = select_platform(json.loads(data), want, f"the archive's {digest}")
            digest = _blob_digest(child)
            data = reader.small(_blob_name(digest), digest)
            media_type = registry.media_type_of(data, child.get("mediaType", ""))
        if media_type not in registry.MANIFEST_TYPES:
            continue  # artifacts (signatures, attestations): not images to run
        name = _oci_name(desc.get("annotations") or {})
        manifest = check_manifest(json.loads(data), name or digest)
        config = reader.small(_blob_name(manifest["config"]["digest"]), manifest["config"]["digest"])
        check_config(json.loads(config), manifest, name or digest)
        annotations = {INDEX_DIGEST: index_digest} if index_digest and name else None
        image = _commit(reader, name, data, media_type, config, manifest, annotations)
        loaded.append((name, image))
    return loaded


def _oci_name(annotations):
    """A full reference from Docker's/containerd's annotation, or a ref.name that is one (not
    a bare tag such as skopeo's "latest", which names no repository)."""
    for value in (annotations.get(NAME_ANNOTATION), annotations.get(REF_ANNOTATION)):
        if value and ("/" in value or ":" in value) and "@" not in value:
            try:
                return str(reference.parse(value))
            except SpecError:
                pass  # not a reference after all
    return None


def _load_docker(reader):
    entries = reader.json("manifest.json")
    if not isinstance(entries, list):
        raise ImageError("invalid archive: manifest.json is not a list")
    loaded = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not all(isinstance(n, str) for n in entry.get("Layers") or []):
            raise ImageError("invalid archive: a manifest.json entry without Config or Layers")
        config = reader.small(entry["Config"])
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        layer_names = entry.get("Layers") or []
        try:
            check_config(json.loads(config), {"layers": layer_names}, entry["Config"])
        except ValueError as e:
            raise ImageError(f"invalid archive: {entry['Config']}: {e}") from None
        manifest, files = _docker_manifest_for(reader, config, config_digest, layer_names)
        data = _json(manifest)
        try:
            names = [str(reference.parse(t)) for t in entry.get("RepoTags") or []]
        except SpecError as e:
            raise ImageError(f"invalid archive: {e}") from None
        image = _commit(reader, names[0] if names else None, data, registry.OCI_MANIFEST,
                        config, manifest, None, files)
        for extra in names[1:]:
            reader.store.tag(names[0], extra)
        loaded += [(n, image) for n in names] or [(None, image)]
    return loaded


def _docker_manifest_for(reader, config, config_digest, layer_names):
    """An OCI manifest for a docker-save entry: its layers copied in (their digests are only
    known once read) and described by what they turn out to be."""
    layers, files = [], {}
    for name in layer_names:
        path, digest, size, kind = reader.copy(name)
        layers.append({"mediaType": _LAYER_TYPES[kind], "digest": digest, "size": size})
        files[digest] = path
    return ({"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST,
             "config": {"mediaType": _CONFIG_TYPE, "digest": config_digest, "size": len(config)},
             "layers": layers}, files)


def _commit(reader, name, data, media_type, config, manifest, annotations, files=None):
    """Copy in (if not done yet) and unpack what the store lacks, then commit."""
    store, session = reader.store, reader.session
    files = dict(files or {})
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    pending, dirs = [], {}
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            digest = layer["digest"]
            if digest not in files and not store.has_blob(digest):
                files[digest] = reader.copy(_blob_name(digest), digest, layer["size"])[0]
            if not store.has_layer(diff_id) and diff_id not in dirs:
                dirs[diff_id] = session.new_dir()
                src = files.get(digest) or store.blob_path(digest)
                pending.append(pool.submit(unpack_layer, src, dirs[diff_id], diff_id))
        for future in pending:
            future.result()
    try:
        return store.commit_image(name, data, media_type, config, files, dirs, annotations)
    except MissingContent:
        raise ImageError("a layer was removed from the store during the load: load again") from None


def _blob_digest(desc):
    digest = desc.get("digest") if isinstance(desc, dict) else None
    if not (isinstance(digest, str) and len(digest) == 71 and digest.startswith("sha256:")
            and all(c in "0123456789abcdef" for c in digest[7:])):
        raise ImageError(f"invalid archive: unsupported or malformed digest {digest!r}")
    return digest


def _blob_name(digest):
    return "blobs/sha256/" + digest[7:]


def _clean(name):
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")
