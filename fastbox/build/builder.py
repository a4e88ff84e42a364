"""`fastbox build`: a parsed Containerfile -> stages -> steps -> an image in the store.

Each stage carries its layers (diffIDs, descriptors, directories), its image config, its
history, its variables (ARG and ENV scope) and its cache key. Every instruction extends the
key; a step that changes the filesystem looks its key up first and, on a miss, makes its
layer (steps.py) and records it (cache.py). The target stage becomes a manifest and config
committed to the store, tagged with every -t.
"""
import copy
import datetime
import hashlib
import json
import os
import stat as stat_mod
import sys
import time

from fastbox.build import cache as cache_mod
from fastbox.build import context as ctx_mod
from fastbox.build import expand as ex
from fastbox.build import layer as layer_mod
from fastbox.build import parser as parser_mod
from fastbox.build import steps
from fastbox.build.steps import BuildError
from fastbox.errors import FastboxError, ImageNotFound, SpecError

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
DEFAULT_SHELL = ["/bin/sh", "-c"]
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_EXPANDS = ("ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR", "ARG", "ONBUILD")
HEREDOC_SCRIPT = "/dev/.fastbox-heredoc"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


class Options:
    def __init__(self, tags=(), build_args=None, target=None, no_cache=False, pull=False,
                 platform=None, quiet=False, network=None, out=None):
        self.tags, self.build_args = list(tags), dict(build_args or {})
        self.target, self.no_cache, self.pull = target, no_cache, pull
        self.platform, self.quiet, self.network = platform, quiet, network
        self.out = out or sys.stdout


def host_platform():
    m = os.uname().machine
    return "linux/" + _ARCH.get(m, m)


