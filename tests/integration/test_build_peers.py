"""fastbox build's images seen by other tools: pushed to Debian's docker-registry, copied by
skopeo, unpacked by umoci (whiteouts and opaque directories applied by them, not by us),
pulled back; and the same Containerfile built by buildah (apt), whose root filesystem and
config must match ours."""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest

pytest.register_assert_rewrite("conftest_registry")
from conftest_registry import skopeo, umoci  # noqa: E402

pytest_plugins = ["conftest_registry"]
FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
# What buildah leaves in an image and Docker/BuildKit do not: the mount points it makes for
# a RUN step's /etc/hosts, /etc/hostname, /etc/resolv.conf and /run, and its version label.
BUILDAH_ARTIFACTS = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run"}

DOCKERFILE = """FROM localhost/fbbase:1
ENV GREETING=hello PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
RUN mkdir -p /var/www/old /data/sub && echo 1 > /data/a && echo old > /var/www/old/x \\
    && echo 2 > /data/sub/b && chmod 700 /data/sub && echo keep > /etc/keep
RUN rm -rf /var/www/* /etc/group && rm -rf /data && mkdir /data && echo new > /data/c
WORKDIR /app
COPY site/ /var/www/
COPY --chown=12:34 dir ./dir/
COPY --chmod=0600 site/index.html /secret.html
RUN ln -s /var/www/index.html /app/link && mkfifo /app/fifo && touch /app/empty
USER 1000
EXPOSE 8080/tcp
LABEL a=b
VOLUME /vol
STOPSIGNAL SIGINT
ENTRYPOINT ["httpd"]
CMD ["-f", "-p", "8080", "-h", "/var/www"]
"""


def cli(*args):
    r = subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"fastbox {' '.join(map(str, args))}: {r.stdout}{r.stderr}"
    return r


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "ctx"
    (d / "site").mkdir(parents=True)
    (d / "dir" / "sub").mkdir(parents=True)
    (d / "site" / "index.html").write_text("<h1>hi</h1>\n")
    (d / "dir" / "x").write_text("x\n")
    (d / "dir" / "sub" / "y").write_text("y\n")
    os.chmod(d / "dir" / "sub", 0o751)
    (d / "Dockerfile").write_text(DOCKERFILE)
    from fastbox.images.store import ImageStore
    ImageStore().ensure_default()  # the built-in busybox, as the base of both builds
    cli("tag", "busybox", "localhost/fbbase:1")
    return d


