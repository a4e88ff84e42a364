"""`fastbox build` and `fastbox builder prune`: parse the flags, call fastbox.build, print."""
import os
import sys
from typing import List, Optional

import typer

from fastbox.errors import SpecError

builder_app = typer.Typer(help="Manage the build cache.", no_args_is_help=True)
DEFAULT_FILES = ("Containerfile", "Dockerfile")


def register(app):
    app.command()(build)
    builder_app.command()(prune)
    app.add_typer(builder_app, name="builder")


def build(context: str = typer.Argument(..., help="The context directory, or - (a Dockerfile or a tar on stdin)"),
          tag: List[str] = typer.Option([], "--tag", "-t", help="NAME[:TAG] for the image (repeatable)"),
          file: Optional[str] = typer.Option(None, "--file", "-f", help="The Containerfile (default: CONTEXT/Containerfile or Dockerfile)"),
          build_arg: List[str] = typer.Option([], "--build-arg", help="KEY=VALUE for an ARG (KEY alone: from the environment)"),
          target: Optional[str] = typer.Option(None, "--target", help="Build this stage"),
          no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the build cache"),
          pull: bool = typer.Option(False, "--pull", help="Always pull the FROM images"),
          platform: Optional[str] = typer.Option(None, "--platform", help="OS/ARCH (this host's only)"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the image id"),
          iidfile: Optional[str] = typer.Option(None, "--iidfile", help="Write the image id to this file"),
          network: Optional[str] = typer.Option(None, "--network", help="The network of RUN steps (default: run's default)"),
          progress: str = typer.Option("auto", "--progress", help="auto, plain or tty")):
    """Build an image from a Containerfile."""
    from fastbox.build.builder import Options, build as do_build
    if progress not in ("auto", "plain", "tty", "quiet"):
        raise SpecError(f"invalid --progress {progress!r}: use auto, plain or tty")
    args = {}
    for item in build_arg:
        key, eq, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if not eq:
            if key not in os.environ:
                continue  # Docker: KEY alone passes the caller's value, if it has one
            value = os.environ[key]
        args[key] = value
    text, name, ctx_dir, tmp = _inputs(context, file)
    try:
        opts = Options(tags=tag, build_args=args, target=target, no_cache=no_cache, pull=pull,
                       platform=platform, quiet=quiet or progress == "quiet", network=network,
                       out=sys.stdout)
        image_id = do_build(ctx_dir, text, opts, file_name=name)
    finally:
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    if iidfile:
        with open(iidfile, "w") as f:
            f.write(image_id)
    if quiet:
        print(image_id)


def _inputs(context, file):
    """(Containerfile text, its name, context dir or None, a temp dir to remove)."""
    tmp = None
    if context == "-":
        data = sys.stdin.buffer.read()
        if _is_tar(data):
            import io
            import tarfile
            import tempfile
            tmp = tempfile.mkdtemp(prefix="fastbox-build-")
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                t.extractall(tmp, filter="data")
            context = tmp
        else:
            if file:
                raise SpecError("-f cannot be used with a Dockerfile on stdin")
            return data.decode("utf-8", "replace"), "Dockerfile", None, None
    if not os.path.isdir(context):
        raise SpecError(f"unable to prepare context: path {context!r} not found")
    if file and file != "-":
        path = file if os.path.isabs(file) or os.path.exists(file) else os.path.join(context, file)
    elif file == "-":
        return sys.stdin.read(), "Dockerfile", context, tmp
    else:
        path = next((os.path.join(context, n) for n in DEFAULT_FILES
                     if os.path.isfile(os.path.join(context, n))), None)
        if path is None:
            raise SpecError(f"no Containerfile or Dockerfile in {context}: give one with -f")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(), os.path.basename(path), context, tmp
    except OSError as e:
        raise SpecError(f"cannot read {path}: {e.strerror}") from None


def _is_tar(data):
    return data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar"


def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask (there is no prompt)"),
          all: bool = typer.Option(False, "--all", "-a", help="The same: every cached step")):
    """Remove the build cache."""
    from fastbox.build.cache import BuildCache
    from fastbox.images.store import ImageStore
    count, freed = BuildCache(ImageStore()).prune()
    print(f"Deleted {count} cached steps\nTotal reclaimed space: {freed / 1e6:.1f}MB")
