"""Keeping the image store clean (ImageStore's base): its writer lock, the sweep of what
dead writers left, and the collection of what nothing uses any more.

    lock    flock'ed by every writer; readers need none, every write is a rename

Temporaries are ".tmp-*" names next to their destination and are made only under the lock,
so any that a writer finds belong to a writer that died; taking the lock removes them
(_sweep), and the ingest sessions of dead processes with them (ingest.sweep).
"""
import os

from fastbox import config
from fastbox.images import files as fileops
from fastbox.images import index as index_doc
from fastbox.images.lookup import HEX as _HEX
from fastbox.images.lookup import read_file as _read_file


class Collector:
    """The lock and the collection, for ImageStore (which sets root and the directories'
    paths; the collection reads index.json and manifests through it)."""

    def locked(self):
        """The writer lock, for a caller that moves content in with add_layer()."""
        return self._lock

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


class WriterLock:
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
