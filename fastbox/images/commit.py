"""`fastbox commit`: a container's writable layer as a new layer on its image, with the
config changes of -c (Docker's CMD, ENTRYPOINT, ENV, WORKDIR, USER) and -m's message
in the history. The store takes the new image whole, in one hold of its lock.

The upper directory is copied once, into the new layer's directory (the store's format is
overlay's upper format); the layer's tar is only hashed from that copy, and written when a
push or save needs it (ImageStore.ensure_blob), as for a build step."""
import datetime
import errno
import hashlib
import json
import os
import stat

from fastbox.errors import SpecError
from fastbox.images import layer_tar
from fastbox.images.layer_view import OPAQUE_XATTR
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
    # an ingest session owns the layer directory until the store takes it (a writer's
    # sweep removes unowned files there)
    with Session(store.ingest_dir) as session:
        return _commit(store, session.new_dir(), upper_dir, manifest, cfg, name, changes,
                       message, author, container_config)


def _commit(store, layer_dir, upper_dir, manifest, cfg, name, changes, message, author,
            container_config):
    copy_upper(upper_dir, layer_dir, NETWORK_FILES)
    # all xattrs but overlay's own, as the upper's tar had them
    digest, size = layer_tar.digest_of(layer_dir, xattrs=True, strip=False)
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
                              made={digest: (layer_dir, size, True)})


# Bind-mounted over by the container's network set-up, as in Docker: never part of an image.
NETWORK_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


def copy_upper(upper, dest, exclude=()):
    """Copy a container's upper directory into the new directory dest, as cp -a would:
    whole files (copy_file_range), whiteouts (char 0:0), owners, modes, times, hardlinks,
    xattrs, but of overlay's own only trusted.overlay.opaque (origin, impure and the like
    name the container's mount). exclude: relative paths left out, with what is below."""
    links, dirs = {}, []
    _copy_tree(upper, dest, "", frozenset(exclude), links, dirs)
    for path, st in dirs:  # after their contents, which change their mtimes
        _metadata(path, st)


def _copy_tree(src, dest, rel, exclude, links, dirs):
    with os.scandir(src) as it:
        entries = list(it)
    for e in entries:
        sub = f"{rel}/{e.name}" if rel else e.name
        if sub in exclude:
            continue
        st, to = e.stat(follow_symlinks=False), f"{dest}/{e.name}"
        kind = st.st_mode
        if stat.S_ISDIR(kind):
            os.mkdir(to, 0o700)
            _xattrs(e.path, to)
            _copy_tree(e.path, to, sub, exclude, links, dirs)
            dirs.append((to, st))
            continue
        if st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            os.link(links[st.st_dev, st.st_ino], to, follow_symlinks=False)
            continue
        if stat.S_ISREG(kind):
            _copy_file(e.path, to, st)
        elif stat.S_ISLNK(kind):
            os.symlink(os.readlink(e.path), to)
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            os.mknod(to, kind, st.st_rdev)
        elif stat.S_ISFIFO(kind):
            os.mkfifo(to)
        else:
            continue  # a socket: not part of an image
        if not stat.S_ISREG(kind):
            _metadata(to, st)
            _xattrs(e.path, to)
        if st.st_nlink > 1:
            links[st.st_dev, st.st_ino] = to


def _copy_file(src, to, st):
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fout = os.open(to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            offset = 0
            while offset < st.st_size:
                try:
                    n = os.copy_file_range(fin, fout, st.st_size - offset, offset, offset)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    n = os.pwrite(fout, os.pread(fin, min(st.st_size - offset, 1 << 20), offset),
                                  offset)
                if n == 0:
                    break  # it shrank: the layer has what the file holds now
                offset += n
            os.fchown(fout, st.st_uid, st.st_gid)
            os.fchmod(fout, stat.S_IMODE(st.st_mode))
            _xattrs(fin, fout)  # after fchown, which drops file capabilities
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _metadata(path, st):
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _xattrs(src, to):
    """Copy src's xattrs to `to` (paths, not followed, or fds), overlay's but opaque left."""
    fds = isinstance(src, int)
    try:
        names = os.listxattr(src) if fds else os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(layer_tar.OVERLAY_XATTR) and name != OPAQUE_XATTR:
            continue
        try:
            if fds:
                os.setxattr(to, name, os.getxattr(src, name))
            else:
                os.setxattr(to, name, os.getxattr(src, name, follow_symlinks=False),
                            follow_symlinks=False)
        except OSError:
            pass  # not on this kind of file here (user.* on a symlink): the tar says so


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
