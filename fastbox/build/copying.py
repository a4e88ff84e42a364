"""COPY and ADD: sources from the context, a stage or an image -> a new layer.

BuildKit's order: the sources' key (paths, modes, owners when kept, sizes, link targets,
content digests; never mtimes) first, so that a hit copies nothing. A context file's
digest comes from the memo of earlier builds while its inode, size, mtime and ctime are
unchanged; a stage's or image's files are hashed before copying; content new to the memo
is hashed while it is copied (one read for the copy, the tar and the key), and the key
checked afterwards. Destinations follow Docker's rules: relative to WORKDIR, a trailing /
or an existing directory takes the sources inside, a directory source copies its
contents, several sources need a directory.
"""
import hashlib
import os
import stat as stat_mod

from fastbox.build import cache as cache_mod
from fastbox.build import context as ctx_mod
from fastbox.build import expand as ex
from fastbox.images import layer_tar
from fastbox.images.layer_view import LayerView
from fastbox.build import steps
from fastbox.build.steps import BuildError


class _CopyPlan:
    """items: (kind "doc"|"url"|"tree", source name, data, owners kept) in order; known:
    source host path -> content digest known before copying."""

    def __init__(self, add):
        self.add, self.items, self.known = add, [], {}
        self.sources, self.dest, self.view, self.flags, self.created_by = [], "", None, {}, ""
        self.owner = self.chmod = self.stage = self.from_view = None


