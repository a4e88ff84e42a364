"""The local OCI image store, under config.images_dir().

    oci-layout, index.json   an OCI image layout; index.json is the tag index (annotation
                             org.opencontainers.image.ref.name = normalized reference; an entry
                             without one is a dangling image, listed as <none>)
    blobs/sha256/<hex>       verified content: manifests, configs, layer tarballs as given
    layers/<diffid-hex>/     each layer unpacked once, shared read-only by every container
    layer-tars/<diffid-hex>  for a layer made here (a build step): how to make its tar again,
                             {"size": bytes, "xattrs": bool}. Such a layer is kept as its
                             directory alone (its descriptor's digest is its diffID, hashed
                             while it was made); ensure_blob() writes the blob from the
                             directory the first time a push or save needs it, checks it
                             against the digest, and renames it into blobs/
    resolved/<manifest-hex>  marshal of what `run` needs from a manifest and its config
    refs/<quoted ref>        the manifest digest a tag names, for the run path
    ingest/                  pulls and loads in progress, owned through flocks (see ingest.py);
                             commit_image() moves their verified results in under the lock
    lock                     flock'ed by every writer; readers need none, every write is a rename

Temporaries are ".tmp-*" names next to their destination and are made only under the lock, so
any that a writer finds belong to a writer that died; it removes them.

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
from fastbox.errors import DigestMismatch, ImageError, ImageNotFound, SpecError
from fastbox.images.lookup import CACHE_VERSION as _CACHE_VERSION
from fastbox.images.lookup import HEX as _HEX
from fastbox.images.lookup import find, image_of
from fastbox.images.lookup import is_full_id as _is_full_id
from fastbox.images.lookup import quote as _quote
from fastbox.images.lookup import read_digest as _read_digest
from fastbox.images.lookup import read_file as _read_file
from fastbox.images.lookup import read_info
from fastbox.images import files as fileops
from fastbox.images import index as index_doc
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


class ImageStore:
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
        self._lock = _WriterLock(os.path.join(self.root, "lock"), self._sweep)

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

    def users(self):
        """{image id: [container ids]} from the records of kept containers
        ($FASTBOX_ROOT/containers/<id>/state.json, "image_id"): their layers must stay."""
        import json
        found = {}
        containers = config.containers_dir()
        for cid in fileops.listdir(containers):
            if len(cid) != 64 or not _HEX.issuperset(cid):
                continue
            try:
                record = json.loads(_read_file(os.path.join(containers, cid, "state.json")))
            except (OSError, ValueError):
                continue
            image_id = record.get("image_id") if isinstance(record, dict) else None
            if isinstance(image_id, str):
                found.setdefault(image_id, []).append(cid)
        return found

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

    # Pull, load, push and save: the content-addressed parts of the store.

    def blob_path(self, digest):
        return self._blobs + index_doc.hex_of(digest)

    def has_blob(self, digest):
        """Whether the store holds the blob, or can make it from a layer of its own."""
        return self.blob_size(digest) is not None

    def blob_size(self, digest):
        """The blob's size in bytes; None if the store neither holds nor can make it."""
        hex_ = index_doc.hex_of(digest)
        try:
            return os.stat(self._blobs + hex_).st_size
        except FileNotFoundError:
            spec = self._tar_spec(hex_)
            return spec["size"] if spec is not None else None

    def _tar_spec(self, hex_):
        """A layer made here whose tar is not written yet: its layer-tars/ record, or None."""
        import json
        try:
            spec = json.loads(_read_file(self._tars + hex_))
        except (OSError, ValueError):
            return None
        if not isinstance(spec, dict) or not os.path.isdir(self._layers + hex_):
            return None
        return spec

    def ensure_blob(self, digest):
        """The path of the blob, written first if it is a layer kept as a directory alone:
        made under ingest/ (a killed writer's half is swept, never seen), checked against
        the digest and size, then renamed into blobs/ under the lock."""
        hex_ = index_doc.hex_of(digest)
        path = self._blobs + hex_
        if os.path.isfile(path):
            return path
        spec = self._tar_spec(hex_)
        if spec is None:
            raise ImageError(f"blob {digest} is missing from the store")
        from fastbox.images import layer_tar
        from fastbox.images.ingest import Session
        with Session(self.ingest_dir) as session:
            tmp = session.path()
            try:
                got, size = layer_tar.write_tar(self._layers + hex_, tmp, spec.get("xattrs", True),
                                                strip=False)
            except OSError as e:
                raise ImageError(f"cannot write the tar of layer {digest}: {e}") from None
            if got != digest or size != spec["size"]:
                raise DigestMismatch(f"layer {digest} has changed in the store: its tar is "
                                     f"{got} ({size} bytes)")
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)  # a blob under its digest's name is whole, as pulled ones are
            finally:
                os.close(fd)
            with self._lock:
                if not os.path.isdir(self._layers + hex_):
                    raise ImageError(f"layer {digest} was removed from the store meanwhile")
                os.makedirs(self._blobs, 0o700, exist_ok=True)
                os.rename(tmp, path)
        return path

    def has_layer(self, diff_id):
        return os.path.isdir(self._layers + index_doc.hex_of(diff_id))

    def layer_path(self, diff_id):
        return self._layers + index_doc.hex_of(diff_id)

    def read_blob(self, digest):
        """A small blob's bytes (a manifest, a config), checked against its digest."""
        import hashlib
        try:
            data = _read_file(self._blobs + index_doc.hex_of(digest))
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} is corrupt")
        return data

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
                     annotations=None):
        """Make a fetched image part of the store in one hold of the lock: move in its verified
        blobs (`files`: digest -> path under ingest/) and unpacked layers (`dirs`: diff_id ->
        dir under ingest/), unpack any other missing layer from its blob, store the manifest
        and config, and write the run-path record, index.json and refs last. `name` None
        leaves the image dangling. MissingContent if a blob the caller found in the store has
        been removed since (a concurrent rmi): the caller fetches it and commits again."""
        import io
        import json
        manifest, cfg = json.loads(manifest_data), json.loads(config_data)
        files, dirs, name = files or {}, dirs or {}, name and normalize(name)
        with self._lock:
            os.makedirs(self._blobs, 0o700, exist_ok=True)
            os.makedirs(self._layers, 0o700, exist_ok=True)
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

    def _put_blob(self, src, digest=None, size=None):
        """Copy a binary stream into blobs/ and return (digest, size), verifying them first when
        given: nothing unverified ever gets a content-addressed name."""
        os.makedirs(self._blobs, 0o700, exist_ok=True)
        tmp = fileops.tmp_name(self._blobs)
        try:
            got, total, _ = fileops.write_hashed(src, tmp)
            if (digest is not None and got != digest) or (size is not None and total != size):
                raise DigestMismatch(f"blob mismatch: expected {digest} ({size} bytes), "
                                     f"got {got} ({total} bytes)")
            os.replace(tmp, self._blobs + got[7:])
        except BaseException:
            fileops.unlink(tmp)
            raise
        return got, total

    def _put_json(self, obj, media_type):
        import io
        import json
        data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        digest, size = self._put_blob(io.BytesIO(data))
        return {"mediaType": media_type, "digest": digest, "size": size}

    def _read_json(self, digest):
        import json
        return json.loads(self.read_blob(digest))

    def _ensure_layer(self, blob_digest, diff_id):
        """Unpack a layer blob once: into a .tmp- dir, then rename()d to layers/<diffid-hex>."""
        final = self._layers + index_doc.hex_of(diff_id)
        if os.path.isdir(final):
            return
        from fastbox.images.unpack import unpack_layer
        os.makedirs(self._layers, 0o700, exist_ok=True)  # its setuid files: root's alone
        tmp = fileops.tmp_name(self._layers)
        try:
            unpack_layer(self._blobs + index_doc.hex_of(blob_digest), tmp, diff_id)
        except FileNotFoundError:
            raise ImageError(f"layer blob {blob_digest} is missing from the store") from None
        os.rename(tmp, final)

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

    def _collect(self, kept):
        """Delete blobs, layers and records that no index entry uses any more; return the
        bytes freed."""
        import shutil
        manifests, freed = set(), 0
        blobs, layers = self._build_cache_refs()  # fastbox build's cached steps keep theirs
        for entry in kept:
            manifest = self._read_json(entry["digest"])
            cfg_digest = manifest["config"]["digest"]
            manifests.add(index_doc.hex_of(entry["digest"]))
            blobs.update(index_doc.hex_of(d) for d in [entry["digest"], cfg_digest]
                         + [layer["digest"] for layer in manifest["layers"]])
            layers.update(index_doc.hex_of(d) for d in self._read_json(cfg_digest)["rootfs"]["diff_ids"])
        for name in fileops.listdir(self._blobs):
            if name not in blobs:
                freed += fileops.disk_usage(self._blobs + name)
                fileops.unlink(self._blobs + name)
        for name in fileops.listdir(self._resolved):
            if name not in manifests:
                fileops.unlink(self._resolved + name)
        for name in fileops.listdir(self._layers):
            if name not in layers and not name.startswith(".tmp-"):
                doomed = fileops.tmp_name(self._layers)
                os.rename(self._layers + name, doomed)  # never a half-deleted layer under its name
                freed += fileops.disk_usage(doomed)
                shutil.rmtree(doomed)
        for name in fileops.listdir(self._tars):
            if name not in layers and not name.startswith(".tmp-"):
                fileops.unlink(self._tars + name)  # after its layer: never a layer without it
        return freed

    def locked(self):
        """The writer lock, for a caller that moves content in with add_layer()."""
        return self._lock

    def add_layer(self, layer_dir, diff_id, size, xattrs):
        """Move a layer directory made by the caller under ingest/ (on this filesystem) into
        the store, its tar not written: diff_id and size are those of the tar
        layer_tar.write_tar(layer_dir, xattrs=xattrs) makes, which is also the blob's
        digest (ensure_blob writes it when needed). The caller holds locked() and
        references the layer (a build cache record) before releasing it, or the next
        collection removes it."""
        import json
        os.makedirs(self._layers, 0o700, exist_ok=True)
        hex_ = index_doc.hex_of(diff_id)
        if os.path.isdir(self._layers + hex_):
            return  # the same content again: the blob, if any, is already there
        if not os.path.isfile(self._blobs + hex_):
            os.makedirs(self._tars, 0o700, exist_ok=True)
            # the record first: a layer directory is never without its way to a tar
            fileops.write_atomic(self._tars + hex_,
                                 json.dumps({"size": size, "xattrs": bool(xattrs)}).encode())
        os.rename(layer_dir, self._layers + hex_)

    def collect(self):
        """Delete what no image and no build cache record uses; returns the bytes freed."""
        with self._lock:
            index = self._read_index() or index_doc.new_index()
            return self._collect(index["manifests"])

    def _build_cache_refs(self):
        """(blob hexes, layer hexes) the build cache's records name (fastbox/build/cache.py:
        JSON with "blobs" and "layers" lists of digests)."""
        import json
        blobs, layers = set(), set()
        for name in fileops.listdir(self.build_cache_dir):
            if name.startswith(".tmp-"):
                continue
            try:
                record = json.loads(_read_file(self.build_cache_dir + name))
                blobs.update(index_doc.hex_of(d) for d in record.get("blobs", ()))
                layers.update(index_doc.hex_of(d) for d in record.get("layers", ()))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
        return blobs, layers

    def _sweep(self):
        """Remove temporaries of writers that died (called with the lock just taken)."""
        import shutil
        if os.path.isdir(self.ingest_dir):
            from fastbox.images import ingest
            ingest.sweep(self.ingest_dir)
        for parent in (os.path.join(self.root, ""), self._blobs, self._layers, self._resolved,
                       self._refs, self.build_cache_dir, self._tars):
            for name in fileops.listdir(parent):
                if name.startswith(".tmp-"):
                    path = parent + name
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        fileops.unlink(path)

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


class _WriterLock:
    """An exclusive flock on the store's lock file, re-entrant within one ImageStore."""

    def __init__(self, path, on_acquire):
        self.path, self.on_acquire = path, on_acquire
        self.fd, self.depth = -1, 0

    def __enter__(self):
        if self.depth == 0:
            import fcntl
            # 0700: layers hold the images' setuid binaries, which host users must not reach.
            os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self.on_acquire()
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
        self.depth += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            os.close(self.fd)
            self.fd = -1


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
        "created": cfg.get("created") or "",
        "size": manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]),
    }


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
