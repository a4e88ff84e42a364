"""`fastbox build` end to end: real builds through the CLI, their RUN steps in real
containers, the images run with fastbox. The seed's demo, multi-stage into scratch, the
cache (hits at every step, exact re-runs from a changed COPY on), whiteouts and opaque
directories in the layers, .dockerignore, heredocs, the escape directive and ARG scoping as
Docker documents them, malformed files, a SIGKILLed build."""
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

import fastbox

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")


@pytest.fixture
def own_store(tmp_path, monkeypatch):
    """A store of the test's own (not the session's shared one), for tests that count what
    the store and its cache hold."""
    root = tmp_path / "own-root"
    root.mkdir()
    monkeypatch.setenv("FASTBOX_ROOT", str(root))
    return root / "images"


def cli(*args, input=None, cwd=None):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          cwd=cwd)


def context(tmp_path, dockerfile, files=None, name="ctx"):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "Dockerfile").write_text(dockerfile)
    for rel, data in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return d


def build(ctx, *args, ok=True):
    r = cli("build", *args, ctx)
    if ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def run(image, *cmd):
    r = fastbox.run(image, list(cmd) if cmd else None, capture_output=True)
    return r.exit_code, r.stdout.decode(), r.stderr.decode()


def steps(output):
    """{header text: "CACHED" | "DONE"} of each step shown."""
    heads, out = {}, {}
    for line in output.splitlines():
        num, _, rest = line.partition(" ")
        if rest.startswith("[") and "] FROM " not in rest:
            heads[num] = rest.split("] ", 1)[1]
        elif rest.startswith(("CACHED", "DONE")) and num in heads:
            out[heads[num]] = rest.split()[0]
    return out


def image_config(ref):
    from fastbox.images.store import ImageStore
    return ImageStore().describe(ref)


def layer_members(ref):
    """Each layer's tar member names, in order, bottom layer first."""
    from fastbox.images.store import ImageStore
    store = ImageStore()
    d = store.describe(ref)
    out = []
    for layer in d["manifest"]["layers"]:
        with tarfile.open(store.ensure_blob(layer["digest"])) as t:
            out.append(t.getnames())
    return out


# ---------------------------------------------------------------- the seed's demo

HTTPD_BASE = """FROM busybox
RUN mkdir -p /var/www && echo '<h1>default site</h1>' > /var/www/index.html && echo x > /var/www/default.css
CMD ["httpd", "-f", "-p", "80", "-h", "/var/www"]
"""

DEMO = """# syntax=docker/dockerfile:1
FROM fbtest/httpd
RUN rm -rf /var/www/*
COPY site/ /var/www/
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
"""


def test_seed_demo_builds_runs_and_serves_its_page(tmp_path):
    build(context(tmp_path, HTTPD_BASE, name="base"), "-t", "fbtest/httpd")
    ctx = context(tmp_path, DEMO, {"site/index.html": "<h1>hello from fastbox build</h1>\n"})
    r = build(ctx, "-t", "fbtest/demo:1")
    assert "naming to fbtest/demo:1" in r.stdout
    c = fastbox.containers.run("fbtest/demo:1")
    try:
        page = ""
        for _ in range(50):  # httpd binds right after the exec: give it a moment
            res = c.exec_run(["timeout", "5", "wget", "-qO-", "http://127.0.0.1:8080/"])
            if res.exit_code == 0:
                page = res.stdout.decode()
                break
            time.sleep(0.05)
        assert page == "<h1>hello from fastbox build</h1>\n"
        gone = c.exec_run(["ls", "/var/www"])
        assert gone.stdout.decode().split() == ["index.html"]  # the old site is deleted
    finally:
        c.stop(timeout=1)
        c.remove()
    cfg = image_config("fbtest/demo:1")["config"]
    assert cfg["config"]["Cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/var/www"]
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}}
    created_by = [h["created_by"] for h in cfg["history"]]
    assert any(c.startswith("RUN /bin/sh -c rm -rf /var/www/*") for c in created_by)
    assert len(cfg["rootfs"]["diff_ids"]) == 4  # busybox, base RUN, RUN rm, COPY


def test_multi_stage_into_scratch(tmp_path):
    ctx = context(tmp_path, """FROM busybox AS builder
WORKDIR /src
RUN echo built-in-stage-one > app.txt
FROM busybox AS unused
RUN exit 1
FROM scratch
COPY --from=builder /src/app.txt /app.txt
COPY --from=builder /bin/busybox /bin/
CMD ["/bin/busybox", "cat", "/app.txt"]
""")
    r = build(ctx, "-t", "fbtest/scratch")
    assert "unused" not in r.stdout  # a stage nothing needs is not built
    assert run("fbtest/scratch") == (0, "built-in-stage-one\n", "")
    assert layer_members("fbtest/scratch") == [["app.txt"], ["bin", "bin/busybox"]]
    by_index = context(tmp_path, "FROM busybox\nRUN echo zero > /z\nFROM scratch\n"
                                 "COPY --from=0 /z /z\nCOPY --from=0 /bin/busybox /busybox\n",
                       name="byindex")
    build(by_index, "-t", "fbtest/by-index")
    assert run("fbtest/by-index", "/busybox", "cat", "/z")[1] == "zero\n"
    r = build(ctx, "--target", "builder", "-t", "fbtest/builder-only")
    assert run("fbtest/builder-only", "cat", "/src/app.txt")[1] == "built-in-stage-one\n"
    assert image_config("fbtest/builder-only")["config"]["config"]["WorkingDir"] == "/src"


