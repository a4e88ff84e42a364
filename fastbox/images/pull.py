"""`fastbox pull`: an image from a registry into the local store.

  1. the manifest, by tag or digest; an index or manifest list is narrowed to one platform;
  2. the config, checked against the manifest;
  3. every layer the store lacks: downloaded into ingest/ (resuming what a killed pull left
     there), its size and sha256 checked, then unpacked into ingest/ with its diff_id checked.
     Up to `jobs` layers at a time (3, as Docker), each layer's unpack overlapping the other
     layers' downloads, but no more unpacks at once than there are CPUs: unpacking is CPU
     work (inode creation in the kernel, tar parsing under the GIL), and a third unpacker on
     two CPUs measured slower, not faster. The first failure stops the rest;
  4. ImageStore.commit_image moves the results in under the writer lock, index.json and refs
     last. Nothing unverified is ever renamed into blobs/ or layers/, so a pull killed at any
     point leaves the store as it was (plus, at most, unreferenced verified content).

Progress goes to an object with start(name, layers), update(digest, status),
advance(digest, nbytes), reset(digest, done) and finish(lines); the CLI draws it.
"""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx

from fastbox.errors import DigestMismatch, ImageError, RegistryError, SpecError
from fastbox.images import ingest, reference, registry
from fastbox.images.index import INDEX_DIGEST
from fastbox.images.store import ImageStore, MissingContent
from fastbox.images.unpack import diff_id as layer_diff_id, unpack_layer

CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
LAYER_TYPES = ("application/vnd.oci.image.layer.v1.tar",
               "application/vnd.oci.image.layer.v1.tar+gzip",
               "application/vnd.oci.image.layer.v1.tar+zstd",
               "application/vnd.docker.image.rootfs.diff.tar.gzip",
               "application/vnd.docker.image.rootfs.diff.tar")
_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armv7l": "arm",
         "armhf": "arm", "armel": "arm", "i386": "386", "i686": "386"}
_RETRIES = 3


class Silent:
    """Progress that shows nothing."""

    def start(self, name, layers): pass
    def update(self, digest, status): pass
    def advance(self, digest, nbytes): pass
    def reset(self, digest, done): pass
    def finish(self, lines): pass


def pull(ref, *, platform=None, insecure=False, progress=None, store=None, jobs=3):
    """Pull `ref` ("busybox", "host:5000/repo:tag", "repo@sha256:...") for `platform`
    ("os/arch[/variant]", default this machine's: linux/amd64 here) and return its Image."""
    parsed = reference.parse(ref)
    want = parse_platform(platform)
    store = store or ImageStore()
    with registry.RegistryClient(parsed.registry, insecure=insecure) as client:
        return _Pull(client, store, parsed, want, progress or Silent(), jobs,
                     explicit_platform=bool(platform)).run()


def parse_platform(text=None):
    """"linux/arm64/v8" -> ("linux", "arm64", "v8"); None -> this machine's platform."""
    if not text:
        machine = os.uname().machine
        return ("linux", _ARCH.get(machine, machine), "v7" if machine == "armv7l" else "")
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise SpecError(f"invalid platform {text!r}: use OS/ARCH[/VARIANT], e.g. linux/amd64")
    os_name, arch = parts[0], _ARCH.get(parts[1], parts[1])
    return os_name, arch, parts[2] if len(parts) == 3 else ""


def select_platform(index, want, what):
    """The descriptor of the index entry for platform `want`."""
    found = []
    for desc in index.get("manifests") or ():
        p = desc.get("platform") or {}
        arch = _ARCH.get(p.get("architecture", ""), p.get("architecture", ""))
        if p.get("os") == want[0] and arch == want[1] and _variant_ok(p.get("variant", ""), want):
            found.append(desc)
    if not found:
        raise RegistryError(f"no matching manifest for {'/'.join(filter(None, want))} in the "
                            f"manifest list entries of {what}")
    exact = [d for d in found if (d.get("platform") or {}).get("variant", "") == want[2]]
    return (exact or found)[0]


def _variant_ok(variant, want):
    if not want[2] or variant == want[2]:
        return True
    return want[1] == "arm64" and {variant, want[2]} <= {"", "v8"}


