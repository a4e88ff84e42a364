"""`fastbox push`: an image from the local store to a registry, as the distribution spec has
it: first every blob the registry lacks, then the manifest, byte for byte as stored, so the
image has the same digest there as here.

For each blob (config and layers, `jobs` at a time): HEAD says whether the repository has it
already; if not, and another repository of the same registry had it when this store pulled or
pushed it (any image in the store named after that registry that has the blob), a
cross-repository mount links it without a byte sent; otherwise it is uploaded: POST then one
PUT, or, above `chunk_size`, POST, a PATCH per chunk and a closing PUT.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor

from fastbox.errors import ImageError, SpecError
from fastbox.images import reference, registry
from fastbox.images.store import ImageStore

CHUNK_SIZE = 32 << 20  # above this a blob goes in PATCHes: proxies cap request bodies


def push(ref, *, insecure=False, progress=None, store=None, chunk_size=CHUNK_SIZE, jobs=3):
    """Push the image tagged `ref` ("host:5000/repo:tag") and return its manifest digest."""
    from fastbox.images.pull import Silent
    store = store or ImageStore()
    parsed = reference.parse(ref)
    name = str(parsed)
    if parsed.digest and parsed.tag:
        raise SpecError(f"cannot push {ref!r}: give a tag or a digest, not both")
    image = store.resolve(name)
    if store.tagged(name) != image.manifest_digest:
        raise ImageError(f"an image does not exist locally with the tag: {parsed.familiar}")
    data = store.read_blob(image.manifest_digest)
    manifest = json.loads(data)
    media_type = manifest.get("mediaType") or _entry_type(store, image.manifest_digest)
    blobs = _unique([manifest["config"]] + manifest["layers"])
    progress = progress or Silent()
    progress.start(f"{parsed.registry}/{parsed.repository}", [(d["digest"], d["size"]) for d in blobs])
    with registry.RegistryClient(parsed.registry, insecure=insecure) as client:
        job = _Push(client, store, parsed, progress, chunk_size)
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for future in [pool.submit(job.blob, desc) for desc in blobs]:
                future.result()
        digest = client.put_manifest(parsed.repository, parsed.digest or parsed.tag, data, media_type)
    progress.finish([f"{parsed.digest or parsed.tag}: digest: {digest} size: {len(data)}"])
    return digest


class _Push:
    def __init__(self, client, store, ref, progress, chunk_size):
        self.client, self.store, self.ref = client, store, ref
        self.progress, self.chunk_size = progress, chunk_size
        self.repo = ref.repository

    def blob(self, desc):
        digest = desc["digest"]
        scopes = [f"repository:{self.repo}:pull,push"]
        if self.client.blob_exists(self.repo, digest, scopes):
            self.progress.update(digest, "Layer already exists")
            return
        for source in mount_sources(self.store, self.ref, digest):
            if self.client.mount_blob(self.repo, digest, source):
                self.progress.update(digest, f"Mounted from {source}")
                return
        self.progress.update(digest, "Pushing")
        path = self.store.ensure_blob(digest)  # a built layer's tar is written now, once
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is missing from the store") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size != desc["size"]:
                raise ImageError(f"blob {digest} in the store has {size} bytes, not {desc['size']}")
            self.client.upload_blob(self.repo, digest, size, f, self.chunk_size,
                                    lambda n: self.progress.advance(digest, n))
        self.progress.update(digest, "Pushed")


def mount_sources(store, ref, digest):
    """Repositories of ref's registry that the store knows to hold `digest`."""
    sources = []
    for name, entry in store.entries():
        if not name:
            continue
        other = reference.parse(name)
        if other.registry != ref.registry or other.repository == ref.repository \
                or other.repository in sources:
            continue
        try:
            manifest = json.loads(store.read_blob(entry["digest"]))
        except (ImageError, ValueError):
            continue
        if any(d.get("digest") == digest for d in [manifest.get("config") or {}]
               + (manifest.get("layers") or [])):
            sources.append(other.repository)
    return sources


def _entry_type(store, digest):
    for _, entry in store.entries():
        if entry["digest"] == digest:
            return entry["mediaType"]
    return registry.OCI_MANIFEST


def _unique(descs):
    seen, out = set(), []
    for d in descs:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            out.append(d)
    return out