class CopyInstructions:
    """The COPY and ADD instructions of Builder (a mixin: it uses the builder's stage
    state, cache, session and output)."""

    def _i_copy(self, st, inst):
        return self._copy(st, inst, add=False)

    def _i_add(self, st, inst):
        return self._copy(st, inst, add=True)

    def _copy(self, st, inst, add):
        plan = self._copy_plan(st, inst, add)
        self._show_step()
        regular = {path for item in plan.items if isinstance(item[2], list)
                   for _, path, est in item[2] if stat_mod.S_ISREG(est.st_mode)}
        if regular <= plan.known.keys():
            # BuildKit's order: the key first, then a copy only on a miss
            key = self._copy_key(st, inst, plan, plan.known)
            record = None if self.opts.no_cache else self.cache.get(key)
            if record is not None:
                return self._apply(st, key, record, plan.created_by, True)
            d = self.session.new_dir()
            _, tar = self._copy_make(inst, plan, d, plan.known)
            return self._apply(st, key, self._commit_layer(key, d, tar=tar), plan.created_by, False)
        # Some content is new to us: read it once, for the copy and the key together; a hit
        # found afterwards (the same content again) throws the copy away.
        d = self.session.new_dir()
        copier, tar = self._copy_make(inst, plan, d, plan.known)
        digests = dict(plan.known, **copier.digests)
        self.memo().learn(plan.items, digests)
        key = self._copy_key(st, inst, plan, digests)
        record = None if self.opts.no_cache else self.cache.get(key)
        if record is not None:
            return self._apply(st, key, record, plan.created_by, True)
        return self._apply(st, key, self._commit_layer(key, d, tar=tar), plan.created_by, False)

    def _copy_plan(self, st, inst, add):
        """What the instruction copies, where, as whom; the digests known before copying."""
        for flag in ("parents", "exclude"):
            if flag in inst.flags:
                raise self.err(inst, f"{inst.cmd} --{flag} is not supported yet")
        plan = _CopyPlan(add)
        scope = self._scope(st)
        if inst.json is not None:
            words = [self._expand(inst, w, scope) for w in inst.json]
        else:
            words = self._expand_words(inst, inst.rest, scope)
        if len(words) < 2:
            raise self.err(inst, f"{inst.cmd} requires at least two arguments: SRC... DEST")
        plan.sources, dest = words[:-1], words[-1]
        workdir = st.config.get("WorkingDir") or "/"
        plan.dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
        if dest.endswith("/") and not plan.dest.endswith("/"):
            plan.dest += "/"
        plan.view = LayerView(st.layer_dirs)
        if inst.flag("chown"):
            plan.owner = self._owner(st, self._expand(inst, inst.flag("chown"), scope), inst)
        if inst.flag("chmod"):
            try:
                plan.chmod = int(inst.flag("chmod"), 8)
            except ValueError:
                raise self.err(inst, f"invalid --chmod={inst.flag('chmod')}: an octal mode") from None
        if inst.flag("from"):
            plan.stage = self._expand(inst, inst.flag("from"), scope)
            plan.from_view = self._from_view(plan.stage, st, inst)
        for src in plan.sources:
            self._plan_source(plan, inst, src, scope)
        if len(plan.items) > 1 and not plan.dest.endswith("/") and \
                not (st.layer_dirs and self._is_dir(plan.view, plan.dest)):
            raise self.err(inst, f"When using {inst.cmd} with more than one source file, "
                                 "the destination must be a directory and end with a /")
        plan.flags = {k: v for k, v in inst.flags.items() if k != "from"}
        plan.created_by = f"{inst.cmd} " + " ".join(plan.sources) + f" {dest} # buildkit"
        return plan

    def _plan_source(self, plan, inst, src, scope):
        heredocs = {d.name: d for d in inst.heredocs}
        name = src[2:].lstrip("-").strip("'\"") if src.startswith("<<") else None
        if name in heredocs:
            doc = heredocs[name]
            body = ex.expand_text(doc.body, scope) if doc.expand else doc.body
            plan.items.append(("doc", doc.name, body.encode(), False))
        elif plan.add and src.startswith(("http://", "https://")):
            plan.items.append(("url", src, self._fetch(src, inst), False))
        elif plan.from_view is not None:
            rels = self._view_match(plan.from_view, src)
            if not rels:
                raise self.err(inst, f"{inst.cmd} failed: {src!r} not found in {plan.stage!r}")
            for rel in rels:
                entries = list(steps.view_tree(plan.from_view, rel))
                # a stage's files are hashed before copying: a hit then copies nothing
                plan.known.update(ctx_mod.digests_of(entries))
                plan.items.append(("tree", rel, entries, True))
        else:
            rels = self.context.match(src)
            if not rels:
                raise self.err(inst, f"{inst.cmd} failed: file not found in build context "
                                     f"or excluded by .dockerignore: {src}")
            for rel in rels:
                entries = list(self.context.tree(rel))
                if plan.add and len(entries) == 1 and _is_archive(entries[0][1]):
                    plan.known.update(ctx_mod.digests_of(entries))  # extracted, not copied
                else:
                    plan.known.update(self.memo().known(entries))
                plan.items.append(("tree", rel, entries, False))

    def _copy_key(self, st, inst, plan, digests):
        h = ctx_mod.new_hash()
        for kind, name, data, owners in plan.items:
            if kind == "doc":
                h.update(b"doc\0" + name.encode() + b"\0" + data)
            elif kind == "url":
                h.update(b"url\0" + name.encode() + b"\0" + hashlib.sha256(data[0]).digest())
            else:
                ctx_mod.fingerprint(h, data, owners, digests)
        return cache_mod.chain(st.key, inst.cmd, plan.sources, plan.dest, plan.flags,
                               plan.stage or "", h.hexdigest())

    def _copy_make(self, inst, plan, d, digests):
        """The layer and its tar's digest in one pass over the sources: (copier, (digest,
        size)). The tar is only hashed, in the order the files are made; when that is not
        the order of the tar the store writes later (sources that overlap), the finished
        directory is hashed instead."""
        tar = layer_tar.TarStream()
        with steps.Copier(d, plan.view, tar, digests) as copier:
            for kind, name, data, _ in plan.items:
                self._place(copier, plan.view, kind, name, data, plan.dest, plan.owner,
                            plan.chmod, plan.add, plan.from_view is None, inst)
            copier.done()
        digest = tar.close()
        if not tar.canonical:
            digest = layer_tar.digest_of(d, xattrs="copy")
        return copier, digest

    def memo(self):
        if self._memo is None:
            self._memo = ctx_mod.HashMemo(self.store.root, self.context.root)
        return self._memo

    def _is_dir(self, view, path):
        found = view.find(view.resolve(path))
        import stat
        return bool(found and stat.S_ISDIR(found[1].st_mode))

    def _place(self, copier, view, kind, name, data, dest_abs, owner, chmod, add, from_context,
               inst):
        import stat
        to_dir = dest_abs.endswith("/") or (bool(view.layers) and self._is_dir(view, dest_abs))
        if kind == "doc":
            target = os.path.join(dest_abs, name) if to_dir else dest_abs
            target = self._resolved_target(view, target)
            copier.write_file(target, data, chmod if chmod is not None else 0o644, owner)
            return
        if kind == "url":
            body, mtime = data
            base = name.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "index.html"
            target = os.path.join(dest_abs, base) if to_dir else dest_abs
            copier.write_file(self._resolved_target(view, target), body,
                              chmod if chmod is not None else 0o600, owner, mtime)
            return
        entries = data
        top_st = entries[0][2]
        own = owner if owner is not None else ((0, 0) if from_context else None)
        if add and from_context and stat.S_ISREG(top_st.st_mode) and _is_archive(entries[0][1]):
            self._extract(copier, view, entries[0][1], dest_abs)
            return
        if stat.S_ISDIR(top_st.st_mode):
            target = dest_abs
        else:
            target = os.path.join(dest_abs, os.path.basename(name)) if to_dir else dest_abs
        copier.put(self._resolved_target(view, target), entries, own, chmod)

    def _resolved_target(self, view, target):
        """The target with its parent directories' symlinks resolved inside the stage."""
        parent, _, base = target.rstrip("/").rpartition("/")
        if not view.layers:
            return f"{parent}/{base}".strip("/")
        return f"{view.resolve(parent)}/{base}".strip("/")

    def _extract(self, copier, view, archive, dest_abs):
        """ADD of a local tar (plain, gzip, bzip2, xz): its contents under dest."""
        import tarfile
        from fastbox.images.unpack import unpack_layer
        tmp = self.session.path()
        try:
            with tarfile.open(archive, "r:*") as t:
                plain = self.session.path()
                with open(plain, "wb") as out:
                    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as w:
                        for m in t:
                            w.addfile(m, t.extractfile(m) if m.isreg() else None)
            unpack_layer(plain, tmp)
        except tarfile.TarError as e:
            raise BuildError(f"ADD: cannot extract {archive}: {e}") from None
        target = self._resolved_target(view, dest_abs.rstrip("/") + "/x").rpartition("/")[0]
        copier.put(target, list(_dir_tree(tmp)), None, None)

    def _fetch(self, url, inst):
        import hashlib
        import httpx
        try:
            r = httpx.get(url, follow_redirects=True, timeout=60)
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise BuildError(f"{self.file_name}:{inst.line}: ADD {url}: {e}") from None
        want = inst.flag("checksum")
        if want:
            algo, _, hexd = want.partition(":")
            if algo not in ("sha256", "sha384", "sha512") or not hexd:
                raise self.err(inst, f"invalid --checksum={want}: use sha256:HEX")
            got = hashlib.new(algo, r.content).hexdigest()
            if got != hexd:
                raise BuildError(f"{self.file_name}:{inst.line}: ADD {url}: checksum mismatch: "
                                 f"expected {want}, got {algo}:{got}")
        mtime = None
        if "last-modified" in r.headers:
            from email.utils import parsedate_to_datetime
            try:
                mtime = int(parsedate_to_datetime(r.headers["last-modified"]).timestamp() * 1e9)
            except (TypeError, ValueError):
                pass
        return r.content, mtime

    def _from_view(self, ref, st, inst):
        dep = self.by_name.get(ref.lower())
        if dep is None and ref.isdigit() and int(ref) < st.index:
            dep = self.stages[int(ref)]
        if dep is not None and dep.index < st.index:
            return LayerView(dep.layer_dirs)
        return LayerView(self._image(ref, inst).layer_dirs)

    def _view_match(self, view, src):
        import fnmatch
        rel = src.strip("/")
        if not any(c in rel for c in "*?["):
            rel = view.resolve(rel) if rel else ""
            return [rel] if view.find(rel) is not None else []
        parent, _, pat = rel.rpartition("/")
        parent = view.resolve(parent) if parent else ""
        return [f"{parent}/{n}".strip("/") for n in view.listdir(parent) if fnmatch.fnmatchcase(n, pat)]

    def _owner(self, st, text, inst):
        """--chown=USER[:GROUP] as (uid, gid): names from the stage's own /etc/passwd and
        /etc/group, read through the stage's view (its symlinks resolved inside it, never on
        the host); a user alone gives its primary group, as Docker does."""
        u, _, g = text.partition(":")
        if u.isdigit() and (not g or g.isdigit()):
            return int(u), int(g or u)
        view = LayerView(st.layer_dirs)
        uid = gid = None
        if u.isdigit():
            uid, gid = int(u), int(u)
        else:
            entry = _entry(view, "etc/passwd", u)
            if entry is None or not entry[2].isdigit() or not entry[3].isdigit():
                raise self.err(inst, f"--chown={text}: unable to find user {u}: no matching "
                                     "entries in passwd file")
            uid, gid = int(entry[2]), int(entry[3])
        if g:
            if g.isdigit():
                gid = int(g)
            else:
                entry = _entry(view, "etc/group", g)
                if entry is None or not entry[2].isdigit():
                    raise self.err(inst, f"--chown={text}: unable to find group {g}: no "
                                         "matching entries in group file")
                gid = int(entry[2])
        return uid, gid


def _entry(view, rel, name):
    """The colon-separated entry for name in the stage's file rel, or None."""
    found = view.find(view.resolve(rel)) if view.layers else None
    if found is None or not stat_mod.S_ISREG(found[1].st_mode):
        return None
    fd = os.open(found[0], os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and not line.startswith("#"):
            return fields + [""] * (4 - len(fields))
    return None


def _is_archive(path):
    import tarfile
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return False
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _dir_tree(root):
    st = os.lstat(root)
    yield "", root, st
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel, path, os.lstat(path)