class _Pull:
    def __init__(self, client, store, ref, platform, progress, jobs, explicit_platform=False):
        self.client, self.store, self.ref, self.platform = client, store, ref, platform
        self.progress, self.jobs = progress, jobs
        self.repo = ref.repository
        # Docker ignores the tag of "name:tag@digest"; so does the store.
        self.name = f"{ref.name}@{ref.digest}" if ref.digest else str(ref)
        self.abort = threading.Event()
        self.explicit_platform = explicit_platform
        self.unpackers = threading.BoundedSemaphore(max(1, min(jobs, os.cpu_count() or 1)))

    def run(self):
        data, media_type, digest, index_digest = self._manifest()
        manifest = check_manifest(json.loads(data), self.name)
        layers = _unique(manifest["layers"])
        self.progress.start(reference.parse(self.name).familiar, layers)
        current = self._current(digest)
        if current is not None:
            self.progress.finish([f"Digest: {index_digest or digest}",
                                  f"Status: Image is up to date for {self.name}"])
            return current
        config_data = self.client.small_blob(self.repo, manifest["config"])
        cfg = check_config(json.loads(config_data), manifest, self.name)
        self._check_platform(cfg, index_digest)
        annotations = {INDEX_DIGEST: index_digest} if index_digest else None
        for attempt in (0, 1):
            try:
                image = self._fetch_and_commit(manifest, cfg, data, media_type, config_data,
                                               annotations)
                break
            except MissingContent:
                if attempt:
                    raise  # removed twice under our feet: let the user retry
        self.progress.finish([f"Digest: {index_digest or digest}",
                              f"Status: Downloaded newer image for {self.name}"])
        return image

    def _manifest(self):
        """The platform's manifest: (bytes, media type, digest, digest of the index or None)."""
        data, media_type, digest = self.client.manifest(self.repo, self.ref.digest or self.ref.tag)
        index_digest = None
        if media_type in registry.INDEX_TYPES:
            index_digest = digest
            desc = select_platform(json.loads(data), self.platform, self.name)
            data, media_type, digest = self.client.manifest(self.repo, _digest(desc, self.name))
        if media_type in registry.SCHEMA1_TYPES:
            raise RegistryError(f"{self.name}: Docker image manifest schema 1 is not supported "
                                "(deprecated since 2017): push the image again with a newer tool")
        if media_type not in registry.MANIFEST_TYPES:
            raise RegistryError(f"{self.name}: unexpected manifest type {media_type}")
        return data, media_type, digest, index_digest

    def _check_platform(self, cfg, index_digest):
        """A single-platform image asked for with --platform must be that platform (Docker's
        rule); without --platform it is taken whatever it says."""
        got = (cfg.get("os", ""), _ARCH.get(cfg.get("architecture", ""), cfg.get("architecture", "")))
        if self.explicit_platform and index_digest is None and got != self.platform[:2]:
            raise ImageError(f"image {self.name} was found but does not match the specified "
                             f"platform: wanted {'/'.join(filter(None, self.platform))}, "
                             f"actual: {'/'.join(got)}")

    def _current(self, digest):
        """The stored image if `name` already points at this manifest and its layers are there."""
        if self.store.tagged(self.name) != digest:
            return None
        try:
            image = self.store.resolve(self.name)
        except ImageError:
            return None
        return image if all(os.path.isdir(d) for d in image.layer_dirs) else None

    def _fetch_and_commit(self, manifest, cfg, data, media_type, config_data, annotations):
        self.abort.clear()
        work, unpacking = [], set()
        for desc, diff_id in _unique_pairs(manifest["layers"], cfg["rootfs"]["diff_ids"]):
            need_blob = not self.store.has_blob(desc["digest"])
            need_layer = not self.store.has_layer(diff_id) and diff_id not in unpacking
            unpacking.add(diff_id)
            if need_blob or need_layer:
                work.append((desc, diff_id, need_blob, need_layer))
            else:
                self.progress.update(desc["digest"], "Already exists")
        files, dirs, opened, keep = {}, {}, [], True
        with ingest.Session(self.store.ingest_dir) as session:
            try:
                for desc, diff_id, blob, layer_dir in self._run_jobs(session, work, opened):
                    if blob is not None:
                        files[desc["digest"]] = blob.path
                    if layer_dir is not None:
                        dirs[diff_id] = layer_dir
                image = self.store.commit_image(self.name, data, media_type, config_data,
                                                files, dirs, annotations)
                keep = False  # committed: what was not moved in is a redundant copy
                return image
            except ImageError:
                keep = False  # bad content (a digest mismatch, a hostile layer): none of it
                raise
            finally:
                # Otherwise (network, Ctrl-C) what arrived intact stays, for the next pull.
                for blob in opened:
                    if keep:
                        blob.close()
                    else:
                        blob.discard()

    def _run_jobs(self, session, work, opened):
        """Run the layer jobs `jobs` at a time; on the first failure stop the others and raise."""
        results, first_error = [], None
        with ThreadPoolExecutor(max(1, self.jobs)) as pool:
            futures = {pool.submit(self._layer, session, opened, *job): job for job in work}
            try:
                for future in as_completed(futures):
                    try:
                        blob, layer_dir = future.result()
                    except BaseException as e:  # noqa: BLE001 - re-raised below
                        self.abort.set()
                        first_error = first_error or e
                        continue
                    job = futures[future]
                    results.append((job[0], job[1], blob, layer_dir))
            except BaseException:
                self.abort.set()  # Ctrl-C: the workers notice between chunks
                raise
        if first_error is not None:
            raise first_error
        return results

    def _layer(self, session, opened, desc, diff_id, need_blob, need_layer):
        digest = desc["digest"]
        if self.abort.is_set():
            raise _Aborted()
        blob, src = None, self.store.blob_path(digest)
        if need_blob:
            blob = ingest.BlobFile(self.store.ingest_dir, session, digest, desc["size"])
            opened.append(blob)
            self._download(blob)
            src = blob.path
        layer_dir = None
        if need_layer:
            layer_dir = session.new_dir()
            try:
                with self.unpackers:
                    self.progress.update(digest, "Extracting")
                    unpack_layer(src, layer_dir, diff_id)
            except FileNotFoundError:
                raise MissingContent(f"blob {digest} is no longer in the store") from None
        elif need_blob:
            self.progress.update(digest, "Verifying")
            got = layer_diff_id(src)  # the layer is here from another blob: this one must match
            if got != diff_id:
                raise DigestMismatch(f"layer {digest}: diff_id {got}, the config says {diff_id}")
        self.progress.update(digest, "Pull complete")
        return blob, layer_dir

    def _download(self, blob):
        digest, offset = blob.digest, blob.open()
        self.progress.reset(digest, offset)
        resumed, failures = offset > 0, 0
        while True:
            if blob.written < blob.size:
                self.progress.update(digest, "Downloading")
                try:
                    self._stream(blob)
                except (httpx.TransportError, registry.TransportFailure) as e:
                    failures += 1
                    if failures > _RETRIES:
                        raise RegistryError(f"download of {digest} failed: {e}") from None
                    time.sleep(0.2 * failures)
                    continue  # resume from what arrived
            try:
                blob.verify()
                return
            except DigestMismatch:
                if not resumed:
                    raise
                resumed = False  # the partial an earlier pull left may be what is bad: once more
                self.progress.reset(digest, 0)

    def _stream(self, blob):
        r, start = self.client.open_blob(self.repo, blob.digest, blob.written)
        try:
            if start != blob.written:
                blob.restart()
                self.progress.reset(blob.digest, 0)
            for chunk in r.iter_bytes(registry.CHUNK):
                if self.abort.is_set():
                    raise _Aborted()
                blob.write(chunk)
                self.progress.advance(blob.digest, len(chunk))
        finally:
            r.close()


