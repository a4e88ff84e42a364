"""Image commands: images, import, pull, push, save, load, tag, rmi, inspect, history, login,
logout, the `image` group (ls, rm, prune, ...) and `system df`. Each parses, calls one library
function, prints. Heavy imports (httpx, rich) happen inside the commands that need them."""
import json
import sys
from typing import List, Optional

import typer

from fastbox.errors import ImageNotFound, SpecError

image_app = typer.Typer(help="Manage images.", no_args_is_help=True)
system_app = typer.Typer(help="Manage fastbox.", no_args_is_help=True)


def register(app):
    for target in (app, image_app):
        target.command("import")(import_)
        target.command()(pull)
        target.command()(push)
        target.command()(save)
        target.command()(load)
        target.command()(tag)
        target.command()(history)
    # The top-level `inspect` is container_commands' and falls back to inspect_image().
    app.command()(images)
    app.command()(rmi)
    app.command()(login)
    app.command()(logout)
    image_app.command("ls")(images)
    image_app.command("rm")(rmi)
    image_app.command("inspect")(inspect)
    image_app.command()(prune)
    system_app.command()(df)
    app.add_typer(image_app, name="image")
    app.add_typer(system_app, name="system")


def import_(tarball: str = typer.Argument(..., help="A rootfs tarball (plain or gzip), - for stdin"),
            reference: str = typer.Argument(..., help="NAME[:TAG] for the new image"),
            change: List[str] = typer.Option([], "--change", "-c",
                                             help='Set CMD, ENTRYPOINT, ENV, WORKDIR or USER, e.g. CMD ["sh"]')):
    """Create a one-layer image from a root filesystem tarball (- reads it from stdin)."""
    from fastbox.images.store import ImageStore
    changes = parse_changes(change)
    if tarball != "-":
        print(ImageStore().import_tar(tarball, reference, changes=changes).id)
        return
    import shutil
    import tempfile
    from fastbox import config
    # The store reads the tarball more than once: stdin goes to a private file first.
    config.private_dir(config.root())
    with tempfile.NamedTemporaryFile(dir=config.root(), prefix=".import-") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        f.flush()
        print(ImageStore().import_tar(f.name, reference, changes=changes).id)


def parse_changes(changes):
    """Docker's --change subset: CMD, ENTRYPOINT (JSON array or shell form), ENV, WORKDIR, USER."""
    out = {}
    for change in changes:
        key, _, value = change.strip().partition(" ")
        key, value = key.upper(), value.strip()
        if key in ("CMD", "ENTRYPOINT"):
            try:
                argv = json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]
            except ValueError:
                raise SpecError(f"invalid --change {change!r}: bad JSON array") from None
            out["Cmd" if key == "CMD" else "Entrypoint"] = argv
        elif key == "ENV":
            k, sep, v = value.partition("=")
            if not sep:
                k, _, v = value.partition(" ")
            out.setdefault("Env", []).append(f"{k}={v.strip()}")
        elif key in ("WORKDIR", "USER"):
            out["WorkingDir" if key == "WORKDIR" else "User"] = value
        else:
            raise SpecError(f"invalid --change {change!r}: supported are CMD, ENTRYPOINT, ENV, WORKDIR, USER")
    return out


def images(repository: Optional[str] = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
           quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show image ids"),
           format: Optional[str] = typer.Option(None, "--format",
                                                help="table, json, or a Go template: '{{.Repository}}'"),
           no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate ids"),
           digests: bool = typer.Option(False, "--digests", help="Show digests")):
    """List images in the local store."""
    from fastbox.cli import go_template, image_view
    from fastbox.images.store import ImageStore
    rows = [r for r in ImageStore().list() if image_view.matches(r, repository)]
    if quiet:
        for r in rows:
            print(r["id"] if no_trunc else r["id"].split(":")[-1][:12])
        return
    default = image_view.DEFAULT_TABLE
    if digests:
        default = default.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t")
    for line in go_template.format_rows(format, [image_view.ImageRow(r, trunc=not no_trunc)
                                                 for r in rows],
                                        default=default, titles=image_view.TITLES):
        print(line)