# ---------------------------------------------------------------- the cache

CACHED = """FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /a-copy && cat /proc/sys/kernel/random/uuid > /stamp1
COPY b.txt /b.txt
RUN cat /b.txt > /b-copy && cat /proc/sys/kernel/random/uuid > /stamp2
CMD ["cat", "/a-copy", "/b-copy"]
"""


def test_rebuild_hits_every_step_and_a_change_reruns_from_its_copy_on(tmp_path, own_store):
    ctx = context(tmp_path, CACHED, {"a.txt": "a1\n", "b.txt": "b1\n"})
    first = build(ctx, "-t", "fbtest/cache")
    assert set(steps(first.stdout).values()) == {"DONE"}
    image1 = image_config("fbtest/cache")["image"].id
    second = build(ctx, "-t", "fbtest/cache")
    assert list(steps(second.stdout).values()) == ["CACHED"] * 4
    assert image_config("fbtest/cache")["image"].id == image1  # the very same image
    # the content counts, not the mtime (BuildKit): a touch alone still hits
    os.utime(ctx / "a.txt", (1, 1))
    assert list(steps(build(ctx).stdout).values()) == ["CACHED"] * 4
    (ctx / "b.txt").write_text("b2\n")
    third = build(ctx, "-t", "fbtest/cache")
    assert list(steps(third.stdout).values()) == ["CACHED", "CACHED", "DONE", "DONE"]
    assert run("fbtest/cache")[1] == "a1\nb2\n"
    stamp1 = run("fbtest/cache", "cat", "/stamp1")[1]
    (ctx / "a.txt").write_text("a2\n")
    fourth = build(ctx, "-t", "fbtest/cache")
    assert list(steps(fourth.stdout).values()) == ["DONE"] * 4
    assert run("fbtest/cache", "cat", "/stamp1")[1] != stamp1
    nocache = build(ctx, "--no-cache")
    assert list(steps(nocache.stdout).values()) == ["DONE"] * 4
    # a build arg a RUN sees is part of its key
    ctx2 = context(tmp_path, "FROM busybox\nARG V=1\nRUN echo $V > /v\n", name="args")
    assert list(steps(build(ctx2).stdout).values()) == ["DONE"]
    assert list(steps(build(ctx2).stdout).values()) == ["CACHED"]
    assert list(steps(build(ctx2, "--build-arg", "V=2").stdout).values()) == ["DONE"]
    # builder prune clears it
    r = cli("builder", "prune", "-f")
    assert r.returncode == 0 and "Deleted" in r.stdout
    assert list(steps(build(ctx2).stdout).values()) == ["DONE"]
    assert run("fbtest/cache")[1] == "a2\nb2\n"  # the tagged image keeps its layers


# ---------------------------------------------------------------- layers

WHITEOUTS = """FROM busybox
RUN mkdir -p /data/sub && echo 1 > /data/a && echo 2 > /data/sub/b && echo keep > /etc/keep
RUN rm /etc/group && rm -rf /data && mkdir /data && echo new > /data/c
"""


def test_deleted_files_and_opaque_dirs_become_oci_whiteouts(tmp_path):
    build(context(tmp_path, WHITEOUTS), "-t", "fbtest/whiteouts")
    top = layer_members("fbtest/whiteouts")[-1]
    assert "etc/.wh.group" in top
    assert "data/.wh..wh..opq" in top
    # whiteouts come before their siblings, the opaque marker right after its directory
    assert top.index("data/.wh..wh..opq") == top.index("data") + 1
    assert top.index("data/.wh..wh..opq") < top.index("data/c")
    code, out, _ = run("fbtest/whiteouts", "sh", "-c",
                       "ls /etc; echo --; find /data | sort; cat /data/c")
    assert code == 0
    listing, found = out.split("--\n")
    assert "group" not in listing.split() and "keep" in listing.split()
    assert found == "/data\n/data/c\nnew\n"
    # no overlay xattrs in the layer tar
    from fastbox.images.store import ImageStore
    store = ImageStore()
    for layer in image_config("fbtest/whiteouts")["manifest"]["layers"]:
        with tarfile.open(store.ensure_blob(layer["digest"])) as t:
            for m in t:
                assert not any("overlay" in k for k in m.pax_headers), m.name


# ---------------------------------------------------------------- Docker's documented rules

def test_dockerignore_exceptions_last_match_wins(tmp_path):
    ctx = context(tmp_path, "FROM busybox\nCOPY . /ctx/\n", {
        ".dockerignore": "*.md\n!README*.md\nREADME-secret.md\n**/*.log\nsecret/\n!secret/public\n",
        "README.md": "r", "README-secret.md": "s", "CHANGES.md": "c", "keep.txt": "k",
        "a/b/debug.log": "l", "a/b/keep.c": "c", "secret/key": "k", "secret/public": "p",
    })
    build(ctx, "-t", "fbtest/ignore")
    out = run("fbtest/ignore", "sh", "-c", "cd /ctx && find . -type f | sort")[1].split()
    assert out == ["./.dockerignore", "./Dockerfile", "./README.md", "./a/b/keep.c",
                   "./keep.txt", "./secret/public"]