class Stage:
    def __init__(self, index, name, inst):
        self.index, self.name, self.inst = index, name, inst
        self.instructions = []
        self.layer_dirs = []      # top-most first
        self.diff_ids, self.descs = [], []
        self.config = {}          # the OCI config's "config"
        self.history = []
        self.key = ""
        self.args = {}            # ARGs declared in this stage: name -> value
        self.args_unset = set()   # ...of those, declared without any value
        self.cmd_set = False      # a CMD of this stage (an ENTRYPOINT then keeps it)
        self.created = None
        self.base_created = None

    @property
    def env(self):
        return dict(e.partition("=")[::2] for e in self.config.get("Env") or ())

    def scope(self):
        """What expansion sees: ARGs, then ENV over them (Docker: ENV overrides ARG)."""
        s = dict(self.args)
        s.update(self.env)
        return s

    @property
    def label(self):
        return self.name or f"stage-{self.index}"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Builder:
    def __init__(self, text, context_dir, options, store=None, file_name="Dockerfile"):
        from fastbox.images.store import ImageStore
        self.opts = options
        self.df = parser_mod.parse(text, file_name)
        self.file_name = file_name
        self.context = ctx_mod.Context(context_dir)
        self.store = store or ImageStore()
        self.cache = cache_mod.BuildCache(self.store)
        self.platform = options.platform or host_platform()
        if self.platform.split("/")[:2] != host_platform().split("/")[:2]:
            raise SpecError(f"platform {self.platform!r} is not supported: this host builds "
                            f"{host_platform()} only")
        self.used_args = set()
        self.step_no = 0
        self.session = None
        self._memo = None

    # -------------------------------------------------------------- output

    def say(self, text):
        if not self.opts.quiet:
            self.opts.out.write(text + "\n")
            self.opts.out.flush()

    def err(self, inst, message):
        return SpecError(f"{self.file_name}:{inst.line}: {message}")

    # -------------------------------------------------------------- stages

    def _stages(self):
        meta, stages = [], []
        for inst in self.df.instructions:
            if inst.cmd == "FROM":
                stages.append(Stage(len(stages), None, inst))
            elif not stages:
                if inst.cmd != "ARG":
                    raise self.err(inst, f"{inst.cmd} before the first FROM: only ARG may "
                                         "come before FROM")
                meta.append(inst)
            else:
                stages[-1].instructions.append(inst)
        if not stages:
            raise SpecError(f"{self.file_name}: no FROM instruction: a build needs at least one stage")
        return meta, stages

    def _global_args(self, meta):
        os_name, arch = self.platform.split("/")[:2]
        plat = {"TARGETPLATFORM": self.platform, "TARGETOS": os_name, "TARGETARCH": arch,
                "TARGETVARIANT": "", "BUILDPLATFORM": host_platform(), "BUILDOS": "linux",
                "BUILDARCH": host_platform().split("/")[1], "BUILDVARIANT": ""}
        self.auto_args = plat
        scope = dict(plat)
        for inst in meta:
            for name, value in self._arg_pairs(inst, scope):
                if name in self.opts.build_args:
                    value = self.opts.build_args[name]
                    self.used_args.add(name)
                scope[name] = value if value is not None else scope.get(name, "")
        return scope

    def _arg_pairs(self, inst, scope):
        out = []
        for word in ex.split_raw(inst.rest, self.df.escape):
            name, eq, value = word.partition("=")
            if not name or not all(c.isalnum() or c == "_" for c in name):
                raise self.err(inst, f"ARG: invalid name {name!r}")
            out.append((name, self._expand(inst, value, scope) if eq else None))
        return out

    def _expand(self, inst, word, scope):
        try:
            return ex.expand(word, scope, self.df.escape)
        except ex.ExpandError as e:
            raise self.err(inst, str(e)) from None

    def _expand_words(self, inst, text, scope):
        return [self._expand(inst, w, scope) for w in ex.split_raw(text, self.df.escape)]

    def run(self):
        """Build; returns the image id (the config digest)."""
        from fastbox.images.ingest import Session
        meta, stages = self._stages()
        self.global_scope = self._global_args(meta)
        for st in stages:
            words = self._expand_words(st.inst, st.inst.rest, self.global_scope)
            if len(words) == 3 and words[1].lower() == "as":
                st.name = words[2].lower()
            elif len(words) != 1:
                raise self.err(st.inst, "FROM requires either one or three arguments "
                                        "(FROM IMAGE [AS NAME])")
            st.base = words[0]
        by_name = {s.name: s for s in stages if s.name}
        target = stages[-1]
        if self.opts.target:
            target = by_name.get(self.opts.target.lower())
            if target is None:
                raise SpecError(f"target stage {self.opts.target!r} could not be found")
        self.stages, self.by_name = stages, by_name
        needed = self._needed(target)
        t0 = time.monotonic()
        with Session(self.store.ingest_dir) as session:
            self.session = session
            for st in stages[:target.index + 1]:
                if st.index in needed:
                    self._build_stage(st)
            image_id = self._commit(target)
            if self._memo is not None:
                with self.store.locked():  # its temporary is a .tmp- name in the store's root
                    self._memo.save()
        unused = sorted(set(self.opts.build_args) - self.used_args - set(PROXY_ARGS))
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed")
        self.say(f"#{self.step_no + 1} writing image {image_id} done "
                 f"({time.monotonic() - t0:.2f}s)")
        for tag in self.opts.tags:
            self.say(f"#{self.step_no + 1} naming to {tag} done")
        return image_id

    def _needed(self, target):
        """The stages the target depends on (FROM a stage, COPY --from, RUN --mount from)."""
        needed, todo = set(), [target]
        while todo:
            st = todo.pop()
            if st.index in needed:
                continue
            needed.add(st.index)
            refs = [st.base]
            for inst in st.instructions:
                refs += inst.flags.get("from", [])
                for m in inst.flags.get("mount", []):
                    refs += [kv[5:] for kv in m.split(",") if kv.startswith("from=")]
            for ref in refs:
                ref = self._expand(st.inst, ref, self.global_scope).lower()
                dep = self.by_name.get(ref)
                if dep is None and ref.isdigit() and int(ref) < st.index:
                    dep = self.stages[int(ref)]
                if dep is not None and dep.index < st.index:
                    todo.append(dep)
        return needed

    # -------------------------------------------------------------- one stage

    def _build_stage(self, st):
        n = len(st.instructions) + 1
        self._from(st, n)
        triggers = st.config.pop("OnBuild", None) or []
        queue = []
        for text in triggers:
            parsed = parser_mod.parse(text, self.file_name).instructions
            for inst in parsed:
                inst.line = st.inst.line
            queue += parsed
        queue += st.instructions
        for i, inst in enumerate(queue, start=2):
            self._step(st, inst, i, max(n, len(queue) + 1))

    def _from(self, st, n):
        flag = st.inst.flag("platform")
        if flag:
            plat = self._expand(st.inst, flag, self.global_scope)
            if plat.split("/")[:2] != host_platform().split("/")[:2]:
                raise self.err(st.inst, f"FROM --platform={plat}: this host builds "
                                        f"{host_platform()} only")
        t = time.monotonic()
        self.step_no += 1
        self.say(f"#{self.step_no} [{st.label} 1/{n}] FROM {st.base}")
        base = st.base
        dep = self.by_name.get(base.lower())
        if dep is not None and dep.index < st.index:
            self._inherit(st, dep)
        elif base == "scratch":
            st.key = cache_mod.chain("", "scratch", self.platform)
            st.config = {}
        else:
            self._from_image(st, base)
        self.say(f"#{self.step_no} DONE {time.monotonic() - t:.2f}s")

    def _inherit(self, st, dep):
        st.layer_dirs, st.diff_ids, st.descs = list(dep.layer_dirs), list(dep.diff_ids), list(dep.descs)
        st.config, st.history = copy.deepcopy(dep.config), list(dep.history)
        st.key, st.created, st.base_created = dep.key, dep.created, dep.created

    def _from_image(self, st, ref):
        image = self._image(ref, st.inst)
        manifest = json.loads(self.store.read_blob(image.manifest_digest))
        cfg = json.loads(self.store.read_blob(manifest["config"]["digest"]))
        st.layer_dirs = list(image.layer_dirs)
        st.diff_ids = list(cfg["rootfs"]["diff_ids"])
        st.descs = [{k: d[k] for k in ("mediaType", "digest", "size")} for d in manifest["layers"]]
        st.config = copy.deepcopy(cfg.get("config") or {})
        st.history = list(cfg.get("history") or [])
        st.key = cache_mod.chain("", "FROM", image.manifest_digest)
        st.created = st.base_created = cfg.get("created")

    def _image(self, ref, inst):
        """A FROM or --from image from the store, pulled if missing (or with --pull)."""
        from fastbox.images.reference import normalize
        from fastbox.images.store import DEFAULT_REF
        try:
            default = normalize(ref) == DEFAULT_REF
        except SpecError:
            raise self.err(inst, f"invalid image reference {ref!r}") from None
        if default:
            return self.store.ensure_default()
        if not self.opts.pull:
            try:
                return self.store.resolve(ref)
            except ImageNotFound:
                pass
        from fastbox.images.pull import pull
        self.say(f"pulling {ref}")
        pull(ref, store=self.store)
        return self.store.resolve(ref)

    def _step(self, st, inst, i, n):
        """Only the steps that make a layer are shown (as BuildKit does); a config step
        shows nothing."""
        t = time.monotonic()
        self.header = f"[{st.label} {i}/{n}] {inst.cmd} {inst.rest}".rstrip()
        cached = getattr(self, "_i_" + inst.cmd.lower())(st, inst)
        if cached is not None:
            self.say(f"#{self.step_no} " + ("CACHED" if cached else
                                            f"DONE {time.monotonic() - t:.2f}s"))

    def _meta(self, st, inst, created_by, *key_parts):
        """A step that changes only the config: it extends the key, and the history gets an
        empty-layer entry."""
        st.key = cache_mod.chain(st.key, inst.cmd, *key_parts)
        st.history.append({"created": st.created or st.base_created or _now(),
                           "created_by": created_by, "comment": "buildkit.dockerfile.v0",
                           "empty_layer": True})
        return None

    # -------------------------------------------------------------- config instructions

    def _i_arg(self, st, inst):
        scope = dict(self.global_scope)
        scope.update(st.scope())
        shown = []
        for name, value in self._arg_pairs(inst, scope):
            if name in self.opts.build_args:
                value = self.opts.build_args[name]
                self.used_args.add(name)
            elif value is None:  # a redeclared global ARG takes the global value
                value = self.global_scope.get(name)
            if value is None:
                value = ""  # declared without a value: expands to "", not in RUN's env
                st.args_unset.add(name)
            else:
                st.args_unset.discard(name)
            st.args[name] = value
            shown.append(f"{name}={value}")
        return self._meta(st, inst, "ARG " + " ".join(shown), shown)

    def _i_env(self, st, inst):
        pairs = self._pairs(st, inst)
        env = st.env
        for k, v in pairs:
            env[k] = v
        st.config["Env"] = [f"{k}={v}" for k, v in env.items()]
        shown = " ".join(f"{k}={v}" for k, v in pairs)
        return self._meta(st, inst, "ENV " + shown, pairs)

    def _i_label(self, st, inst):
        pairs = self._pairs(st, inst)
        labels = st.config.get("Labels") or {}
        labels.update(dict(pairs))
        st.config["Labels"] = labels
        return self._meta(st, inst, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), pairs)

    def _i_maintainer(self, st, inst):
        st.config["Author"] = inst.rest
        return self._meta(st, inst, "MAINTAINER " + inst.rest, inst.rest)

    def _pairs(self, st, inst):
        """ENV/LABEL: KEY=VALUE words (all expanded against the scope before the
        instruction), or the old KEY VALUE form."""
        scope = self._scope(st)
        words = ex.split_raw(inst.rest, self.df.escape)
        if words and "=" not in words[0]:
            if len(words) < 2:
                raise self.err(inst, f"{inst.cmd} {words[0]}: missing a value (KEY=VALUE)")
            value = inst.rest[len(words[0]):].strip()
            return [(words[0], self._expand(inst, value, scope))]
        pairs = []
        for w in words:
            k, eq, v = w.partition("=")
            if not eq or not k:
                raise self.err(inst, f"{inst.cmd}: {w!r} is not KEY=VALUE")
            pairs.append((self._expand(inst, k, scope), self._expand(inst, v, scope)))
        return pairs

    def _scope(self, st):
        return st.scope()

    def _i_workdir(self, st, inst):
        path = self._expand(inst, inst.rest, self._scope(st))
        if not path.startswith("/"):
            path = os.path.join(st.config.get("WorkingDir") or "/", path)
        path = os.path.normpath(path)
        st.config["WorkingDir"] = path
        view = layer_mod.LayerView(st.layer_dirs)
        rel = view.resolve(path)
        found = view.find(rel) if st.layer_dirs else None
        if found is not None:
            return self._meta(st, inst, "WORKDIR " + path, path)
        # BuildKit makes a missing WORKDIR: a layer holding it.
        return self._fs_step(st, inst, "WORKDIR " + path, [path],
                             lambda d: steps.Copier(d, view).ensure_dir(rel))

    def _i_user(self, st, inst):
        user = self._expand(inst, inst.rest, self._scope(st))
        st.config["User"] = user
        return self._meta(st, inst, "USER " + user, user)

    def _argv_of(self, st, inst):
        if inst.json is not None:
            return list(inst.json)
        return list(st.config.get("Shell") or DEFAULT_SHELL) + [inst.rest]

    def _i_cmd(self, st, inst):
        argv = self._argv_of(st, inst)
        st.config["Cmd"] = argv
        st.cmd_set = True
        return self._meta(st, inst, "CMD " + json.dumps(argv), argv)

    def _i_entrypoint(self, st, inst):
        argv = self._argv_of(st, inst)
        if inst.json is not None and not argv:
            argv = None
        st.config["Entrypoint"] = argv
        if not st.cmd_set:
            st.config["Cmd"] = None  # Docker: a new ENTRYPOINT resets an inherited CMD
        return self._meta(st, inst, "ENTRYPOINT " + json.dumps(argv), argv)

    def _i_shell(self, st, inst):
        if not inst.json:
            raise self.err(inst, "SHELL requires a non-empty JSON array")
        st.config["Shell"] = list(inst.json)
        return self._meta(st, inst, "SHELL " + json.dumps(inst.json), inst.json)

    def _i_expose(self, st, inst):
        ports = st.config.get("ExposedPorts") or {}
        words = self._expand_words(inst, inst.rest, self._scope(st))
        for w in words:
            port, _, proto = w.partition("/")
            proto = (proto or "tcp").lower()
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise self.err(inst, f"EXPOSE: invalid port {w!r}")
            for p in range(int(lo), int(hi or lo) + 1):
                ports[f"{p}/{proto}"] = {}
        st.config["ExposedPorts"] = ports
        return self._meta(st, inst, "EXPOSE " + " ".join(words), words)

    def _i_volume(self, st, inst):
        paths = inst.json if inst.json is not None else self._expand_words(inst, inst.rest, self._scope(st))
        if inst.json is not None:
            paths = [self._expand(inst, p, self._scope(st)) for p in paths]
        vols = st.config.get("Volumes") or {}
        for p in paths:
            if not p:
                raise self.err(inst, "VOLUME specified can not be an empty string")
            vols[p] = {}
        st.config["Volumes"] = vols
        return self._meta(st, inst, "VOLUME " + json.dumps(paths), paths)

    def _i_stopsignal(self, st, inst):
        sig = self._expand(inst, inst.rest, self._scope(st))
        st.config["StopSignal"] = sig
        return self._meta(st, inst, "STOPSIGNAL " + sig, sig)

    def _i_healthcheck(self, st, inst):
        words = inst.rest.split(None, 1)
        kind = words[0].upper()
        if kind == "NONE":
            hc = {"Test": ["NONE"]}
        elif kind == "CMD":
            rest = words[1] if len(words) > 1 else ""
            js = parser_mod._json_form(rest)
            hc = {"Test": ["CMD"] + js if js is not None else ["CMD-SHELL", rest]}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                              ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
                if inst.flag(flag):
                    hc[key] = _duration(inst.flag(flag), lambda m: self.err(inst, m))
            if inst.flag("retries"):
                if not inst.flag("retries").isdigit():
                    raise self.err(inst, "HEALTHCHECK --retries must be a number")
                hc["Retries"] = int(inst.flag("retries"))
        else:
            raise self.err(inst, f"HEALTHCHECK: unknown type {words[0]!r}: use CMD or NONE")
        st.config["Healthcheck"] = hc
        return self._meta(st, inst, "HEALTHCHECK " + json.dumps(hc), hc)

    def _i_onbuild(self, st, inst):
        trigger = inst.rest.split(None, 1)[0].upper()
        if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
            raise self.err(inst, f"{trigger} isn't allowed as an ONBUILD trigger")
        st.config["OnBuild"] = (st.config.get("OnBuild") or []) + [inst.rest]
        return self._meta(st, inst, "ONBUILD " + inst.rest, inst.rest)

    # -------------------------------------------------------------- filesystem steps

    def _fs_step(self, st, inst, created_by, key_parts, make):
        """Look the step up; on a miss make its layer with make(dir) and record it."""
        self._show_step()
        key = cache_mod.chain(st.key, inst.cmd, *key_parts)
        record = None if self.opts.no_cache else self.cache.get(key)
        cached = record is not None
        if not cached:
            d = self.session.new_dir()
            layer_dir = make(d)
            # a RUN's upper layer may hold overlay's xattrs; what we wrote ourselves has none
            record = self._commit_layer(key, layer_dir or d, xattrs=inst.cmd == "RUN")
        return self._apply(st, key, record, created_by, cached)

    def _show_step(self):
        self.step_no += 1
        self.say(f"#{self.step_no} {self.header}")

    def _apply(self, st, key, record, created_by, cached):
        """The stage after a step: its key, its layer (if it made one), its history."""
        st.key = key
        st.created = record["created"]
        entry = {"created": record["created"], "created_by": created_by,
                 "comment": "buildkit.dockerfile.v0"}
        if not record["layers"]:
            entry["empty_layer"] = True
        else:
            diff_id = record["layers"][0]
            st.diff_ids.append(diff_id)
            st.descs.append({"mediaType": layer_mod.MEDIA_TYPE, "digest": record["blobs"][0],
                             "size": record["size"]})
            st.layer_dirs.insert(0, self.store.layer_path(diff_id))
        st.history.append(entry)
        return cached

    def _commit_layer(self, key, layer_dir, xattrs=True, tar=None):
        """Record the layer in layer_dir under key: its tar written now, or already
        streamed (tar: (blob path, digest, size))."""
        created = _now()
        if not os.listdir(layer_dir):
            record = {"blobs": [], "layers": [], "created": created, "size": 0}
            self.cache.commit(key, record)
            return record
        if tar is None:
            blob = self.session.path()
            digest, size = layer_mod.write_tar(layer_dir, blob, xattrs)
        else:
            blob, digest, size = tar
        record = {"blobs": [digest], "layers": [digest], "created": created, "size": size}
        self.cache.commit(key, record, blob, layer_dir)
        return record

    def _run_env(self, st):
        """RUN's environment: the stage's ARGs with values, then its ENV over them."""
        env = {k: v for k, v in st.args.items() if k not in st.args_unset}
        for k in PROXY_ARGS:  # Docker passes these without an ARG (and keeps them out of history)
            if k in self.opts.build_args and k not in env:
                env[k] = self.opts.build_args[k]
        env.update(st.env)
        return env

    def _i_run(self, st, inst):
        if inst.heredocs and inst.json is None:
            argv = self._heredoc_argv(st, inst)
        else:
            argv = self._argv_of(st, inst)
        env = self._run_env(st)
        env_key = {k: v for k, v in env.items() if k not in PROXY_ARGS}
        args_used = sorted(f"{k}={v}" for k, v in st.args.items()
                           if k not in st.args_unset)
        volumes, tmpfs, mount_keys = self._run_mounts(st, inst)
        script = self._shebang_script(inst)
        if script is not None:  # BuildKit: a heredoc with #! runs as a file, by its interpreter
            volumes.append(f"{script}:{HEREDOC_SCRIPT}:ro")
            argv = [HEREDOC_SCRIPT]
            mount_keys = mount_keys + [["heredoc", inst.heredocs[0].body]]
        shown = (f"|{len(args_used)} {' '.join(args_used)} " if args_used else "") + " ".join(argv)
        network = inst.flag("network") or self.opts.network
        if network == "default":
            network = self.opts.network

        def make(d):
            lowers = st.layer_dirs or [self._empty_lower()]
            try:
                code, out = self._run_container(argv, lowers, d, env, st, network, volumes, tmpfs)
            except FastboxError as e:  # the step's container could not start
                raise BuildError(f"{self.file_name}:{inst.line}: RUN: {e}") from None
            if code != 0:
                if self.opts.quiet and out:
                    sys.stderr.write(out.decode(errors="replace"))
                raise BuildError(f'{self.file_name}:{inst.line}: process "{" ".join(argv)}" did '
                                 f"not complete successfully: exit code: {code}")
            return steps.finish_upper(d)
        return self._fs_step(st, inst, "RUN " + shown + " # buildkit",
                             [argv, args_used, env_key, mount_keys, network or ""], make)

    def _run_container(self, argv, lowers, d, env, st, network, volumes, tmpfs):
        try:
            out_fd = self.opts.out.fileno()  # the step's output goes straight to ours
        except (AttributeError, OSError, ValueError):
            out_fd = None  # io.StringIO and the like: the container inherits our fds 1-2
        return steps.run_container(
            argv, lowers, d, env=env, workdir=st.config.get("WorkingDir"),
            user=st.config.get("User"), network=network, volumes=volumes, tmpfs=tmpfs,
            out_fd=out_fd, quiet=self.opts.quiet)

    def _empty_lower(self):
        d = self.session.new_dir()
        return d

    def _shebang_script(self, inst):
        """RUN <<EOF whose body starts with #!: the body written to a file of the build
        (bound read-only at HEREDOC_SCRIPT under the container's own /dev, so the layer
        never sees it), else None."""
        if not inst.heredocs or inst.json is not None or not inst.heredocs[0].body.startswith("#!"):
            return None
        if parser_mod._HEREDOC.sub("", inst.rest).strip():
            return None  # a command around the heredoc: the shell runs that
        path = self.session.path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o755)
        try:
            os.write(fd, inst.heredocs[0].body.encode())
        finally:
            os.close(fd)
        os.chmod(path, 0o755)
        return path

    def _heredoc_argv(self, st, inst):
        """RUN <<EOF: a heredoc alone is the script; with a command around it (RUN cat
        <<EOF > f, RUN python3 <<EOF) the shell reads the heredocs after the command line,
        as it would from a script."""
        shell = list(st.config.get("Shell") or DEFAULT_SHELL)
        if parser_mod._HEREDOC.sub("", inst.rest).strip() == "":
            return shell + [inst.heredocs[0].body]
        script = inst.rest + "\n" + "".join(f"{d.body}{d.name}\n" for d in inst.heredocs)
        return shell + [script]

    def _run_mounts(self, st, inst):
        volumes, tmpfs, keys = [], [], []
        for m in inst.flags.get("mount", []):
            opts = {}
            for part in m.split(","):
                k, eq, v = part.partition("=")
                opts[k.strip()] = v.strip() if eq else "true"
            kind = opts.get("type", "bind")
            target = opts.get("target") or opts.get("dst") or opts.get("destination")
            if not target:
                raise self.err(inst, f"--mount={m}: a target is required")
            if kind == "tmpfs":
                size = opts.get("size")
                tmpfs.append(f"{target}:" + (f"size={size}" if size else "mode=1777"))
                keys.append(["tmpfs", target, size])
            elif kind == "cache":
                cid = opts.get("id") or target
                import hashlib
                path = os.path.join(self.store.root, "buildmounts",
                                    hashlib.sha256(cid.encode()).hexdigest()[:32])
                os.makedirs(path, 0o755, exist_ok=True)
                volumes.append(f"{path}:{target}")
                keys.append(["cache", target, cid])
            elif kind == "bind":
                src = opts.get("source") or opts.get("src") or ""
                if opts.get("from"):
                    raise self.err(inst, "--mount=type=bind,from=... is not supported yet")
                if self.context.root is None:
                    raise self.err(inst, "--mount=type=bind needs a build context")
                rel = self.context.resolve(ctx_mod._clean(src))  # never out of the context
                if rel and not self.context._exists(rel):
                    raise self.err(inst, f"--mount=type=bind: {src!r} is not in the build context")
                host = self.context.host_path(rel)
                h = ctx_mod.new_hash()
                ctx_mod.hash_entries(h, self.context.tree(rel), False)
                volumes.append(f"{host}:{target}:ro" if opts.get("rw") != "true"
                               else f"{host}:{target}")
                keys.append(["bind", target, h.hexdigest()])
            else:
                raise self.err(inst, f"--mount: unsupported type {kind!r}: use bind, cache or tmpfs")
        return volumes, tmpfs, keys

    def _i_copy(self, st, inst):
        return self._copy(st, inst, add=False)

    def _i_add(self, st, inst):
        return self._copy(st, inst, add=True)

    def _copy(self, st, inst, add):
        for flag in ("parents", "exclude"):
            if flag in inst.flags:
                raise self.err(inst, f"{inst.cmd} --{flag} is not supported yet")
        scope = self._scope(st)
        if inst.json is not None:
            words = [self._expand(inst, w, scope) for w in inst.json]
        else:
            words = self._expand_words(inst, inst.rest, scope)
        heredocs = {d.name: d for d in inst.heredocs}
        if len(words) < 2:
            raise self.err(inst, f"{inst.cmd} requires at least two arguments: SRC... DEST")
        sources, dest = words[:-1], words[-1]
        workdir = st.config.get("WorkingDir") or "/"
        dest_abs = dest if dest.startswith("/") else os.path.join(workdir, dest)
        if dest.endswith("/") and not dest_abs.endswith("/"):
            dest_abs += "/"
        owner_text = self._expand(inst, inst.flag("chown"), scope) if inst.flag("chown") else None
        view = layer_mod.LayerView(st.layer_dirs)
        owner = self._owner(st, owner_text, inst) if owner_text else None
        chmod = None
        if inst.flag("chmod"):
            try:
                chmod = int(inst.flag("chmod"), 8)
            except ValueError:
                raise self.err(inst, f"invalid --chmod={inst.flag('chmod')}: an octal mode") from None
        src_stage = inst.flag("from")
        plan = []  # (kind, source name, data, entries' owners kept)
        known = {}  # source host path -> content digest, known before copying
        from_view = None
        if src_stage:
            src_stage = self._expand(inst, src_stage, scope)
            from_view = self._from_view(src_stage, st, inst)
        for src in sources:
            if src.startswith("<<") and src[2:].lstrip("-").strip("'\"") in heredocs:
                doc = heredocs[src[2:].lstrip("-").strip("'\"")]
                body = ex.expand_text(doc.body, scope) if doc.expand else doc.body
                plan.append(("doc", doc.name, body.encode(), False))
            elif add and src.startswith(("http://", "https://")):
                plan.append(("url", src, self._fetch(src, inst), False))
            elif from_view is not None:
                rels = self._view_match(from_view, src)
                if not rels:
                    raise self.err(inst, f"{inst.cmd} failed: {src!r} not found in {src_stage!r}")
                for rel in rels:
                    entries = list(steps.view_tree(from_view, rel))
                    # a stage's files are hashed before copying: a hit then copies nothing
                    known.update(ctx_mod.digests_of(entries))
                    plan.append(("tree", rel, entries, True))
            else:
                rels = self.context.match(src)
                if not rels:
                    raise self.err(inst, f"{inst.cmd} failed: file not found in build context "
                                         f"or excluded by .dockerignore: {src}")
                for rel in rels:
                    entries = list(self.context.tree(rel))
                    if add and len(entries) == 1 and _is_archive(entries[0][1]):
                        known.update(ctx_mod.digests_of(entries))  # extracted, not copied
                    else:
                        known.update(self.memo().known(entries))
                    plan.append(("tree", rel, entries, False))
        many = len(plan) > 1
        if many and not dest_abs.endswith("/"):
            # an existing directory also takes several sources
            if not (st.layer_dirs and self._is_dir(view, dest_abs)):
                raise self.err(inst, f"When using {inst.cmd} with more than one source file, "
                                     "the destination must be a directory and end with a /")
        flags = {k: v for k, v in inst.flags.items() if k != "from"}
        created_by = f"{inst.cmd} " + " ".join(sources) + f" {dest} # buildkit"

        def key_of(digests):
            h = ctx_mod.new_hash()
            for kind, name, data, owners in plan:
                if kind == "doc":
                    h.update(b"doc\0" + name.encode() + b"\0" + data)
                elif kind == "url":
                    h.update(b"url\0" + name.encode() + b"\0" + hashlib.sha256(data[0]).digest())
                else:
                    ctx_mod.fingerprint(h, data, owners, digests)
            return cache_mod.chain(st.key, inst.cmd, sources, dest_abs, flags, src_stage or "",
                                   h.hexdigest())

        def make(d, digests):
            """The layer and its tar in one pass over the sources."""
            tar = layer_mod.TarStream(self.session.path())
            try:
                copier = steps.Copier(d, view, tar, digests)
                for kind, name, data, _ in plan:
                    self._place(copier, view, kind, name, data, dest_abs, owner, chmod, add,
                                from_view is None, inst)
                copier.done()
            except BaseException:
                tar.abandon()
                raise
            return copier, (tar.path, *tar.close())

        self._show_step()
        regular = {path for _, _, data, _ in plan if isinstance(data, list)
                   for _, path, est in data if stat_mod.S_ISREG(est.st_mode)}
        if regular <= known.keys():  # BuildKit's order: the key first, then a copy only on a miss
            key = key_of(known)
            record = None if self.opts.no_cache else self.cache.get(key)
            if record is not None:
                return self._apply(st, key, record, created_by, True)
            d = self.session.new_dir()
            _, tar = make(d, known)
            return self._apply(st, key, self._commit_layer(key, d, tar=tar), created_by, False)
        # Some content is new to us: read it once, for the copy and the key together; a hit
        # found afterwards (the same content again) throws the copy away.
        d = self.session.new_dir()
        copier, tar = make(d, known)
        digests = dict(known, **copier.digests)
        self.memo().learn(plan, digests)
        key = key_of(digests)
        record = None if self.opts.no_cache else self.cache.get(key)
        if record is not None:
            return self._apply(st, key, record, created_by, True)
        return self._apply(st, key, self._commit_layer(key, d, tar=tar), created_by, False)

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
            return layer_mod.LayerView(dep.layer_dirs)
        return layer_mod.LayerView(self._image(ref, inst).layer_dirs)

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
        from fastbox.runtime import user as user_mod
        u, _, g = text.partition(":")
        if u.isdigit() and (not g or g.isdigit()):
            return int(u), int(g or u)
        try:
            ident = user_mod._lookup(text if g else u, tuple(st.layer_dirs))
        except SpecError as e:
            raise self.err(inst, f"--chown={text}: {e}") from None
        return ident.uid, ident.gid

    # -------------------------------------------------------------- the image

    def _commit(self, st):
        from fastbox.images import index as index_doc
        os_name, arch = self.platform.split("/")[:2]
        cfg_section = {k: v for k, v in st.config.items() if v not in (None, {}, [])}
        cfg = {"created": st.created or st.base_created or _now(), "architecture": arch,
               "os": os_name, "config": cfg_section,
               "rootfs": {"type": "layers", "diff_ids": st.diff_ids}, "history": st.history}
        config_data = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
        import hashlib
        config_digest = "sha256:" + hashlib.sha256(config_data).hexdigest()
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {"mediaType": CONFIG_TYPE, "digest": config_digest,
                               "size": len(config_data)},
                    "layers": st.descs}
        manifest_data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        names = [index_doc.tag_name(t) for t in self.opts.tags]
        image = self.store.commit_image(names[0] if names else None, manifest_data,
                                        MANIFEST_TYPE, config_data)
        for name in names[1:]:
            self.store.tag(image.id, name)
        return image.id


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
    import stat
    st = os.lstat(root)
    yield "", root, st
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel, path, os.lstat(path)


def _duration(text, error):
    import re
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:ns|us|ms|s|m|h))+)", text)
    if not m:
        raise error(f"invalid duration {text!r}: e.g. 30s, 1m30s")
    units = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total = 0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        total += int(float(num) * units[unit])
    return total


def build(context_dir, dockerfile_text, options, file_name="Dockerfile", store=None):
    """Build and return the image id."""
    return Builder(dockerfile_text, context_dir, options, store, file_name).run()
