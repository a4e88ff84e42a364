"""fastbox as an OCI runtime: the native `fastbox-runtime` executable (csrc/runtime/),
which containerd, podman and dockerd run with runc's command line. Nothing in Python is
on its path: this package only says where the executable is (tests, benchmarks, docs).
DESIGN.md here explains how it works."""
import os
import shutil

_HERE = os.path.dirname(os.path.abspath(__file__))


def runtime_binary():
    """The installed fastbox-runtime: the package's libexec copy (beside the exec helper
    it uses), else the one on PATH."""
    path = os.path.join(os.path.dirname(_HERE), "libexec", "fastbox-runtime")
    if os.access(path, os.X_OK):
        return path
    return shutil.which("fastbox-runtime")