def pull(image: str = typer.Argument(..., help="NAME[:TAG|@DIGEST]"),
         platform: Optional[str] = typer.Option(None, "--platform", help="OS/ARCH[/VARIANT], e.g. linux/arm64"),
         insecure: bool = typer.Option(False, "--insecure", help="Allow plain HTTP or unverified TLS"),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the image name")):
    """Download an image from a registry."""
    from fastbox.images.pull import pull as do_pull
    from fastbox.images.reference import parse
    ref = parse(image)
    if not quiet:
        print(f"{ref.tag or ref.digest}: Pulling from {ref.repository}", flush=True)
    with _ProgressDisplay(quiet) as progress:
        pulled = do_pull(image, platform=platform, insecure=insecure, progress=progress)
    print(pulled.ref)


def push(image: str = typer.Argument(..., help="NAME[:TAG]"),
         insecure: bool = typer.Option(False, "--insecure", help="Allow plain HTTP or unverified TLS"),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the manifest digest")):
    """Upload an image to a registry."""
    from fastbox.images.push import push as do_push
    from fastbox.images.reference import parse
    ref = parse(image)
    if not quiet:
        print(f"The push refers to repository [{ref.registry}/{ref.repository}]", flush=True)
    with _ProgressDisplay(quiet) as progress:
        digest = do_push(image, insecure=insecure, progress=progress)
    if quiet:
        print(digest)


def save(images: List[str] = typer.Argument(..., help="Images to save"),
         output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file, not stdout"),
         format: str = typer.Option("oci+docker", "--format",
                                    help="oci, docker, or oci+docker (both in one tar, as Docker 25+)")):
    """Save images to a tar archive (OCI image layout and `docker save` format)."""
    from fastbox.images import archive
    formats = tuple(f for f in format.split("+"))
    if not formats or any(f not in archive.FORMATS for f in formats):
        raise SpecError(f"invalid --format {format!r}: use oci, docker or oci+docker")
    if output is None and sys.stdout.isatty():
        raise SpecError("cowardly refusing to write an archive to a terminal: use -o FILE or a redirect")
    archive.save(images, output if output is not None else sys.stdout.buffer, formats=formats)


def load(input: Optional[str] = typer.Option(None, "--input", "-i", help="Read from this file, not stdin"),
         platform: Optional[str] = typer.Option(None, "--platform", help="For multi-platform archives"),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing")):
    """Load images from a tar archive (OCI image layout or `docker save` format)."""
    from fastbox.images import archive
    if input is None and sys.stdin.isatty():
        raise SpecError("requested load from stdin, but stdin is a terminal: use -i FILE or a redirect")
    loaded = archive.load(input if input is not None else sys.stdin.buffer, platform=platform)
    if not quiet:
        for name, image in loaded:
            if name:
                from fastbox.images.reference import parse
                print(f"Loaded image: {parse(name).familiar}")
            else:
                print(f"Loaded image ID: {image.id}")


def tag(source: str = typer.Argument(..., help="SOURCE_IMAGE[:TAG]"),
        target: str = typer.Argument(..., help="TARGET_IMAGE[:TAG]")):
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    from fastbox.images.store import ImageStore
    ImageStore().tag(source, target)


def rmi(images: List[str] = typer.Argument(..., help="Names or ids"),
        force: bool = typer.Option(False, "--force", "-f",
                                   help="Untag even if a container uses the image (its content stays)")):
    """Remove images."""
    from fastbox.images.store import ImageStore
    from fastbox.cli.container_commands import for_each
    store = ImageStore()

    def remove_one(ref):
        for line in store.remove(ref, force=force):
            print(line)

    for_each(images, remove_one)


def inspect(names: List[str] = typer.Argument(..., help="Images"),
            format: Optional[str] = typer.Option(None, "--format", "-f",
                                                 help="A Go-template subset: {{.Id}}, {{json .Config}}")):
    """Show low-level information on images as JSON."""
    from fastbox.images.report import inspect as describe
    found = []
    for name in names:
        try:
            found.append(describe(name))
        except ImageNotFound:
            raise ImageNotFound(f"no such object: {name}") from None
    from fastbox.cli import go_template
    print(go_template.inspect_text(format, found))


def inspect_image(ref):
    """`inspect`'s object for an image (for the top-level `inspect`, which also knows
    containers); ImageNotFound if there is none."""
    from fastbox.images.report import inspect as describe
    return describe(ref)


def history(image: str = typer.Argument(...),
            no_trunc: bool = typer.Option(False, "--no-trunc", help="Do not truncate output"),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show image ids"),
            format: Optional[str] = typer.Option(None, "--format", help="'json' for JSON lines")):
    """Show the history of an image."""
    from fastbox.images.report import history as image_history
    rows = image_history(image)
    if format == "json":
        for r in rows:
            print(json.dumps(r))
        return
    if quiet:
        for r in rows:
            print(r["id"] if no_trunc or r["id"] == "<missing>" else r["id"][7:19])
        return
    print(f"{'IMAGE':<14} {'CREATED':<22} {'CREATED BY':<46} {'SIZE':<10} COMMENT")
    for r in rows:
        by = r["created_by"] if no_trunc or len(r["created_by"]) <= 45 else r["created_by"][:44] + "…"
        shown = r["id"] if no_trunc or r["id"] == "<missing>" else r["id"][7:19]
        print(f"{shown:<14} {r['created'][:19]:<22} {by:<46} {human_size(r['size']):<10} {r['comment']}")


def prune(all: bool = typer.Option(False, "--all", "-a", help="Remove all images no container uses, not just dangling ones"),
          force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation")):
    """Remove unused images, and blobs, layers and downloads nothing references."""
    from fastbox.images.store import ImageStore
    from fastbox.cli import prompts
    what = "all images without at least one container associated to them" if all else "all dangling images"
    if not force and not prompts.confirm(f"WARNING! This will remove {what}.\n"
                                         "Are you sure you want to continue?"):
        raise typer.Exit(0)
    lines, freed = ImageStore().prune(all=all)
    if lines:
        print("Deleted Images:")
        for line in lines:
            print(line[0].lower() + line[1:])  # Docker's prune says "untagged:", "deleted:"
        print()
    print(f"Total reclaimed space: {human_size(freed)}")


def df():
    """Show disk usage of images and containers."""
    from fastbox.images.report import disk_usage_report
    usage = disk_usage_report()
    print(f"{'TYPE':<16}{'TOTAL':<10}{'ACTIVE':<10}{'SIZE':<12}RECLAIMABLE")
    for label, key in (("Images", "images"), ("Containers", "containers")):
        u = usage[key]
        percent = f" ({100 * u['reclaimable'] // u['size']}%)" if u["size"] else ""
        print(f"{label:<16}{u['total']:<10}{u['active']:<10}{human_size(u['size']):<12}"
              f"{human_size(u['reclaimable'])}{percent}")


def login(server: Optional[str] = typer.Argument(None, help="Registry (default: Docker Hub)"),
          username: Optional[str] = typer.Option(None, "--username", "-u"),
          password: Optional[str] = typer.Option(None, "--password", "-p"),
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Take the password from stdin"),
          insecure: bool = typer.Option(False, "--insecure", help="Allow plain HTTP or unverified TLS")):
    """Log in to a registry; credentials go where Docker keeps them ($DOCKER_CONFIG/config.json)."""
    from fastbox.images import auth
    from fastbox.images.registry import RegistryClient
    registry = registry_of(server)
    if password_stdin:
        if password:
            raise SpecError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = typer.prompt("Username")
    if not password:
        password = typer.prompt("Password", hide_input=True)
    creds = auth.Credentials(username, password)
    with RegistryClient(registry, insecure=insecure, credentials=creds) as client:
        client.login()
    auth.store(registry, creds)
    print("Login Succeeded")


def logout(server: Optional[str] = typer.Argument(None, help="Registry (default: Docker Hub)")):
    """Log out from a registry."""
    from fastbox.images import auth
    registry = registry_of(server)
    if auth.remove(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")


def registry_of(server):
    """"https://host:5000/v2/" -> "host:5000"; none or Docker Hub's names -> "docker.io"."""
    if not server:
        return "docker.io"
    host = server.partition("://")[2] if "://" in server else server
    host = host.partition("/")[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io", "docker.io") else host


def human_size(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


class _ProgressDisplay:
    """Progress of a pull or push: a rich bar per layer on a terminal's stderr, else Docker's
    non-terminal lines on stdout; nothing with --quiet."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.shown = None

    def __enter__(self):
        if self.quiet:
            return None
        self.shown = _Bars() if sys.stderr.isatty() else _Lines()
        return self.shown

    def __exit__(self, *exc):
        if self.shown is not None:
            self.shown.close()


class _Lines:
    """One line per layer as it finishes, as `docker pull | cat` prints."""

    FINAL = ("Already exists", "Pull complete", "Pushed", "Layer already exists", "Mounted from")

    def __init__(self):
        import threading
        self.printed, self.lock = set(), threading.Lock()

    def start(self, name, layers):
        pass

    def update(self, digest, status):
        """Called from the layers' download threads: one whole line at a time (print()
        writes the text and its newline apart, and two layers' lines ran together)."""
        if not status.startswith(self.FINAL):
            return
        with self.lock:
            if digest not in self.printed:
                self.printed.add(digest)
                sys.stdout.write(f"{digest[7:19]}: {status}\n")
                sys.stdout.flush()

    def advance(self, digest, nbytes):
        pass

    def reset(self, digest, done):
        pass

    def finish(self, lines):
        for line in lines:
            print(line)

    def close(self):
        pass


class _Bars:
    """A rich progress bar per layer, on stderr."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TransferSpeedColumn)
        self.progress = Progress(TextColumn("{task.fields[short]}: {task.description:<20}"),
                                 BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True))
        self.tasks, self.sizes, self.lines = {}, {}, []

    def start(self, name, layers):
        for digest, size in layers:
            self.tasks[digest] = self.progress.add_task("Waiting", total=size, short=digest[7:19])
            self.sizes[digest] = size
        self.progress.start()

    def update(self, digest, status):
        task = self.tasks.get(digest)
        if task is not None:
            extra = {"completed": self.sizes[digest]} if status.startswith(_Lines.FINAL) else {}
            self.progress.update(task, description=status, **extra)

    def advance(self, digest, nbytes):
        if digest in self.tasks:
            self.progress.advance(self.tasks[digest], nbytes)

    def reset(self, digest, done):
        if digest in self.tasks:
            self.progress.update(self.tasks[digest], completed=done)

    def finish(self, lines):
        self.lines = lines

    def close(self):
        self.progress.stop()
        for line in self.lines:
            print(line)
