"""`fastbox build`: a parsed Containerfile -> stages -> steps -> an image in the store.

Each stage carries its layers (diffIDs, descriptors, directories), its image config, its
history, its variables (ARG and ENV scope) and its cache key. Every instruction extends the
key; a step that changes the filesystem looks its key up first and, on a miss, makes its
layer (steps.py) and records it (cache.py). The target stage becomes a manifest and config
committed to the store, tagged with every -t.
"""
import copy
import datetime
import json
import os
import sys
import time

from fastbox.build import cache as cache_mod
from fastbox.build import context as ctx_mod
from fastbox.build import expand as ex
from fastbox.images import layer_tar
from fastbox.images.layer_view import LayerView
from fastbox.build import parser as parser_mod
from fastbox.build import steps
from fastbox.build.copying import CopyInstructions
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


class Builder(CopyInstructions):
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
        view = LayerView(st.layer_dirs)
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
            # a RUN's upper layer may hold overlay's xattrs; what we wrote ourselves has
            # only those a COPY keeps
            record = self._commit_layer(key, layer_dir or d,
                                        xattrs=True if inst.cmd == "RUN" else "copy")
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
            st.descs.append({"mediaType": layer_tar.MEDIA_TYPE, "digest": record["blobs"][0],
                             "size": record["size"]})
            st.layer_dirs.insert(0, self.store.layer_path(diff_id))
        st.history.append(entry)
        return cached

    def _commit_layer(self, key, layer_dir, xattrs=True, tar=None):
        """Record the layer in layer_dir under key. Its tar is not written (the store
        writes it if a push or save needs it): only hashed, now, or already while a COPY
        made the files (tar: (digest, size))."""
        created = _now()
        if not os.listdir(layer_dir):
            record = {"blobs": [], "layers": [], "created": created, "size": 0}
            self.cache.commit(key, record)
            return record
        digest, size = tar if tar is not None else layer_tar.digest_of(layer_dir, xattrs)
        record = {"blobs": [digest], "layers": [digest], "created": created, "size": size}
        self.cache.commit(key, record, layer_dir, xattrs if tar is None else "copy")
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
        volumes, tmpfs, mount_keys, fills = self._run_mounts(st, inst)
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
            for fill in fills:
                fill()
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
        """(volumes, tmpfs, cache key parts, fills: what makes the volumes' sources, run
        only when the step runs: a cache hit copies nothing)."""
        volumes, tmpfs, keys, fills = [], [], [], []
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
            elif kind == "bind" and opts.get("from"):
                host, digest, fill = self._bind_from(st, inst, opts)
                volumes.append(f"{host}:{target}" + ("" if opts.get("rw") == "true" else ":ro"))
                keys.append(["bind-from", target, digest])
                fills.append(fill)
            elif kind == "bind":
                src = opts.get("source") or opts.get("src") or ""
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
        return volumes, tmpfs, keys, fills

    def _bind_from(self, st, inst, opts):
        """--mount=type=bind,from=STAGE|IMAGE[,source=PATH]: that path of the stage or
        image, copied for this step into a directory of the build session (a rw mount's
        writes go nowhere, as BuildKit's): (host path, digest of its files for the key, the
        copy to make before the step runs)."""
        ref = self._expand(inst, opts["from"], self._scope(st))
        view = self._from_view(ref, st, inst)
        src = (opts.get("source") or opts.get("src") or "").strip("/")
        rel = view.resolve(src) if src else ""
        entries = list(steps.view_tree(view, rel))
        if not entries:
            raise self.err(inst, f"--mount=type=bind: {src!r} not found in {ref!r}")
        h = ctx_mod.new_hash()
        ctx_mod.fingerprint(h, entries, True, ctx_mod.digests_of(entries))
        d = self.session.new_dir()

        def fill():
            with steps.Copier(d, LayerView([])) as copier:
                copier.put("from", entries)
                copier.done()
        return os.path.join(d, "from"), h.hexdigest(), fill

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
