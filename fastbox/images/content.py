"""The content-addressed part of the image store (ImageStore's base): blobs and layers.

    blobs/sha256/<hex>       verified content: manifests, configs, layer tarballs as given
    layers/<diffid-hex>/     each layer unpacked once, shared read-only by every container
    layer-tars/<diffid-hex>  for a layer made here (a build step, a commit): how to make its
                             tar again, {"size": bytes, "xattrs": true|false|"copy"} (as
                             layer_tar.write_tar takes them). Such a layer is kept as its
                             directory alone (its descriptor's digest is its diffID, hashed
                             while it was made); ensure_blob() writes the blob from the
                             directory the first time a push or save needs it, checks it
                             against the digest, and renames it into blobs/

Pull, load, push, save and build go through these methods; whatever writes here holds the
store's writer lock (self._lock, see collect.py) or renames in a file made elsewhere.
"""
import os

from fastbox.errors import DigestMismatch, ImageError
from fastbox.images import files as fileops
from fastbox.images import index as index_doc
from fastbox.images.lookup import read_file as _read_file


class ContentStore:
    """Blobs and layer directories, for ImageStore (which sets root, _blobs, _layers,
    _tars, ingest_dir and _lock)."""

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
                                 json.dumps({"size": size, "xattrs": xattrs}).encode())
        os.rename(layer_dir, self._layers + hex_)
