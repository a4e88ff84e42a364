"""OCI bundles and runtimes for the fastbox-runtime tests: a busybox rootfs, a
config.json from `fastbox-runtime spec` made fit for this host (no terminal, an
absolute cgroupsPath under the session's cgroup parent), and a runner for a runtime
binary (fastbox's or runc) with its --root in the test's temp dir."""
import json
import os
import shutil
import subprocess
import tempfile

from fastbox.oci import runtime_binary

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "false", "echo", "cat", "ls", "sleep", "id", "hostname", "ps", "stty", "tty",
           "mknod", "grep", "head", "wc", "mount", "ulimit", "readlink", "test")
RUNC = shutil.which("runc")


def cgroup_parent():
    # the conftest's per-session parent; module fixtures run before it is in the environment
    return os.environ.get("FASTBOX_CGROUP_PARENT") or f"fastbox-test-{os.getpid()}"


def make_rootfs(path):
    os.makedirs(f"{path}/bin", exist_ok=True)
    for d in ("proc", "sys", "dev", "tmp", "etc", "run", "mnt"):
        os.makedirs(f"{path}/{d}", exist_ok=True)
    shutil.copy(os.path.realpath(BUSYBOX), f"{path}/bin/busybox")
    for name in APPLETS:
        os.symlink("busybox", f"{path}/bin/{name}")
    return path


def make_bundle(tmp, name, args, **changes):
    """A bundle dir with rootfs/ and config.json; changes: dotted keys -> values
    ("process.env": [...], "linux.sysctl": {...})."""
    bundle = os.path.join(tmp, name)
    os.makedirs(bundle)
    make_rootfs(os.path.join(bundle, "rootfs"))
    subprocess.run([runtime_binary(), "spec", "--bundle", bundle], check=True)
    with open(f"{bundle}/config.json") as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = list(args)
    cfg["root"]["readonly"] = False
    cfg["linux"]["cgroupsPath"] = f"/{cgroup_parent()}/{name}"
    for key, value in changes.items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    with open(f"{bundle}/config.json", "w") as f:
        json.dump(cfg, f)
    return bundle


class Runtime:
    """One runtime binary with its state root; run(verb, *args) -> CompletedProcess."""

    def __init__(self, binary, root, log=None):
        self.binary, self.root, self.log = binary, root, log

    @property
    def name(self):
        return "runc" if self.binary == RUNC else "fastbox"

    def argv(self, *args):
        head = [self.binary, "--root", self.root]
        if self.log:
            head += ["--log", self.log, "--log-format", "json"]
        return head + [str(a) for a in args]

    def run(self, *args, check=False, input=None, timeout=30):
        """Output to files, not pipes: a created container holds the runtime's stdio (as
        with runc), so a pipe would never reach EOF while it lives."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run(self.argv(*args), input=input, timeout=timeout, text=True,
                               stdout=out, stderr=err, stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        if check and r.returncode:
            raise AssertionError(f"{self.name} {' '.join(map(str, args))}: exit {r.returncode}: {r.stderr}")
        return r

    def state(self, cid):
        r = self.run("state", cid)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def cleanup(self, cid):
        self.run("delete", "--force", cid)