def tree(root):
    """{path: (mode, uid, gid, content hash or link target)} of a root filesystem."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            else:
                extra = ""
            out[os.path.relpath(path, root)] = (oct(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def oci_config(layout):
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    return json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text()), manifest


def unpack(layout, tag, bundle):
    umoci("unpack", "--image", f"{layout}:{tag}", str(bundle))
    return bundle / "rootfs"


def test_push_skopeo_umoci_round_trip_keeps_whiteouts(registry, ctx, tmp_path):
    target = f"{registry.host}/fbtest/built:v1"
    cli("build", "-t", target, ctx)
    r = cli("push", target)
    assert "digest: sha256:" in r.stdout
    layout = tmp_path / "skopeo-oci"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{layout}:x")
    rootfs = unpack(layout, "x", tmp_path / "bundle")
    assert not (rootfs / "etc/group").exists() and (rootfs / "etc/keep").read_text() == "keep\n"
    assert sorted(os.listdir(rootfs / "data")) == ["c"]  # the opaque directory, applied by umoci
    assert os.listdir(rootfs / "var/www") == ["index.html"]
    assert stat.S_ISFIFO(os.lstat(rootfs / "app/fifo").st_mode)
    cfg, manifest = oci_config(layout)
    assert cfg["config"]["Entrypoint"] == ["httpd"] and cfg["config"]["User"] == "1000"
    # the registry holds the manifest as built, and skopeo (which may compress layers on
    # the way to its layout) sees the layers as built: the same diff_ids
    from fastbox.images.store import ImageStore
    ours = ImageStore().describe(target)
    assert f"digest: {ours['image'].manifest_digest}" in r.stdout
    assert cfg["rootfs"]["diff_ids"] == ours["config"]["rootfs"]["diff_ids"]
    # and a fresh store pulls it back and runs it
    env = dict(os.environ, FASTBOX_ROOT=str(tmp_path / "other-root"))
    r = subprocess.run([FASTBOX, "run", "--rm", "--entrypoint", "sh", target, "-c",
                        "ls /data; cat /var/www/index.html; test -e /etc/group || echo no-group"],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:  # run does not pull: pull first
        subprocess.run([FASTBOX, "pull", target], check=True, capture_output=True, env=env)
        r = subprocess.run([FASTBOX, "run", "--rm", "--entrypoint", "sh", target, "-c",
                            "ls /data; cat /var/www/index.html; test -e /etc/group || echo no-group"],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert r.stdout == "c\n<h1>hi</h1>\nno-group\n", r.stderr


@pytest.fixture
def buildah(tmp_path):
    if shutil.which("buildah") is None:
        pytest.skip("needs buildah (apt)")
    base = tmp_path / "buildah"
    base.mkdir()

    def run(*args):
        r = subprocess.run(["buildah", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                            "--storage-driver", "vfs", *map(str, args)], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"buildah {' '.join(map(str, args))}: {r.stderr}"
        return r
    yield run
    # vfs layers hold root-owned read-only trees: buildah removes its own storage
    subprocess.run(["buildah", "--root", str(base / "root"), "--runroot", str(base / "runroot"),
                    "--storage-driver", "vfs", "rm", "--all"], capture_output=True)
    subprocess.run(["umount", "-R", str(base / "root"), str(base / "runroot")], capture_output=True)


def test_buildah_builds_the_same_rootfs_and_config(buildah, ctx, tmp_path):
    base_tar = tmp_path / "base.tar"
    cli("save", "--format", "oci", "-o", base_tar, "localhost/fbbase:1")
    buildah("pull", "-q", f"oci-archive:{base_tar}")
    buildah("bud", "--isolation", "chroot", "-q", "-t", "peer:1", ctx)
    buildah("push", "-q", "peer:1", f"oci:{tmp_path / 'oci-peer'}:1")
    cli("build", "-q", "-t", "fbtest/same:1", ctx)
    ours_tar = tmp_path / "ours.tar"
    cli("save", "--format", "oci", "-o", ours_tar, "fbtest/same:1")
    (tmp_path / "oci-ours").mkdir()
    with tarfile.open(ours_tar) as t:
        t.extractall(tmp_path / "oci-ours", filter="tar")
    ours = tree(unpack(tmp_path / "oci-ours", "1", tmp_path / "bundle-ours"))
    peer = tree(unpack(tmp_path / "oci-peer", "1", tmp_path / "bundle-peer"))
    for path in BUILDAH_ARTIFACTS:
        assert path not in ours
        peer.pop(path, None)
    # modes, owners, contents and link targets: everything but times
    assert ours == peer
    assert ours["app/dir"][1:3] == (12, 34) and ours["secret.html"][0] == oct(0o100600)
    ours_cfg, _ = oci_config(tmp_path / "oci-ours")
    peer_cfg, _ = oci_config(tmp_path / "oci-peer")
    a, b = dict(ours_cfg["config"]), dict(peer_cfg["config"])
    b["Labels"] = {k: v for k, v in b["Labels"].items() if k != "io.buildah.version"}
    assert sorted(a.pop("Env")) == sorted(b.pop("Env"))  # buildah appends a replaced variable
    assert a == b


def test_missing_from_and_copy_from_images_are_pulled(registry, ctx, tmp_path, monkeypatch):
    target = f"{registry.host}/fbtest/base-for-pull:v1"
    cli("build", "-t", target, ctx)
    cli("push", target)
    # a store that has never seen it: FROM and COPY --from pull it
    monkeypatch.setenv("FASTBOX_ROOT", str(tmp_path / "fresh-root"))
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text(f"FROM {target}\nCOPY --from={target} /etc/keep /copied-keep\n"
                                      "USER 0\nENTRYPOINT []\nCMD [\"cat\", \"/copied-keep\", \"/data/c\"]\n")
    r = cli("build", "-t", "fbtest/pulled-child", child)
    assert f"pulling {target}" in r.stdout
    r = subprocess.run([FASTBOX, "run", "--rm", "fbtest/pulled-child"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL)
    assert r.stdout == "keep\nnew\n", r.stderr
    r = cli("build", "--pull", "-t", "fbtest/pulled-child", child)  # --pull asks the registry again
    assert f"pulling {target}" in r.stdout
