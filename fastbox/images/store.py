"""The local OCI image store, under config.images_dir(): images and their tags.

    oci-layout, index.json   an OCI image layout; index.json is the tag index (annotation
                             org.opencontainers.image.ref.name = normalized reference; an entry
                             without one is a dangling image, listed as <none>)
    resolved/<manifest-hex>  marshal of what `run` needs from a manifest and its config
    refs/<quoted ref>        the manifest digest a tag names, for the run path
    blobs/, layers/, layer-tars/
                             the content (content.py: ContentStore)
    ingest/                  pulls, loads and builds in progress, owned through flocks (see
                             ingest.py); commit_image() moves their verified results in under
                             the lock
    lock                     the writer lock; the sweep of dead writers' temporaries and the
                             collection of unused content (collect.py: Collector)

The run path reads refs/ and resolved/ through lookup.py alone (a tag resolves with a
hand-written normalize, two small reads and marshal.loads, then one stat per later run in
the same process); this module is imported only when that misses: an id, an id prefix, a
record to repair, or the built-in image to build. It imports json, hashlib and tarfile only
in the functions that write or repair. ensure_default() ~23 µs once the image exists,
130-250 ms to build it (filesystem-bound: ~270 symlinks at ~0.6 ms each on this disk).
"""
import marshal
import os

from fastbox import config
from fastbox.errors import ImageError, ImageNotFound, SpecError
from fastbox.images.lookup import CACHE_VERSION as _CACHE_VERSION
from fastbox.images.lookup import find, image_of
from fastbox.images.lookup import is_full_id as _is_full_id
from fastbox.images.lookup import quote as _quote
from fastbox.images.lookup import read_digest as _read_digest
from fastbox.images.lookup import read_file as _read_file
from fastbox.images.lookup import read_info
from fastbox.images import files as fileops
from fastbox.images import index as index_doc
from fastbox.images.collect import Collector, WriterLock
from fastbox.images.content import ContentStore
from fastbox.images.reference import Reference, normalize, parse

