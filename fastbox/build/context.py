"""The build context: a directory, what .containerignore/.dockerignore leaves of it, the
sources a COPY pattern names, and the content hash of those sources.

Ignore patterns follow Docker's: paths relative to the context (a leading / ignored), `*`
and `?` within one path element, `**` across any number of them, `!` for an exception,
the last matching pattern wins, and a pattern matching a directory matches everything
under it. The hash is BuildKit's idea: each source's relative path, type, mode, owner,
symlink target and content, never its mtime, computed before anything is copied, so a
cache hit costs no copy.
"""
import hashlib
import os
import re
import stat

from fastbox.errors import SpecError
from fastbox.images.layer_tar import copied_xattrs

IGNORE_FILES = (".containerignore", ".dockerignore")
_HASH_CHUNK = 1 << 20


def pattern_regex(pattern, double_star=True):
    """A Docker (Go filepath.Match + `**`) pattern as an anchored regex."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if double_star and pattern[i:i + 2] == "**":
                i += 2
                if pattern[i:i + 1] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise SpecError(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def _clean(path):
    parts = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/".join(parts)


class IgnoreRules:
    def __init__(self, lines=()):
        self.rules = []  # (regex, exception)
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            cleaned = _clean(line)
            if cleaned:
                self.rules.append((pattern_regex(cleaned), exception))
        self.has_exceptions = any(e for _, e in self.rules)

    def ignored(self, rel):
        """Whether the context-relative path rel is left out (its parents count too)."""
        parts = rel.split("/")
        result = False
        for regex, exception in self.rules:
            for n in range(1, len(parts) + 1):
                if regex.match("/".join(parts[:n])):
                    result = not exception
                    break
        return result


class Context:
    def __init__(self, root):
        self.root = os.path.abspath(root) if root else None
        self.rules = IgnoreRules()
        if self.root:
            if not os.path.isdir(self.root):
                raise SpecError(f"unable to prepare context: path {root!r} not found")
            for name in IGNORE_FILES:
                path = os.path.join(self.root, name)
                if os.path.isfile(path):
                    with open(path, encoding="utf-8", errors="replace") as f:
                        self.rules = IgnoreRules(f.read().splitlines())
                    break

    def host_path(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def resolve(self, rel, follow_last=True):
        """rel with its symlinks resolved inside the context, as Docker resolves a source:
        a link may point anywhere, but it is followed from the context's root, never on the
        host (`data -> /etc` makes COPY data/passwd look for the context's etc/passwd).
        Every ancestor of the result is a real directory of the context."""
        parts = [p for p in rel.split("/") if p and p != "."]
        done, hops = [], 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            path = self.host_path("/".join(done + [part]))
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return "/".join(done + [part] + parts)  # missing: nothing further to follow
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                hops += 1
                if hops > 40:
                    raise SpecError(f"too many levels of symbolic links in {rel!r}")
                target = os.readlink(path)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                return "/".join(done + [part] + parts)  # a file in the middle: no such path
            done.append(part)
        return "/".join(done)

    def match(self, source):
        """The context-relative paths a COPY source names (a glob or a path), not ignored.
        A source may not leave the context."""
        if self.root is None:
            raise SpecError(f"no build context: cannot copy {source!r}")
        cleaned = _clean(source)
        if not any(c in cleaned for c in "*?["):
            cleaned = self.resolve(cleaned)
            if cleaned and (self.rules.ignored(cleaned) or not self._exists(cleaned)):
                return []
            return [cleaned]
        regex, found = pattern_regex(cleaned, double_star=False), []
        depth = cleaned.count("/") + 1
        for rel in self._walk_names("", depth):
            if regex.match(rel) and not self.rules.ignored(rel):
                found.append(rel)
        return sorted(found)

    def _exists(self, rel):
        """rel (resolved) is in the context: every ancestor a real directory."""
        parts = rel.split("/")
        for n in range(1, len(parts)):
            try:
                if not stat.S_ISDIR(os.lstat(self.host_path("/".join(parts[:n]))).st_mode):
                    return False
            except OSError:
                return False
        return os.path.lexists(self.host_path(rel))

    def _walk_names(self, rel, depth):
        if depth == 0:
            return
        try:
            names = sorted(os.listdir(self.host_path(rel)))
        except (NotADirectoryError, FileNotFoundError):
            return
        for name in names:
            child = f"{rel}/{name}" if rel else name
            yield child
            if depth > 1 and stat.S_ISDIR(os.lstat(self.host_path(child)).st_mode):
                yield from self._walk_names(child, depth - 1)

    def tree(self, rel):
        """(relative path below rel, host path, lstat) of rel and everything under it that is
        not ignored, parents before children, names sorted."""
        top = self.host_path(rel)
        st = os.lstat(top)
        yield "", top, st
        if stat.S_ISDIR(st.st_mode):
            yield from self._tree(rel, "")

    def _tree(self, base, sub):
        path = self.host_path(f"{base}/{sub}".strip("/"))
        for name in sorted(os.listdir(path)):
            child_sub = f"{sub}/{name}" if sub else name
            full = f"{base}/{child_sub}".strip("/")
            host = f"{path}/{name}"  # one join per entry: a context may hold many
            st = os.lstat(host)
            if self.rules.ignored(full):
                if not stat.S_ISDIR(st.st_mode) or not self.rules.has_exceptions:
                    continue
                # an exception may bring back something below an ignored directory,
                # which then comes with it
                below = list(self._tree(base, child_sub))
                if below:
                    yield child_sub, host, st
                    yield from below
                continue
            yield child_sub, host, st
            if stat.S_ISDIR(st.st_mode):
                yield from self._tree(base, child_sub)


def file_digest(path):
    """sha256 hex of a file's content (raw fds: no Python file object per file)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, _HASH_CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def digests_of(entries):
    """{host path: content digest} of the regular files among entries, read now."""
    return {path: file_digest(path) for _, path, st in entries if stat.S_ISREG(st.st_mode)}


def fingerprint(h, entries, with_owner, digests):
    """Fold (relative path, host path, lstat) entries into hash h: type, mode, owner (when
    it is kept), size, content digest (from digests), symlink target, the xattrs a COPY
    keeps; never the mtime."""
    for rel, path, st in entries:
        owner = f"{st.st_uid}:{st.st_gid}" if with_owner else ""
        h.update(f"{rel}\0{st.st_mode:o}\0{owner}\0".encode("utf-8", "surrogateescape"))
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            for name, value in copied_xattrs(path).items():
                h.update(b"x\0" + name.encode() + b"\0" + value + b"\0")
        if stat.S_ISREG(st.st_mode):
            h.update(f"{st.st_size}\0{digests[path]}".encode())
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.fsencode(os.readlink(path)))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            h.update(str(st.st_rdev).encode())
        h.update(b"\1")