def test_heredocs(tmp_path):
    ctx = context(tmp_path, """FROM busybox
ARG WHO=world
RUN <<EOF
echo "hello $WHO" > /greeting
echo second line >> /greeting
EOF
RUN cat <<EOT > /from-cat
piped through cat
EOT
RUN <<EOF
#!/bin/sh -e
echo "script $0 as $(id -u)" > /shebang
EOF
COPY <<EOF /etc/expanded
who=$WHO
EOF
COPY <<'EOF' /etc/literal
who=$WHO
EOF
""")
    build(ctx, "-t", "fbtest/heredoc", "--build-arg", "WHO=fastbox")
    out = run("fbtest/heredoc", "cat", "/greeting", "/from-cat", "/etc/expanded", "/etc/literal")[1]
    assert out == "hello fastbox\nsecond line\npiped through cat\nwho=fastbox\nwho=$WHO\n"
    # a #! heredoc ran as a file by its interpreter, and that file is in no layer
    assert run("fbtest/heredoc", "cat", "/shebang")[1] == "script /dev/.fastbox-heredoc as 0\n"
    assert not any(".fastbox-heredoc" in n for layer in layer_members("fbtest/heredoc") for n in layer)


def test_escape_directive_and_continuations(tmp_path):
    ctx = context(tmp_path, "# escape=`\nFROM busybox\nRUN echo one `\n# a comment inside\n"
                            "    two > /out && echo 'C:\\path' >> /out\n")
    build(ctx, "-t", "fbtest/escape")
    assert run("fbtest/escape", "cat", "/out")[1] == "one two\nC:\\path\n"


def test_arg_scoping_as_docker_documents(tmp_path):
    ctx = context(tmp_path, """ARG BASE=busybox
ARG GLOBAL=g1
FROM ${BASE} AS first
ARG GLOBAL
ARG STAGE_ONLY=s1
USER ${username:-some_user}
ARG username
USER $username
ARG CONT_IMG_VER
ENV CONT_IMG_VER=v1.0.0
RUN echo "global=$GLOBAL stage=$STAGE_ONLY ver=$CONT_IMG_VER" > /tmp/one
FROM ${BASE}
COPY --from=first /tmp/one /one
RUN echo "global=$GLOBAL stage=$STAGE_ONLY" > /two
""")
    build(context(tmp_path, "FROM busybox\nRUN echo base > /which\n", name="argbase"),
          "-t", "fbtest/argbase")
    r = build(ctx, "-t", "fbtest/args-base", "--build-arg", "BASE=fbtest/argbase")
    assert run("fbtest/args-base", "cat", "/which")[1] == "base\n"  # ARG before FROM, overridden
    r = build(ctx, "-t", "fbtest/args", "--build-arg", "CONT_IMG_VER=v2.0.1",
              "--build-arg", "username=0")
    out = run("fbtest/args", "cat", "/one", "/two")[1]
    # a redeclared global takes its value; ENV overrides ARG; nothing crosses stages
    assert out == "global=g1 stage=s1 ver=v1.0.0\nglobal= stage=\n"
    hist = [h["created_by"] for h in image_config("fbtest/args")["config"]["history"]]
    assert "Warning" not in r.stdout
    r = build(ctx, "--target", "first", "-t", "fbtest/args-first", "--build-arg", "NOPE=1")
    assert "build-args ['NOPE'] were not consumed" in r.stdout
    # USER before the ARG saw no value (the default), after it the build arg
    cfg = image_config("fbtest/args-first")["config"]
    users = [h["created_by"] for h in cfg["history"] if h["created_by"].startswith("USER")]
    assert users == ["USER some_user", "USER "]
    assert hist[-1].startswith("RUN /bin/sh -c echo")


def test_config_instructions(tmp_path):
    ctx = context(tmp_path, """FROM busybox
ENV A=1 B="two words"
ENV C $A-$B
LABEL org.example.v="1.0" other=x
WORKDIR /w
WORKDIR sub
USER 1000:1000
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /tmp/onbuild
ENTRYPOINT ["/bin/echo"]
""")
    build(ctx, "-t", "fbtest/config")
    c = image_config("fbtest/config")["config"]["config"]
    assert c["Env"][1:] == ["A=1", "B=two words", "C=1-two words"]
    assert c["Labels"] == {"org.example.v": "1.0", "other": "x"}
    assert c["WorkingDir"] == "/w/sub" and c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGTERM" and c["Shell"] == ["/bin/sh", "-ec"]
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
                                "Interval": 5_000_000_000, "Retries": 2}
    assert c["OnBuild"] == ["RUN echo triggered > /tmp/onbuild"]
    assert c["Entrypoint"] == ["/bin/echo"] and "Cmd" not in c  # ENTRYPOINT reset busybox's CMD
    assert run("fbtest/config", "hi") == (0, "hi\n", "")
    child = context(tmp_path, "FROM fbtest/config\nUSER 0\nCMD [\"/tmp/onbuild\"]\nENTRYPOINT [\"cat\"]\n",
                    name="child")
    build(child, "-t", "fbtest/onbuild")
    assert run("fbtest/onbuild") == (0, "triggered\n", "")
    assert "OnBuild" not in image_config("fbtest/onbuild")["config"]["config"]