DEFAULT_REF = "docker.io/library/busybox:latest"
_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPES = {"": "application/vnd.oci.image.layer.v1.tar",
                "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
_CHANGE_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386"}


class ImageStore(ContentStore, Collector):
    """Not thread-safe: use one per thread. Processes coordinate through the lock file."""

    def __init__(self, root=None):
        self.root = os.path.abspath(root or config.images_dir())
        self._blobs = os.path.join(self.root, "blobs", "sha256", "")
        self._layers = os.path.join(self.root, "layers", "")
        self._resolved = os.path.join(self.root, "resolved", "")
        self._refs = os.path.join(self.root, "refs", "")
        self._tars = os.path.join(self.root, "layer-tars", "")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self.build_cache_dir = os.path.join(self.root, "buildcache", "")
        self._lock = WriterLock(os.path.join(self.root, "lock"), self._sweep)

    # The run path: no json, no hashing.

    def resolve(self, ref):
        """The image a tag, digest reference, image id or unique id prefix names (Docker's order:
        a full id, then a tag, then an id prefix). ImageNotFound if none; SpecError if `ref` is
        neither a valid reference nor an id prefix."""
        image = find(self.root, ref)
        if image is not None:
            return image
        name = None
        if not _is_full_id(ref):
            try:
                name = normalize(ref)
            except SpecError:
                if index_doc.id_prefix(ref) is None:
                    raise
        if name is not None:
            image = self._resolve_from_index(name)
            if image is not None:
                return image
        prefix = index_doc.id_prefix(ref)
        image = self._resolve_id(prefix) if prefix is not None else None
        if image is None:
            shown = parse(name).familiar if name else ref
            raise ImageNotFound(f"unable to find image '{shown}' locally")
        return image

    # Fallbacks: the refs/ or resolved/ record is missing, so ask index.json and repair.

    def _resolve_from_index(self, name):
        index = self._read_index()
        digest = index_doc.find_tag(index, name) if index else None
        if digest is None:
            return None
        with self._lock:
            info = self._rebuild(digest)
            if "@" not in name:
                self._write_ref(name, digest)
        return image_of(self.root, info, name, digest)

    def _resolve_id(self, prefix):
        matches = self._match_id(prefix)
        if not matches:
            self._rebuild_missing()
            matches = self._match_id(prefix)
        if len({info["id"] for _, info in matches}) > 1:
            raise ImageError(f"image id prefix '{prefix}' is ambiguous: give more of it")
        if not matches:
            return None
        digest, info = min(matches, key=lambda m: m[0])
        return image_of(self.root, info, info["id"], digest)

    def _match_id(self, prefix):
        found = []
        for name in fileops.listdir(self._resolved):
            info = None if name.startswith(".tmp-") else read_info(self.root, "sha256:" + name)
            if info is not None and info["id"].startswith(prefix, 7):
                found.append(("sha256:" + name, info))
        return found

    def _rebuild_missing(self):
        index = self._read_index()
        digests = [e["digest"] for e in index["manifests"]] if index else []
        missing = [d for d in digests if read_info(self.root, d) is None]
        if missing:
            with self._lock:
                for digest in missing:
                    self._rebuild(digest)

    def _rebuild(self, digest):
        """Re-derive a manifest's run-path record from its JSON blobs (under the lock), unpacking
        any layer that has gone missing."""
        manifest = self._read_json(digest)
        cfg = self._read_json(manifest["config"]["digest"])
        diff_ids = cfg["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise ImageError(f"image {digest}: {len(manifest['layers'])} layers but "
                             f"{len(diff_ids)} diff_ids")
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            self._ensure_layer(layer["digest"], diff_id)
        info = _info(manifest, cfg)
        self._write_cache(digest, info)
        return info

    def _info_of(self, digest):
        info = read_info(self.root, digest)
        if info is None:
            with self._lock:
                info = self._rebuild(digest)
        return info

    # Commands. Whatever writes holds the lock (re-entrant, so helpers may take it again).

    def import_tar(self, tar_path, ref, *, changes=None):
        """`fastbox import`: a rootfs tarball (plain, gzip, or zstd given `zstandard`) becomes a one-layer image tagged
        `ref`. `changes` may set Env, Cmd, Entrypoint (a list, or a string run by /bin/sh -c),
        WorkingDir and User."""
        import time
        name = index_doc.tag_name(ref)
        container_config = _container_config(changes)
        with self._lock:
            return self._import(tar_path, name, container_config, time.time(), "fastbox import")

    def ensure_default(self):
        """The built-in busybox:latest, built from the host's static /bin/busybox if missing."""
        try:
            return self.resolve(DEFAULT_REF)
        except ImageNotFound:
            pass
        from fastbox.images import default  # tarfile, subprocess: only when building
        with self._lock:
            try:
                return self.resolve(DEFAULT_REF)  # another process may have built it meanwhile
            except ImageNotFound:
                pass
            tmp = fileops.tmp_name(os.path.join(self.root, ""))
            try:
                with open(tmp, "xb") as f:
                    mtime = default.write_rootfs(f)
                return self._import(tmp, DEFAULT_REF, default.CHANGES, mtime,
                                    f"fastbox: the host's static {default.BUSYBOX}")
            finally:
                fileops.unlink(tmp)

    def list(self):
        """For `fastbox images`, newest first: repository, tag, id, created (RFC 3339), size
        (bytes of content as stored), plus the full ref and manifest digest."""
        index = self._read_index()
        rows = []
        for entry in index["manifests"] if index else ():
            info = self._info_of(entry["digest"])
            name = index_doc.ref_name(entry)
            repository = tag = "<none>"
            if name:
                ref = parse(name)
                repository, tag = Reference(ref.registry, ref.repository).familiar, ref.tag or tag
            rows.append({
                "repository": repository, "tag": tag,
                "id": info["id"], "created": info["created"], "size": info["size"],
                "ref": name or "", "digest": entry["digest"],
            })
        rows.sort(key=lambda r: r["created"], reverse=True)
        return rows

    def tag(self, source_ref, target_ref):
        """Point the tag `target_ref` at the image `source_ref` names."""
        name = index_doc.tag_name(target_ref)
        image = self.resolve(source_ref)
        with self._lock:
            index = self._read_index() or index_doc.new_index()
            desc = next((e for e in index["manifests"] if e["digest"] == image.manifest_digest), None)
            if desc is None:
                raise ImageNotFound(f"unable to find image '{source_ref}' locally")
            self._set_tag(name, desc)

    def remove(self, ref, force=False):
        """`rmi`: untag `ref`, deleting the image, and any blob and layer only it used, once no
        tag is left. By id: delete the image and all its tags, unless tags in several
        repositories name it (Docker's rule). An image a kept container was made from is not
        deleted: without `force` that is an error; with it, the image is only untagged and
        stays, dangling, for as long as the container needs its layers. Returns Docker's
        "Untagged:"/"Deleted:" lines."""
        with self._lock:
            index = self._read_index() or index_doc.new_index()
            name = index_doc.try_normalize(ref)
            doomed = [e for e in index["manifests"] if name and index_doc.ref_name(e) == name]
            if not doomed:
                doomed = self._entries_of_id(index, ref, force)
            kept = [e for e in index["manifests"] if not any(e is d for d in doomed)]
            gone = sorted({e["digest"] for e in doomed} - {e["digest"] for e in kept})
            for digest in self._in_use(gone, ref, force):
                gone.remove(digest)
                kept.append(index_doc.dangling(doomed, digest))
            lines = [f"Untagged: {parse(index_doc.ref_name(e)).familiar}" for e in doomed if index_doc.ref_name(e)]
            lines += [f"Deleted: {self._info_of(d)['id']}" for d in gone]
            self._drop(index, doomed, kept)
            if gone:
                self._collect(kept)
            return lines

    def _entries_of_id(self, index, ref, force=False):
        prefix = index_doc.id_prefix(ref)
        image = self._resolve_id(prefix) if prefix is not None else None
        if image is None:
            name = index_doc.try_normalize(ref)
            raise ImageNotFound(f"no such image: {parse(name).familiar if name else ref}")
        entries = [e for e in index["manifests"] if e["digest"] == image.manifest_digest]
        repos = {index_doc.repository(index_doc.ref_name(e)) for e in entries if index_doc.ref_name(e)}
        if len(repos) > 1 and not force:
            raise ImageError(f"conflict: unable to delete {image.id[7:19]} (must be forced) - "
                             "image is referenced in multiple repositories")
        return entries

    def _in_use(self, digests, ref, force):
        """Those of the manifests `digests` whose image a kept container was made from; an
        error naming the container unless `force`."""
        users = self.users() if digests else {}
        used = [d for d in digests if self._info_of(d)["id"] in users]
        if used and not force:
            image_id = self._info_of(used[0])["id"]
            raise ImageError(f'conflict: unable to remove image "{ref}" (must force) - container '
                             f"{users[image_id][0][:12]} is using its referenced image "
                             f"{image_id[7:19]}")
        return used

    def _drop(self, index, doomed, kept):
        for entry in doomed:
            if index_doc.ref_name(entry):
                fileops.unlink(self._refs + _quote(index_doc.ref_name(entry)))
        index["manifests"] = kept
        self._write_index(index)

    def prune(self, all=False):
        """`image prune`: delete the dangling images (with `all`, every image) that no kept
        container uses, then every blob, layer, record and abandoned download that nothing
        references any more. Returns (Docker's "Untagged:"/"Deleted:" lines, bytes freed)."""
        from fastbox.images import ingest
        with self._lock:
            index = self._read_index() or index_doc.new_index()
            used = self.users()
            doomed = [e for e in index["manifests"] if (all or not index_doc.ref_name(e))
                      and self._info_of(e["digest"])["id"] not in used]
            kept = [e for e in index["manifests"] if not any(e is d for d in doomed)]
            gone = sorted({e["digest"] for e in doomed} - {e["digest"] for e in kept})
            lines = [f"Untagged: {parse(index_doc.ref_name(e)).familiar}" for e in doomed if index_doc.ref_name(e)]
            lines += [f"Deleted: {self._info_of(d)['id']}" for d in gone]
            if doomed:
                self._drop(index, doomed, kept)
            freed = self._collect(kept)
            names = {_quote(index_doc.ref_name(e)) for e in kept if index_doc.ref_name(e)}
            for name in fileops.listdir(self._refs):
                if name not in names:
                    fileops.unlink(self._refs + name)
            return lines, freed + ingest.sweep(self.ingest_dir, partial_blobs=True)

    def entries(self):
        """index.json's entries: (normalized name or None, manifest descriptor)."""
        index = self._read_index()
        return [(index_doc.ref_name(e), e) for e in index["manifests"]] if index else []

    def tagged(self, name):
        """The manifest digest the normalized `name` points at, or None."""
        digest = _read_digest(self._refs + _quote(name))
        if digest is None:
            index = self._read_index()
            digest = index_doc.find_tag(index, name) if index else None
        return digest

    def describe(self, ref):
        """What `inspect` and `history` show of the image `ref` names: the Image, its manifest,
        config, media type, size, and every name and repo digest the store has for it."""
        import json
        image = self.resolve(ref)
        manifest = json.loads(self.read_blob(image.manifest_digest))
        cfg = json.loads(self.read_blob(manifest["config"]["digest"]))
        entries = [e for _, e in self.entries() if e["digest"] == image.manifest_digest]
        names = [index_doc.ref_name(e) for e in entries if index_doc.ref_name(e)]
        repo_digests = sorted({index_doc.repository(n) + "@" + ((e.get("annotations") or {}).get(index_doc.INDEX_DIGEST)
                                                      or e["digest"])
                               for e in entries for n in [index_doc.ref_name(e)] if n})
        media_type = manifest.get("mediaType") or (entries[0]["mediaType"] if entries else _MANIFEST_TYPE)
        return {"image": image, "manifest": manifest, "config": cfg, "media_type": media_type,
                "names": sorted(n for n in names if "@" not in n), "repo_digests": repo_digests,
                "size": self._info_of(image.manifest_digest)["size"]}

    def commit_image(self, name, manifest_data, media_type, config_data, files=None, dirs=None,
                     annotations=None, made=None):
        """Make a fetched image part of the store in one hold of the lock: move in its verified
        blobs (`files`: digest -> path under ingest/) and unpacked layers (`dirs`: diff_id ->
        dir under ingest/), and the layers made here without a tar (`made`: diff_id ->
        (dir under ingest/, tar size, xattrs), as add_layer takes them), unpack any other
        missing layer from its blob, store the manifest and config, and write the run-path
        record, index.json and refs last. `name` None leaves the image dangling.
        MissingContent if a blob the caller found in the store has been removed since (a
        concurrent rmi): the caller fetches it and commits again."""
        import io
        import json
        manifest, cfg = json.loads(manifest_data), json.loads(config_data)
        files, dirs, name = files or {}, dirs or {}, name and normalize(name)
        with self._lock:
            os.makedirs(self._blobs, 0o700, exist_ok=True)
            os.makedirs(self._layers, 0o700, exist_ok=True)
            for diff_id, (layer_dir, size, xattrs) in (made or {}).items():
                self.add_layer(layer_dir, diff_id, size, xattrs)
            for layer in manifest["layers"]:
                final = self._blobs + index_doc.hex_of(layer["digest"])
                if not os.path.isfile(final) and layer["digest"] not in files and \
                        self._tar_spec(index_doc.hex_of(layer["digest"])) is not None:
                    continue  # a layer of ours, its tar made when needed
                if not os.path.isfile(final):
                    if layer["digest"] not in files:
                        raise MissingContent(f"blob {layer['digest']} is no longer in the store")
                    os.rename(files[layer["digest"]], final)
            for layer, diff_id in zip(manifest["layers"], cfg["rootfs"]["diff_ids"]):
                final = self._layers + index_doc.hex_of(diff_id)
                if diff_id in dirs and not os.path.isdir(final):
                    os.rename(dirs[diff_id], final)
                self._ensure_layer(layer["digest"], diff_id)
            c = manifest["config"]
            self._put_blob(io.BytesIO(config_data), c["digest"], c["size"])
            digest, size = self._put_blob(io.BytesIO(manifest_data))
            desc, info = {"mediaType": media_type, "digest": digest, "size": size}, _info(manifest, cfg)
            if name:
                self._set_tag(name, desc, info, annotations)
            else:
                self._add_dangling(desc, info)
        return image_of(self.root, info, name or info["id"], digest)

    def _add_dangling(self, desc, info):
        index = self._read_index() or index_doc.new_index()
        if all(e["digest"] != desc["digest"] for e in index["manifests"]):
            index["manifests"].append(dict(desc))
            self._write_index(index)
        self._write_cache(desc["digest"], info)

    def _import(self, tar_path, name, container_config, created, created_by):
        from fastbox.images import unpack
        try:
            with open(tar_path, "rb") as f:
                kind = unpack.compression(f.read(4))
                f.seek(0)
                blob, size = self._put_blob(f)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            raise ImageError(f"cannot read {tar_path}: {e.strerror}") from None
        try:
            diff_id = blob if not kind else unpack.diff_id(self._blobs + blob[7:])
            self._ensure_layer(blob, diff_id)
        except ImageError:
            fileops.unlink(self._blobs + blob[7:])  # unpackable, so no image can be using it
            raise
        when = _rfc3339(created)
        cfg = {"created": when, "architecture": _ARCH.get(os.uname().machine, os.uname().machine),
               "os": "linux", "config": container_config,
               "rootfs": {"type": "layers", "diff_ids": [diff_id]},
               "history": [{"created": when, "created_by": created_by}]}
        manifest = {"schemaVersion": 2, "mediaType": _MANIFEST_TYPE,
                    "config": self._put_json(cfg, _CONFIG_TYPE),
                    "layers": [{"mediaType": _LAYER_TYPES[kind], "digest": blob, "size": size}]}
        desc = self._put_json(manifest, _MANIFEST_TYPE)
        info = _info(manifest, cfg)
        self._set_tag(name, desc, info)
        return image_of(self.root, info, name, desc["digest"])

    def _set_tag(self, name, desc, info=None, annotations=None):
        """Point tag `name` at manifest `desc`. An image losing its last tag stays, dangling."""
        index = self._read_index() or index_doc.new_index()
        entries = index["manifests"]
        old = [e["digest"] for e in entries if index_doc.ref_name(e) == name]
        kept = [e for e in entries if index_doc.ref_name(e) != name
                and not (index_doc.ref_name(e) is None and e["digest"] == desc["digest"])]
        for digest in old:
            if digest != desc["digest"] and all(e["digest"] != digest for e in kept):
                kept.append(index_doc.dangling(entries, digest))
        kept.append({"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
                     "annotations": dict(annotations or {}, **{index_doc.REF_NAME: name})})
        index["manifests"] = kept
        self._write_index(index)
        if info is not None:
            self._write_cache(desc["digest"], info)
        elif read_info(self.root, desc["digest"]) is None:
            self._rebuild(desc["digest"])
        self._write_ref(name, desc["digest"])

    def _read_index(self):
        try:
            data = _read_file(os.path.join(self.root, "index.json"))
        except FileNotFoundError:
            return None  # without paying for `import json`
        import json
        try:
            index = json.loads(data)
            if not isinstance(index.get("manifests"), list):
                raise ValueError("no manifests list")
        except (ValueError, AttributeError) as e:
            raise ImageError(f"corrupt {os.path.join(self.root, 'index.json')}: {e}") from None
        return index

    def _write_index(self, index):
        import json
        layout = os.path.join(self.root, "oci-layout")
        if not os.path.exists(layout):
            fileops.write_atomic(layout, b'{"imageLayoutVersion":"1.0.0"}')
        fileops.write_atomic(os.path.join(self.root, "index.json"),
                      json.dumps(index, indent=1).encode(), sync=True)

    def _write_cache(self, digest, info):
        os.makedirs(self._resolved, exist_ok=True)
        fileops.write_atomic(self._resolved + index_doc.hex_of(digest), marshal.dumps(info))

    def _write_ref(self, name, digest):
        os.makedirs(self._refs, exist_ok=True)
        fileops.write_atomic(self._refs + _quote(name), (digest + "\n").encode())


class MissingContent(ImageError):
    """Content a commit counted on was removed meanwhile (by a concurrent rmi or prune)."""


def _info(manifest, cfg):
    """The run-path record of an image: plain builtins only, so marshal can hold it."""
    c = cfg.get("config") or {}
    return {
        "v": _CACHE_VERSION,
        "id": manifest["config"]["digest"],
        "layers": tuple(index_doc.hex_of(d) for d in reversed(cfg["rootfs"]["diff_ids"])),
        "env": tuple(c.get("Env") or ()),
        "entrypoint": tuple(c.get("Entrypoint") or ()),
        "cmd": tuple(c.get("Cmd") or ()),
        "working_dir": c.get("WorkingDir") or "",
        "user": c.get("User") or "",
        "exposed": _exposed(c.get("ExposedPorts")),
        "volumes": _volumes(c.get("Volumes")),
        "created": cfg.get("created") or "",
        "size": manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]),
    }