def hash_entries(h, entries, with_owner):
    fingerprint(h, entries, with_owner, digests_of(entries))


class HashMemo:
    """Content digests of a context's files from earlier builds, trusted while a file's
    inode, size, mtime and ctime are unchanged (BuildKit and git trust the same): a
    rebuild reads no unchanged file. One file per context in the store,
    buildsums-<hash of the context's path>, written atomically at the end of a build."""

    def __init__(self, store_root, context_root):
        import marshal
        self.path = os.path.join(store_root, "buildsums-" + hashlib.sha256(
            os.fsencode(context_root or "-")).hexdigest()[:32])
        try:
            with open(self.path, "rb") as f:
                self.sums = marshal.load(f)
            if not isinstance(self.sums, dict):
                self.sums = {}
        except (OSError, EOFError, ValueError, TypeError):
            self.sums = {}
        self.changed = False

    @staticmethod
    def _stamp(st):
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def known(self, entries):
        out = {}
        for _, path, st in entries:
            if stat.S_ISREG(st.st_mode):
                hit = self.sums.get(path)
                if hit is not None and hit[0] == self._stamp(st):
                    out[path] = hit[1]
        return out

    def learn(self, plan, digests):
        for _, _, data, _ in plan:
            if isinstance(data, list):
                for _, path, st in data:
                    if path in digests and stat.S_ISREG(st.st_mode):
                        self.sums[path] = (self._stamp(st), digests[path])
                        self.changed = True

    def save(self):
        if self.changed:
            import marshal
            from fastbox.images.files import write_atomic
            write_atomic(self.path, marshal.dumps(self.sums))


def new_hash():
    return hashlib.sha256()
