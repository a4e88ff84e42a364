"""`fastbox commit`: a container's writable layer as a new layer on its image, with the
config changes of -c (Docker's CMD, ENTRYPOINT, ENV, WORKDIR, USER) and -m's message
in the history. The store takes the new image whole, in one hold of its lock."""
import datetime
import hashlib
import json
import os

from fastbox.errors import SpecError
from fastbox.images import files as fileops
from fastbox.images import layer_tar
from fastbox.images.store import ImageStore

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "LABEL", "EXPOSE")


def commit(upper_dir, base_image, name=None, changes=(), message="", author="",
           container_config=None, store=None):
    """The new image (fastbox.images.lookup.Image). base_image: the container's Image;
    container_config: its effective Cmd/Entrypoint/Env/WorkingDir/User, which the new
    image keeps unless changes say otherwise (as `docker commit` does)."""
    store = store or ImageStore()
    manifest = json.loads(store.read_blob(base_image.manifest_digest))
    cfg = json.loads(store.read_blob(manifest["config"]["digest"]))
    from fastbox.images.ingest import Session
    # an ingest session owns the layer file until the store takes it (a writer's sweep
    # removes unowned files there)
    with Session(store.ingest_dir) as session:
        return _commit(store, session.path(), upper_dir, manifest, cfg, name, changes, message,
                       author, container_config)


def _commit(store, tmp, upper_dir, manifest, cfg, name, changes, message, author,
            container_config):
    try:
        digest, size = _write_tar(upper_dir, tmp)
        config = dict(cfg.get("config") or {})
        config.update({k: v for k, v in (container_config or {}).items() if v is not None})
        apply_changes(config, changes)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        new_cfg = dict(cfg, created=now, config=config,
                       rootfs={"type": "layers", "diff_ids": [*cfg["rootfs"]["diff_ids"], digest]},
                       history=[*cfg.get("history", []),
                                {"created": now, "created_by": "fastbox commit",
                                 **({"comment": message} if message else {}),
                                 **({"author": author} if author else {})}])
        if author:
            new_cfg["author"] = author
        config_data = json.dumps(new_cfg, sort_keys=True, separators=(",", ":")).encode()
        layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                 "size": size}
        new_manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": "sha256:" + hashlib.sha256(config_data).hexdigest(),
                                   "size": len(config_data)},
                        "layers": [*manifest["layers"], layer]}
        manifest_data = json.dumps(new_manifest, sort_keys=True, separators=(",", ":")).encode()
        return store.commit_image(name, manifest_data, new_manifest["mediaType"], config_data,
                                  files={digest: tmp})
    finally:
        fileops.unlink(tmp)


# Bind-mounted over by the container's network set-up, as in Docker: never part of an image.
NETWORK_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


def _write_tar(upper_dir, path):
    """The container's changes as a layer; its upperdir keeps overlay's xattrs (it is live)."""
    digest, size = layer_tar.write_tar(upper_dir, path, strip=False, exclude=NETWORK_FILES)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest, size


def apply_changes(config, changes):
    """-c/--change instructions, Dockerfile syntax: CMD ["a","b"] or CMD a b (shell
    form), ENTRYPOINT, ENV K=V, WORKDIR /d, USER u, LABEL k=v, EXPOSE 80/tcp."""
    for change in changes or ():
        word, _, arg = change.strip().partition(" ")
        word, arg = word.upper(), arg.strip()
        if word not in CHANGE_INSTRUCTIONS or not arg:
            raise SpecError(f"invalid --change {change!r}: supported are "
                            f"{', '.join(CHANGE_INSTRUCTIONS)} with an argument")
        if word in ("CMD", "ENTRYPOINT"):
            config["Cmd" if word == "CMD" else "Entrypoint"] = _argv(arg, change)
            if word == "ENTRYPOINT":
                config["Cmd"] = None
        elif word == "ENV":
            key, eq, value = arg.partition("=")
            if not eq:
                key, _, value = arg.partition(" ")
            env = [e for e in config.get("Env") or [] if e.partition("=")[0] != key]
            config["Env"] = env + [f"{key}={value}"]
        elif word == "WORKDIR":
            config["WorkingDir"] = arg
        elif word == "USER":
            config["User"] = arg
        elif word == "LABEL":
            key, _, value = arg.partition("=")
            config["Labels"] = dict(config.get("Labels") or {}, **{key: value.strip('"')})
        else:
            config["ExposedPorts"] = dict(config.get("ExposedPorts") or {},
                                          **{(arg if "/" in arg else arg + "/tcp"): {}})


def _argv(arg, change):
    if arg.startswith("["):
        try:
            value = json.loads(arg)
        except ValueError:
            raise SpecError(f"invalid --change {change!r}: not a JSON array") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SpecError(f"invalid --change {change!r}: expected an array of strings")
        return value
    return ["/bin/sh", "-c", arg]