def test_copy_rules(tmp_path):
    ctx = context(tmp_path, """FROM busybox
WORKDIR /app
COPY f1.txt rel/
COPY f1.txt renamed.txt
COPY *.txt /glob/
COPY --chown=1234:5678 --chmod=0640 f1.txt /owned
COPY dir /into
COPY dir/ /into2/
RUN stat -c '%u:%g %a %n' /owned && ls /app/rel /app/renamed.txt /glob /into /into2
""", {"f1.txt": "1", "f2.txt": "2", "dir/x": "x", "dir/sub/y": "y"})
    r = build(ctx, "-t", "fbtest/copy")
    assert "1234:5678 640 /owned" in r.stdout
    out = run("fbtest/copy", "sh", "-c", "cd / && find app glob into into2 -type f | sort")[1].split()
    assert out == ["app/rel/f1.txt", "app/renamed.txt", "glob/f1.txt", "glob/f2.txt",
                   "into/sub/y", "into/x", "into2/sub/y", "into2/x"]
    named = context(tmp_path, """FROM busybox
RUN echo 'app:x:4321:4322::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:999:' >> /etc/group
COPY --chown=app f1.txt /by-user
COPY --chown=app:grp f1.txt /by-user-group
COPY --chown=7:grp f1.txt /by-id-group
""", {"f1.txt": "1"}, name="named")
    build(named, "-t", "fbtest/chown-names")
    out = run("fbtest/chown-names", "stat", "-c", "%u:%g", "/by-user", "/by-user-group", "/by-id-group")[1]
    assert out.split() == ["4321:4322", "4321:999", "7:999"]
    r = build(context(tmp_path, "FROM busybox\nCOPY --chown=nobody-here f /f\n", {"f": "1"},
                      name="nouser"), ok=False)
    assert r.returncode == 1 and "Dockerfile:2: --chown=nobody-here: unable to find user" in r.stderr
    bad = context(tmp_path, "FROM busybox\nCOPY f1.txt f2.txt /notadir\n", {"f1.txt": "1", "f2.txt": "2"},
                  name="bad")
    r = build(bad, ok=False)
    assert r.returncode != 0 and "must be a directory and end with a /" in r.stderr
    missing = context(tmp_path, "FROM busybox\nCOPY nope /x\n", name="missing")
    r = build(missing, ok=False)
    assert r.returncode != 0 and "Dockerfile:2:" in r.stderr and "nope" in r.stderr


def test_add_extracts_local_tars(tmp_path):
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"from the tarball\n"
        info = tarfile.TarInfo("pkg/file.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    ctx = context(tmp_path, "FROM busybox\nADD pkg.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n",
                  {"pkg.tar.gz": buf.getvalue(), "plain.txt": "plain\n"})
    build(ctx, "-t", "fbtest/add")
    assert run("fbtest/add", "cat", "/opt/pkg/file.txt", "/opt/plain.txt")[1] == \
        "from the tarball\nplain\n"


def test_add_url_with_checksum(tmp_path):
    import hashlib
    import http.server
    import threading
    body = b"fetched over http\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/files/remote.txt"
        good = "sha256:" + hashlib.sha256(body).hexdigest()
        ctx = context(tmp_path, f"FROM busybox\nADD --checksum={good} {url} /dl/\n")
        build(ctx, "-t", "fbtest/addurl")
        assert run("fbtest/addurl", "sh", "-c", "stat -c %a /dl/remote.txt; cat /dl/remote.txt")[1] \
            == "600\nfetched over http\n"
        bad = context(tmp_path, f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /dl/\n",
                      name="bad")
        r = build(bad, ok=False)
        assert r.returncode != 0 and "checksum mismatch" in r.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_run_mounts_and_exec_form(tmp_path):
    ctx = context(tmp_path, """FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/log && cat /cache/log | wc -l > /count
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && test ! -e /scratch-left
RUN --mount=type=bind,source=data,target=/mnt cat /mnt/in > /copied
RUN ["/bin/sh", "-c", "echo exec-form > /exec"]
""", {"data/in": "bound\n"})
    build(ctx, "-t", "fbtest/mounts")
    out = run("fbtest/mounts", "sh", "-c", "cat /copied /exec; ls /scratch /cache 2>&1 | wc -l")[1]
    assert out.startswith("bound\nexec-form\n")
    assert not any("scratch/x" in n or "cache/log" in n
                   for layer in layer_members("fbtest/mounts") for n in layer)


def test_run_mount_bind_from_a_stage(tmp_path):
    """RUN --mount=type=bind,from=STAGE: the stage's files at the target for that step
    only (read-only unless rw; a rw mount's writes go nowhere), nothing of them in the
    layer; the key follows their content: a rebuild is cached, a changed file re-runs."""
    text = """FROM busybox AS tools
RUN mkdir -p /out && echo {v} > /out/version && echo helper > /out/helper
FROM busybox
RUN --mount=type=bind,from=tools,source=/out,target=/mnt cat /mnt/version > /got && \\
    ! touch /mnt/new 2>/dev/null
RUN --mount=type=bind,from=tools,source=/out/helper,target=/h,rw=true echo x >> /h && cat /h > /rw
"""
    ctx = context(tmp_path, text.format(v="one"))
    build(ctx, "-t", "fbtest/bindfrom")
    # the mounted files are not in the layer (the empty mount points are, as the context's)
    assert run("fbtest/bindfrom", "sh", "-c", "cat /got /rw; ls -A /mnt | wc -l; wc -c < /h")[1] \
        == "one\nhelper\nx\n0\n0\n"
    again = build(ctx, "-t", "fbtest/bindfrom", "--progress", "plain")
    assert set(steps(again.stdout + again.stderr).values()) == {"CACHED"}
    ctx = context(tmp_path, text.format(v="two"), name="ctx2")
    build(ctx, "-t", "fbtest/bindfrom")
    assert run("fbtest/bindfrom", "cat", "/got")[1] == "two\n"
    bad = context(tmp_path, "FROM busybox AS a\nFROM busybox\n"
                  "RUN --mount=type=bind,from=a,source=/nope,target=/m true\n", name="bad")
    r = build(bad, ok=False)
    assert r.returncode == 1 and "'nope' not found in 'a'" in r.stderr, r.stderr


