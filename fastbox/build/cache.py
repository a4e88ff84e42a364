"""The build cache: a step's key -> the layer it made, kept in the image store.

A key chains: the parent step's key, the step's instruction after expansion and, for RUN,
the build args it sees, for COPY/ADD the content hash of its sources (context.py). Every
instruction extends the chain; only the steps that change the filesystem (RUN, COPY, ADD,
WORKDIR's mkdir) have records:

    <store>/buildcache/<key hex>   {"blobs": [layer digest], "layers": [diff_id],
                                    "created": RFC 3339, "size": bytes}  (empty lists: no diff)

A record is written under the store's writer lock right after its layer directory was
renamed in (ImageStore.add_layer: the directory alone, its tar written only when a push or
save needs it), so the store's collection always sees it as used; a build killed before
that leaves only its ingest/ session, which the next writer sweeps. `fastbox builder prune` removes the records and the context digests' memos
(context.HashMemo), then what only the records kept.
"""
import hashlib
import json
import os

from fastbox.images import files as fileops
from fastbox.images.lookup import read_file


def chain(parent, *parts):
    """The key of a step: its parent's key and its description."""
    h = hashlib.sha256(parent.encode())
    h.update(b"\0" + json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


class BuildCache:
    def __init__(self, store):
        self.store = store
        self.dir = store.build_cache_dir

    def get(self, key):
        """The record for key if it and its content are still in the store, else None."""
        try:
            record = json.loads(read_file(self.dir + key))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        try:
            blobs = [self.store.blob_size(d) for d in record.get("blobs", ())]
        except (OSError, ValueError, TypeError):
            return None
        if None not in blobs and sum(blobs) == record.get("size", 0) and \
                all(self.store.has_layer(d) for d in record.get("layers", ())):
            return record
        return None

    def put(self, key, record):
        """Write key's record (the caller holds the store's lock)."""
        os.makedirs(self.dir, 0o700, exist_ok=True)
        fileops.write_atomic(self.dir + key, json.dumps(record).encode())

    def commit(self, key, record, layer_dir=None, xattrs="copy"):
        """Move a step's layer directory (none for an empty diff) into the store and record
        it, in one hold of the store's lock. record["layers"][0] and record["size"] are
        the diffID and size of the tar layer_tar.write_tar(layer_dir, xattrs=xattrs) makes."""
        with self.store.locked():
            if layer_dir is not None:
                self.store.add_layer(layer_dir, record["layers"][0], record["size"], xattrs)
            self.put(key, record)

    def prune(self):
        """Remove every record and what only they kept; returns (records, bytes freed)."""
        with self.store.locked():
            names = [n for n in fileops.listdir(self.dir) if not n.startswith(".tmp-")]
            for name in names:
                fileops.unlink(self.dir + name)
            for name in fileops.listdir(self.store.root):  # the context digests' memos
                if name.startswith("buildsums-"):
                    fileops.unlink(os.path.join(self.store.root, name))
            freed = self.store.collect()
        return len(names), freed