class _Aborted(RegistryError):
    """Another layer failed: this one stops."""

    def __init__(self):
        super().__init__("pull aborted")


def check_manifest(manifest, what):
    """An image manifest's shape, before any of its digests becomes a file name."""
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise ImageError(f"{what}: not a schema 2 image manifest")
    cfg, layers = manifest.get("config"), manifest.get("layers")
    if not isinstance(cfg, dict) or not isinstance(layers, list):
        raise ImageError(f"{what}: manifest without config or layers")
    _descriptor(cfg, what)
    if cfg.get("mediaType") not in CONFIG_TYPES:
        raise ImageError(f"{what} is not a container image (config type "
                         f"{cfg.get('mediaType')!r}): fastbox cannot run it")
    for layer in layers:
        _descriptor(layer, what)
        if layer.get("mediaType") not in LAYER_TYPES:
            raise ImageError(f"{what}: unsupported layer type {layer.get('mediaType')!r}")
    return manifest


def check_config(cfg, manifest, what):
    rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(manifest["layers"]):
        raise ImageError(f"{what}: the config lists {len(diff_ids or ())} diff_ids for "
                         f"{len(manifest['layers'])} layers")
    for d in diff_ids:
        _check_digest(d, what)
    return cfg


def _descriptor(desc, what):
    if not isinstance(desc, dict) or not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise ImageError(f"{what}: malformed descriptor {desc!r}")
    _check_digest(desc.get("digest"), what)


def _check_digest(digest, what):
    if not (isinstance(digest, str) and len(digest) == 71 and digest.startswith("sha256:")
            and all(c in "0123456789abcdef" for c in digest[7:])):
        raise ImageError(f"{what}: unsupported or malformed digest {digest!r}")


def _digest(desc, what):
    _descriptor(desc, what)
    return desc["digest"]


def _unique(layers):
    """(digest, size) of each distinct blob, in order (images often repeat the empty layer)."""
    seen, out = set(), []
    for layer in layers:
        if layer["digest"] not in seen:
            seen.add(layer["digest"])
            out.append((layer["digest"], layer["size"]))
    return out


def _unique_pairs(layers, diff_ids):
    seen = set()
    for desc, diff_id in zip(layers, diff_ids):
        if desc["digest"] not in seen:
            seen.add(desc["digest"])
            yield desc, diff_id
