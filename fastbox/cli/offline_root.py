"""A stopped (or created) container's files for `cp` and `export`: its overlay mounted
in a mount namespace of our own, which ends with the process (nothing is ever mounted
in the host's). `cp`/`export` re-run themselves here:

    unshare --mount --propagation private python -I -m fastbox.cli.offline_root \\
        ID rw|ro -- CLI ARGS...

The overlay goes on the container's own rootfs directory (root's, 0700 above it), with
its writable layer as upper (rw: cp into it) or as the top lower layer (ro)."""
import os
import subprocess
import sys

from fastbox.runtime.container_files import OFFLINE_ROOT_ENV as ENV


def rerun(cid, writable, args):
    """Run the CLI with args again in a private mount namespace holding the container's
    root; returns its exit code."""
    cmd = ["unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-m",
           "fastbox.cli.offline_root", cid, "rw" if writable else "ro", "--", *args]
    return subprocess.call(cmd)


def main(cid, mode, args):
    from fastbox import containers
    from fastbox.api import resolve_image
    from fastbox.errors import FastboxError
    try:
        c = containers.get(cid)
        record = c.reload().attrs
        d = c._store.container_dir(cid)
        upper, work, target = d + "/upper", d + "/work", d + "/rootfs"
        for sub in (upper, work, target):
            os.makedirs(sub, mode=0o755, exist_ok=True)
        lowers = ":".join(resolve_image(record["image_id"]).layer_dirs)
        opts = (f"lowerdir={lowers},upperdir={upper},workdir={work}" if mode == "rw"
                else f"lowerdir={upper}:{lowers}")
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            ("" if mode == "rw" else "ro,") + opts, target],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"fastbox: cannot mount the stopped container's filesystem: {r.stderr.strip()}",
                  file=sys.stderr)
            return 125
    except FastboxError as e:
        print(f"fastbox: {e}", file=sys.stderr)
        return e.exit_code
    os.environ[ENV] = target
    from fastbox.cli.app import main as app_main
    try:
        app_main(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


if __name__ == "__main__":
    sep = sys.argv.index("--")
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[sep + 1:]))