def _volumes(volumes):
    """An image's VOLUME paths ({"/data": {}, ...}) as ("/data", ...): where a container
    gets an anonymous volume (a relative or root path is left out, as Docker refuses
    them at build)."""
    out = {os.path.normpath(str(p)) for p in volumes or () if str(p).startswith("/")}
    return tuple(sorted(out - {"/"}))


def _exposed(ports):
    """An image's ExposedPorts ({"80/tcp": {}, ...}) as ("80/tcp", ...), by port: the ones
    -P can publish (tcp and udp; a malformed key is left out, as Docker ignores it)."""
    out = set()
    for key in ports or ():
        port, _, proto = str(key).partition("/")
        proto = (proto or "tcp").lower()
        if port.isdigit() and 0 < int(port) < 65536 and proto in ("tcp", "udp"):
            out.add((int(port), proto))
    return tuple(f"{port}/{proto}" for port, proto in sorted(out))


def _container_config(changes):
    out = {}
    for key, value in (changes or {}).items():
        if key not in _CHANGE_KEYS:
            raise SpecError(f"unsupported image change {key!r}: use one of {', '.join(_CHANGE_KEYS)}")
        if key in ("Cmd", "Entrypoint") and isinstance(value, str):
            value = ["/bin/sh", "-c", value]  # the shell form, as in a Dockerfile
        if key in ("WorkingDir", "User"):
            if not isinstance(value, str):
                raise SpecError(f"image change {key} must be a string")
        elif not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"image change {key} must be a list of strings")
        elif key == "Env" and not all("=" in v for v in value):
            raise SpecError("image change Env entries must look like KEY=VALUE")
        out[key] = value if isinstance(value, str) else list(value)
    return out


def _rfc3339(t):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