# ---------------------------------------------------------------- failures

def test_malformed_files_stop_with_their_line_number(tmp_path):
    for text, line, what in [
        ("FROM busybox\nRUN true\nFOO bar\n", 3, "unknown instruction: FOO"),
        ("FROM busybox\nRUN <<EOF\necho\n", 2, "unterminated heredoc"),
        ("RUN true\nFROM busybox\n", 1, "only ARG may come before FROM"),
        ("FROM busybox\nCOPY --chmod=abc a /b\n", 2, "invalid --chmod"),
        ("FROM busybox\nENV X=${Y\n", 2, "missing '}'"),
    ]:
        ctx = context(tmp_path, text, {"a": "a"}, name=f"bad{line}{len(text)}")
        r = build(ctx, ok=False)
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f"fastbox: Dockerfile:{line}: ") and what in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_a_failing_run_stops_the_build(tmp_path):
    r = build(context(tmp_path, "FROM busybox\nRUN echo before; exit 3\n"), "-t", "fbtest/fail", ok=False)
    assert r.returncode == 1
    assert 'Dockerfile:2: process "/bin/sh -c echo before; exit 3" did not complete ' \
           "successfully: exit code: 3" in r.stderr
    assert "before" in r.stdout
    assert cli("image", "inspect", "fbtest/fail").returncode != 0


def _store_consistent(images_dir):
    """Every image's blobs and layers are there; returns the .tmp- names left anywhere."""
    from fastbox.images.store import ImageStore
    store = ImageStore(str(images_dir))
    for _, entry in store.entries():
        manifest = json.loads(store.read_blob(entry["digest"]))
        cfg = json.loads(store.read_blob(manifest["config"]["digest"]))
        for layer, diff_id in zip(manifest["layers"], cfg["rootfs"]["diff_ids"]):
            assert store.has_blob(layer["digest"]) and store.has_layer(diff_id)
    leftovers = []
    for dirpath, dirnames, filenames in os.walk(images_dir):
        leftovers += [n for n in dirnames + filenames if n.startswith(".tmp-")]
        dirnames[:] = [d for d in dirnames if d != "layers"]
    return leftovers


