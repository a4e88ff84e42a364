"""What `inspect`, `history` and `system df` show, in Docker's shapes."""
import json
import os

from fastbox import config
from fastbox.images import reference
from fastbox.images.files import disk_usage
from fastbox.images.store import ImageStore


def inspect(ref, store=None):
    """`docker image inspect`'s object for one image."""
    store = store or ImageStore()
    d = store.describe(ref)
    image, cfg = d["image"], d["config"]
    return {
        "Id": image.id,
        "RepoTags": [reference.parse(n).familiar for n in d["names"]],
        "RepoDigests": [_familiar_digest(r) for r in d["repo_digests"]],
        "Created": cfg.get("created", ""),
        "Author": cfg.get("author", ""),
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Config": cfg.get("config") or {},
        "Size": d["size"],
        "Descriptor": {"mediaType": d["media_type"], "digest": image.manifest_digest,
                       "size": len(store.read_blob(image.manifest_digest))},
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(image.layer_dirs)}},
        "RootFS": {"Type": "layers", "Layers": list(cfg["rootfs"]["diff_ids"])},
    }


def history(ref, store=None):
    """`docker history` rows, newest first: the config's history entries, each that made a
    layer paired with that layer's size as stored (compressed)."""
    store = store or ImageStore()
    d = store.describe(ref)
    layers = list(d["manifest"]["layers"])
    entries = d["config"].get("history") or [{} for _ in layers]
    rows = []
    for entry in entries:
        empty = bool(entry.get("empty_layer")) or not layers
        rows.append({"id": "<missing>", "created": entry.get("created", ""),
                     "created_by": entry.get("created_by", ""),
                     "size": 0 if empty else layers.pop(0)["size"],
                     "comment": entry.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["id"] = d["image"].id
    return rows


def disk_usage_report(store=None):
    """`system df`: for images and for containers, total, active, size and reclaimable
    bytes. An image is active while a kept container uses it; shared blobs and layers count
    once, and only what no active image shares is reclaimable."""
    store = store or ImageStore()
    users, sizes, active_paths, ids, active = store.users(), {}, set(), set(), set()
    for _, entry in store.entries():
        manifest = json.loads(store.read_blob(entry["digest"]))
        cfg = json.loads(store.read_blob(manifest["config"]["digest"]))
        paths = {store.blob_path(b["digest"]) for b in [manifest["config"]] + manifest["layers"]}
        paths |= {store.blob_path(entry["digest"])}
        paths |= {store.layer_path(d) for d in cfg["rootfs"]["diff_ids"]}
        for p in paths - sizes.keys():
            sizes[p] = disk_usage(p)
        image_id = manifest["config"]["digest"]
        ids.add(image_id)
        if image_id in users:
            active.add(image_id)
            active_paths |= paths
    total = sum(sizes.values())
    containers = _containers()
    return {
        "images": {"total": len(ids), "active": len(active), "size": total,
                   "reclaimable": total - sum(sizes[p] for p in active_paths)},
        "containers": {"total": len(containers), "active": sum(1 for c in containers if c[1]),
                       "size": sum(c[2] for c in containers),
                       "reclaimable": sum(c[2] for c in containers if not c[1])},
    }


def _containers():
    """(id, running, bytes) of each kept container, from its record."""
    out = []
    root = config.containers_dir()
    for cid in _listdir(root):
        try:
            with open(os.path.join(root, cid, "state.json"), "rb") as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        running = isinstance(record, dict) and record.get("status") == "running"
        out.append((cid, running, disk_usage(os.path.join(root, cid))))
    return out


def _familiar_digest(name):
    repo, _, digest = name.partition("@")
    ref = reference.parse(repo)
    return reference.Reference(ref.registry, ref.repository).familiar + "@" + digest


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