@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45, 0.6, 0.8])
def test_a_build_killed_at_any_moment_leaves_the_store_consistent(tmp_path, own_store, delay):
    """SIGKILL at spread-out points of a build (parsing, FROM, COPY, its tar, the commit,
    RUN, the image): the store stays consistent and the next build completes."""
    from fastbox.images.store import ImageStore
    ImageStore().ensure_default()
    ctx = context(tmp_path, "FROM busybox\nCOPY many /many\nRUN echo a > /a\nCOPY big /big\n"
                            "RUN echo b > /b\nCMD [\"true\"]\n",
                  {"big": os.urandom(8 << 20), **{f"many/f{i}": str(i) for i in range(300)}})
    p = subprocess.Popen([FASTBOX, "build", "-t", "fbtest/killed", str(ctx)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    assert cli("builder", "prune").returncode == 0  # sweeps under the store's lock
    assert _store_consistent(own_store) == []
    ingest = os.listdir(own_store / "ingest") if (own_store / "ingest").exists() else []
    assert [n for n in ingest if not n.startswith("sha256-")] == []
    build(ctx, "-t", "fbtest/killed")
    assert run("fbtest/killed", "cat", "/a", "/b")[1] == "a\nb\n"


def test_sigkilled_build_leaves_the_store_consistent(tmp_path, own_store):
    ctx = context(tmp_path, "FROM busybox\nCOPY big /big\nRUN sleep 30 && touch /slept\n",
                  {"big": os.urandom(4 << 20)})
    p = subprocess.Popen([FASTBOX, "build", "-t", "fbtest/killed", str(ctx)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen = b""
    while b"RUN sleep" not in seen:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        seen += line
    time.sleep(0.5)  # the sleep runs in its container
    p.kill()
    p.wait()
    p.stdout.close()
    p.stderr.close()
    # the next command sweeps: the step's container is killed, its cgroups removed, the
    # build's ingest session and temporaries deleted
    r = cli("images")
    assert r.returncode == 0 and "fbtest/killed" not in r.stdout
    r = cli("builder", "prune")  # takes the store's lock: sweeps ingest/
    assert r.returncode == 0
    assert _store_consistent(own_store) == []
    assert [n for n in os.listdir(own_store / "ingest") if not n.startswith("sha256-")] == []
    # the store works: a new build runs to the end
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY big /big\nRUN touch /slept\n")
    build(ctx, "-t", "fbtest/killed")
    assert run("fbtest/killed", "ls", "/slept")[0] == 0


# ---------------------------------------------------------------- the command

def test_build_flags(tmp_path):
    ctx = context(tmp_path, "FROM busybox AS one\nRUN echo one > /n\nFROM one\nRUN echo two >> /n\n")
    (ctx / "Other.Dockerfile").write_text("FROM busybox\nCMD [\"echo\", \"other\"]\n")
    iid = tmp_path / "iid"
    r = build(ctx, "-q", "--iidfile", iid, "-t", "fbtest/flags:a", "-t", "fbtest/flags:b")
    assert r.stdout.strip().startswith("sha256:") and len(r.stdout.strip().splitlines()) == 1
    assert iid.read_text() == r.stdout.strip()
    assert run("fbtest/flags:b", "cat", "/n")[1] == "one\ntwo\n"
    assert run("fbtest/flags:a", "cat", "/n")[1] == "one\ntwo\n"
    build(ctx, "-f", ctx / "Other.Dockerfile", "-t", "fbtest/other")
    assert run("fbtest/other")[1] == "other\n"
    r = cli("build", "-t", "fbtest/stdin", "-", input="FROM busybox\nCMD [\"echo\", \"stdin\"]\n")
    assert r.returncode == 0, r.stderr
    assert run("fbtest/stdin")[1] == "stdin\n"
    r = build(ctx, "--platform", "linux/s390x", ok=False)
    assert r.returncode == 1 and "platform" in r.stderr
    r = build(tmp_path / "nonexistent", ok=False)
    assert r.returncode == 1 and "not found" in r.stderr


# ---------------------------------------------------------------- attacks

def test_copy_never_follows_a_symlink_out_of_the_context_or_the_stage(tmp_path):
    """Docker resolves a source's symlinks inside the context (or the stage's root), never
    on the host; nor may one source's symlink redirect where the next one's files go."""
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = context(tmp_path, """FROM busybox AS one
RUN ln -s / /hostroot && ln -s / /a
RUN rm /a && mkdir /a
FROM busybox
COPY escape/etc/passwd /from-abs
COPY rel/etc/passwd /from-rel
COPY --from=one /hostroot/etc/passwd /from-stage
COPY first/ second/ /dst/
""", {"etc/passwd": "context's own passwd\n", "second/x/pwned": "p"})
    os.symlink("/", ctx / "escape")
    os.symlink("../../../../../..", ctx / "rel")
    (ctx / "first").mkdir()
    os.symlink(str(outside), ctx / "first" / "x")
    build(ctx, "-t", "fbtest/symlinks")
    busybox_passwd = run("busybox", "cat", "/etc/passwd")[1]
    out = run("fbtest/symlinks", "sh", "-c",
              "cat /from-abs /from-rel /from-stage; find /dst | sort")[1]
    assert out == ("context's own passwd\ncontext's own passwd\n" + busybox_passwd +
                   "/dst\n/dst/x\n/dst/x/pwned\n")
    assert os.listdir(outside) == []
    # a directory of an upper layer hides a lower layer's symlink at its path: /a/etc is
    # not the host's /etc through the lower `a -> /`
    bad = context(tmp_path, """FROM busybox AS one
RUN ln -s / /a
RUN rm /a && mkdir /a
FROM busybox
COPY --from=one /a/etc/passwd /x
""", name="hidden")
    r = build(bad, ok=False)
    assert r.returncode == 1 and "not found" in r.stderr, r.stdout + r.stderr


def test_chown_names_are_looked_up_in_the_stage_not_through_its_symlinks_on_the_host(tmp_path):
    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("hostonly:x:5555:5555::/:/bin/sh\n")
    ctx = context(tmp_path, f"""FROM busybox
RUN rm -rf /etc && ln -s {host_etc} /etc
COPY --chown=hostonly f /f
""", {"f": "1"})
    r = build(ctx, ok=False)
    assert r.returncode == 1 and "unable to find user hostonly" in r.stderr, r.stdout + r.stderr


def test_run_steps_have_the_security_defaults_of_run(tmp_path):
    ctx = context(tmp_path, """FROM busybox
RUN grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status > /status; \\
    (mount -t tmpfs x /mnt && echo mounted || echo no-mount) >> /status; \\
    (cat /proc/kcore > /dev/null 2>&1 && echo kcore || echo no-kcore) >> /status; \\
    ls /sys/fs/cgroup >/dev/null 2>&1; ip link 2>/dev/null | grep -c '^[0-9]' >> /status
""")
    build(ctx, "-t", "fbtest/secure")
    lines = run("fbtest/secure", "cat", "/status")[1].splitlines()
    status = dict(line.split(":\t") for line in lines[:3])
    assert int(status["CapEff"], 16) == 0x00000000A80425FB  # Docker's 14
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert lines[3:5] == ["no-mount", "no-kcore"]
    assert lines[5] == "1"  # its own network namespace (run's default, none): only lo


def _tree(root):
    import stat as st_mod
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = ""
            if st_mod.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
            elif st_mod.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            xattrs = sorted(os.listxattr(path, follow_symlinks=False))
            # a whiteout's own time means nothing (overlay shows nothing there), and the
            # unpacker makes it anew
            whiteout = st_mod.S_ISCHR(st.st_mode) and st.st_rdev == 0
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev,
                                                0 if whiteout else int(st.st_mtime), data, xattrs)
    return out


def test_every_layer_tar_unpacks_to_exactly_its_layer_directory(tmp_path):
    """A step's layer directory goes into the store as it was made (a RUN's upper, a COPY's
    directory written with its tar in one pass): the blob must say the same, or a pulled
    copy of the image would differ from the built one."""
    from fastbox.images.store import ImageStore
    from fastbox.images.unpack import unpack_layer
    ctx = context(tmp_path, """FROM busybox
RUN mkdir -p /data/sub && echo 1 > /data/a && ln -s a /data/l && mkfifo /data/p && rm /etc/group
RUN rm -rf /data && mkdir /data && echo 2 > /data/b && chmod 4755 /data/b
WORKDIR /w/x
COPY --chown=7:8 dir /copied/
COPY f /copied/dir/f2
COPY <<EOF /doc
doc
EOF
""", {"dir/a": "a", "dir/s/b": "b", "f": "f"})
    os.symlink("a", ctx / "dir" / "link")
    build(ctx, "-t", "fbtest/layers")
    store = ImageStore()
    d = store.describe("fbtest/layers")
    for i, (layer, diff_id) in enumerate(zip(d["manifest"]["layers"], d["config"]["rootfs"]["diff_ids"])):
        out = tmp_path / f"unpacked{i}"
        unpack_layer(store.ensure_blob(layer["digest"]), str(out), diff_id)
        assert _tree(out) == _tree(store.layer_path(diff_id)), f"layer {i}"


def test_a_built_layer_is_its_directory_until_a_save_needs_its_tar(tmp_path, own_store):
    """A step's layer is kept once, as its directory (what a COPY costs is one copy): the
    blob is written the first time something needs it, byte for byte what the digest says,
    also where one COPY's sources overlap (its files made out of the tar's order)."""
    import hashlib
    from fastbox.images.store import ImageStore
    ctx = context(tmp_path, "FROM busybox\nCOPY big /big\nCOPY one/ two/ /dst/\n"
                            "RUN echo r > /r\n",
                  {"big": os.urandom(6 << 20), "one/x": "1", "one/y/a": "a", "two/x": "2",
                   "two/y/b": "b", "two/0": "0"})
    build(ctx, "-t", "fbtest/lazy")
    store = ImageStore()
    d = store.describe("fbtest/lazy")
    built = list(zip(d["manifest"]["layers"], d["config"]["rootfs"]["diff_ids"]))[-3:]
    for layer, diff_id in built:
        assert layer["digest"] == diff_id and store.has_layer(diff_id)
        assert not os.path.exists(store.blob_path(diff_id))  # no tar written by the build
        assert store.has_blob(diff_id) and store.blob_size(diff_id) == layer["size"]
    assert cli("save", "-o", tmp_path / "out.tar", "fbtest/lazy").returncode == 0
    for layer, diff_id in built:
        with open(store.blob_path(diff_id), "rb") as f:
            data = f.read()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
        assert len(data) == layer["size"]
    assert run("fbtest/lazy", "cat", "/dst/x", "/dst/y/a", "/dst/y/b", "/r")[1] == "2abr\n"


@pytest.mark.parametrize("written", [0, 8 << 20])
def test_a_save_killed_while_it_writes_a_layer_tar_leaves_no_half_blob(tmp_path, own_store, written):
    """SIGKILL while a built layer's tar is being written (at its start, and halfway): no
    blob under its digest, nothing left once a writer has swept, and the next save
    writes it whole."""
    import hashlib
    from fastbox.images.store import ImageStore
    ctx = context(tmp_path, "FROM busybox\nCOPY big /big\n", {"big": os.urandom(48 << 20)})
    build(ctx, "-t", "fbtest/lazykill")
    store = ImageStore()
    digest = store.describe("fbtest/lazykill")["manifest"]["layers"][-1]["digest"]
    blob, ingest = store.blob_path(digest), own_store / "ingest"
    p = subprocess.Popen([FASTBOX, "save", "-o", str(tmp_path / "out.tar"), "fbtest/lazykill"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while max(_session_bytes(ingest), _size(blob)) <= written:
        assert p.poll() is None and time.monotonic() < deadline, "the tar was never begun"
    p.kill()
    p.wait()
    assert not os.path.exists(blob)
    assert cli("tag", "fbtest/lazykill", "fbtest/lazykill:2").returncode == 0  # a writer sweeps
    assert os.listdir(ingest) == []
    assert _store_consistent(own_store) == []
    assert cli("save", "-o", tmp_path / "out.tar", "fbtest/lazykill").returncode == 0
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == digest


def test_copy_keeps_user_xattrs_and_capabilities_but_never_overlays(tmp_path, own_store):
    """As cp -a keeps xattrs, COPY keeps user.* and file capabilities (in the layer and
    its tar); overlay's own (trusted.overlay.opaque, .redirect) planted on context files
    never reach a layer, where overlay would act on them."""
    import struct
    from fastbox.images.store import ImageStore
    ctx = context(tmp_path, "FROM busybox\nCOPY data/ /data/\nCOPY etc/ /etc/\n",
                  {"data/f": "f", "data/ping": "p", "data/d/g": "g", "etc/extra": "x"})
    os.setxattr(ctx / "data/f", "user.fastbox", b"one")
    os.setxattr(ctx / "data/d", "user.dir", b"two")
    cap = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # v2, effective, CAP_NET_RAW
    os.setxattr(ctx / "data/ping", "security.capability", cap)
    os.setxattr(ctx / "etc", "trusted.overlay.opaque", b"y")
    os.setxattr(ctx / "data/d", "trusted.overlay.opaque", b"y")
    os.setxattr(ctx / "data/f", "trusted.overlay.redirect", b"/etc/shadow")
    build(ctx, "-t", "fbtest/xattrs")
    store = ImageStore()
    d = store.describe("fbtest/xattrs")
    data_layer = store.layer_path(d["config"]["rootfs"]["diff_ids"][-2])
    assert os.getxattr(f"{data_layer}/data/f", "user.fastbox") == b"one"
    assert os.getxattr(f"{data_layer}/data/d", "user.dir") == b"two"
    assert os.getxattr(f"{data_layer}/data/ping", "security.capability") == cap
    for path in ("data/f", "data/d", "data/ping"):
        assert not any(n.startswith("trusted.") for n in os.listxattr(f"{data_layer}/{path}"))
    etc_layer = store.layer_path(d["config"]["rootfs"]["diff_ids"][-1])
    assert not any(n.startswith("trusted.") for n in os.listxattr(f"{etc_layer}/etc"))
    assert run("fbtest/xattrs", "cat", "/etc/extra", "/etc/passwd")[1].startswith("xroot:")
    with tarfile.open(store.ensure_blob(d["manifest"]["layers"][-2]["digest"])) as t:
        pax = {m.name: m.pax_headers for m in t}
    assert pax["data/f"]["SCHILY.xattr.user.fastbox"] == "one"
    assert pax["data/d"]["SCHILY.xattr.user.dir"] == "two"
    assert "SCHILY.xattr.security.capability" in pax["data/ping"]
    assert not [k for h in pax.values() for k in h if k.startswith("SCHILY.xattr.trusted.")]
    # an xattr is part of the COPY's key: changing only it re-runs the step
    assert list(steps(build(ctx, "-t", "fbtest/xattrs").stdout).values()) == ["CACHED"] * 2
    os.setxattr(ctx / "data/f", "user.fastbox", b"two")
    assert list(steps(build(ctx, "-t", "fbtest/xattrs").stdout).values()) == ["DONE", "DONE"]
    data_layer = store.layer_path(store.describe("fbtest/xattrs")["config"]["rootfs"]["diff_ids"][-2])
    assert os.getxattr(f"{data_layer}/data/f", "user.fastbox") == b"two"


def _size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _session_bytes(ingest):
    """The size of the largest file of an ingest session (<id>.<n>), -1 if none."""
    sizes = [-1]
    for name in os.listdir(ingest) if ingest.exists() else ():
        if name.rpartition(".")[2].isdigit():
            try:
                sizes.append((ingest / name).stat().st_size)
            except FileNotFoundError:
                pass
    return max(sizes)


def test_run_network_is_runs_default_unless_given(tmp_path):
    ctx = context(tmp_path, "FROM busybox\nRUN ls /sys/class/net | sort > /nets\n"
                            "RUN --network=none ls /sys/class/net | sort > /nets-none\n")
    build(ctx, "-t", "fbtest/net-default")
    assert run("fbtest/net-default", "cat", "/nets")[1] == "lo\n"
    build(ctx, "-t", "fbtest/net-host", "--network", "host")
    # if_nameindex, not /sys/class/net: sysfs shows the netns of whoever mounted it, and
    # this session runs in a netns of its own.
    import socket
    host = "".join(n + "\n" for n in sorted(name for _, name in socket.if_nameindex()))
    assert run("fbtest/net-host", "cat", "/nets", "/nets-none")[1] == host + "lo\n"


def test_a_run_step_that_cannot_start_names_its_line(tmp_path):
    r = build(context(tmp_path, "FROM busybox\nUSER nosuchuser\nRUN true\n"), ok=False)
    assert r.returncode == 1
    assert r.stderr.startswith("fastbox: Dockerfile:3: RUN: unable to find user nosuchuser")
    r = build(context(tmp_path, 'FROM busybox\nRUN ["/nosuch"]\n', name="exec"), ok=False)
    assert r.returncode == 1 and "Dockerfile:2: RUN: exec" in r.stderr, r.stderr


def test_concurrent_builds_share_the_store_and_its_cache(tmp_path, own_store):
    from fastbox.images.store import ImageStore
    ImageStore().ensure_default()
    ctx = context(tmp_path, "FROM busybox\nCOPY data /data\nRUN cat /data/* | wc -c > /count\n",
                  {f"data/f{i}": "x" * i for i in range(200)})
    procs = [subprocess.Popen([FASTBOX, "build", "-t", f"fbtest/concurrent:{n}", str(ctx)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for n in range(3)]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(run(f"fbtest/concurrent:{n}", "cat", "/count")[1] == "19900\n" for n in range(3))
    assert _store_consistent(own_store) == []
    # the next build hits at every step, whichever of them recorded it
    assert list(steps(build(ctx).stdout).values()) == ["CACHED", "CACHED"]


def test_containerfile_and_containerignore_come_first(tmp_path):
    ctx = context(tmp_path, "FROM busybox\nCMD [\"echo\", \"from-dockerfile\"]\n",
                  {"Containerfile": "FROM busybox\nCOPY . /ctx/\n",
                   ".containerignore": "secret\n", ".dockerignore": "public\n",
                   "secret": "s", "public": "p"})
    build(ctx, "-t", "fbtest/containerfile")
    out = run("fbtest/containerfile", "ls", "/ctx")[1].split()
    assert "public" in out and "secret" not in out and "Containerfile" in out
