"""`cp`, `export` and `commit`: files between the host and a running container,
resolved inside the container's root (fastbox.runtime.container_files), and a
container's writable layer as an image (fastbox.images.commit)."""
import os
import stat
import sys
from typing import List, Optional

import typer

from fastbox.errors import SpecError


def register(app, container_group):
    for group in (app, container_group):
        group.command()(cp)
        group.command()(export)
        group.command()(commit)


def cp(src: str = typer.Argument(..., metavar="SRC"),
       dest: str = typer.Argument(..., metavar="DEST"),
       archive: bool = typer.Option(False, "--archive", "-a", help="Keep uid/gid of the source")):
    """Copy files between a container and the host: CONTAINER:SRC DEST, SRC CONTAINER:DEST
    ('-' for a tar stream on stdin or stdout)."""
    from fastbox import containers
    (src_ref, src_path), (dst_ref, dst_path) = _side(src), _side(dest)
    if bool(src_ref) == bool(dst_ref):
        raise SpecError("copying between containers or within the host is not supported: "
                        "use CONTAINER:SRC DEST or SRC CONTAINER:DEST")
    record = containers.get(src_ref or dst_ref).reload().attrs
    again = ["cp", *(["-a"] if archive else []), src, dest]
    with _root_or_rerun(record, bool(dst_ref), again) as root:
        try:
            if src_ref:
                try:
                    parent_fd, name = root.open_parent(src_path)
                    os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise SpecError(f"no such container:path: {src}") from None
                os.close(parent_fd)
                _copy_out(root, src_path, dst_path, archive)
            else:
                _copy_in(root, src_path, dst_path, archive)
        except OSError as e:
            where = "in the container" if (e.filename or "").startswith("/") or src_ref else ""
            raise SpecError(f"cp {src} {dest}: {e.strerror}"
                            + (f": {e.filename}" if e.filename else "") + (f" ({where})" if where else "")) from None


class _root_or_rerun:
    """The container's root: a running one's directly; for a stopped one, the command
    runs again in a mount namespace of its own holding its overlay (offline_root), and
    we exit with its code."""

    def __init__(self, record, writable, args):
        from fastbox.runtime.container_files import ContainerRoot
        self.root, self.record, self.writable = ContainerRoot(record), record, writable
        self.args = args  # this command's, to run again (sys.argv is an engine's in a worker)

    def __enter__(self):
        from fastbox.cli import offline_root
        from fastbox.runtime.container_files import NotRunning
        try:
            return self.root.__enter__()
        except NotRunning:
            if self.record["status"] == "running":
                raise
            sys.stdout.flush()
            raise typer.Exit(offline_root.rerun(self.record["id"], self.writable, self.args))

    def __exit__(self, *exc):
        self.root.close()


def _side(arg):
    """'CTR:/path' -> ('CTR', '/path'); a host path (or '-') -> (None, path)."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None, arg
    ref, colon, path = arg.partition(":")
    return (ref, path or "/") if colon else (None, arg)


def _copy_out(root, src_path, dest, archive):
    from fastbox.runtime import container_files as cf
    parent_fd, name = root.open_parent(src_path)
    try:
        _check_exists(parent_fd, name, src_path)
        contents = src_path.endswith("/.")
        if dest == "-":
            cf.tar_out(cf.entries(parent_fd, name, name), sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        owner = None if archive else (os.getuid(), os.getgid())
        dst_dir, dst_name = _host_target(dest, parent_fd, name, contents)
        try:
            cf.write_tree(cf.entries(parent_fd, name, name), dst_dir, dst_name, owner)
        finally:
            os.close(dst_dir)
    finally:
        os.close(parent_fd)


def _copy_in(root, src, dest_path, archive):
    from fastbox.runtime import container_files as cf
    owner = None if archive else (0, 0)  # as Docker: root's, unless --archive
    if src == "-":
        fd = root.open(dest_path, os.O_PATH | os.O_DIRECTORY)
        try:
            cf.write_tree(cf.tar_entries(sys.stdin.buffer), fd, None, owner)
        finally:
            os.close(fd)
        return
    src_parent, src_name = os.path.split(os.path.normpath(os.path.abspath(src)))
    contents = src.endswith("/.")
    try:
        src_fd = os.open(src_parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError(f"could not find the file {src} on the host: {e.strerror}") from None
    try:
        _check_exists(src_fd, src_name, src)
        dst_dir, dst_name = _container_target(root, dest_path, src_fd, src_name, contents)
        try:
            cf.write_tree(cf.entries(src_fd, src_name, src_name), dst_dir, dst_name, owner)
        finally:
            os.close(dst_dir)
    finally:
        os.close(src_fd)


def _check_exists(dir_fd, name, shown):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise SpecError(f"could not find the file {shown}: no such file or directory") from None


def _is_dir(dir_fd, name):
    return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def _host_target(dest, src_dir, src_name, contents):
    """(fd of the directory to write in, the name to write; None: into it) for a copy
    to the host path dest, with Docker's rules: into an existing directory under the
    source's name (its contents with SRC/.), else as dest itself."""
    src_is_dir = _is_dir(src_dir, src_name)
    if os.path.isdir(dest):
        fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return (fd, None) if contents else (fd, src_name)
    if os.path.exists(dest) and src_is_dir:
        raise SpecError(f"cannot copy a directory to a file: {dest}")
    if dest.endswith("/"):
        raise SpecError(f"destination directory {dest} does not exist")
    parent, name = os.path.split(os.path.abspath(dest))
    try:
        return os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), name
    except OSError as e:
        raise SpecError(f"destination directory {parent} does not exist: {e.strerror}") from None


def _container_target(root, dest_path, src_dir, src_name, contents):
    """_host_target's rules inside the container: dest resolved in its root."""
    src_is_dir = _is_dir(src_dir, src_name)
    try:
        fd = root.open(dest_path, os.O_PATH)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            return fd, (None if contents else src_name)
        os.close(fd)
        if src_is_dir:
            raise SpecError(f"cannot copy a directory to a file: {dest_path}")
    elif dest_path.endswith("/"):
        raise SpecError(f"destination directory {dest_path} does not exist in the container")
    try:
        parent_fd, name = root.open_parent(dest_path)
    except FileNotFoundError:
        raise SpecError(f"destination directory of {dest_path} does not exist in the "
                        "container") from None
    return parent_fd, name


def export(container: str,
           output: Optional[str] = typer.Option(None, "--output", "-o",
                                                help="Write to this file, not stdout")):
    """The container's filesystem (its merged root, without mounts) as a tar archive."""
    from fastbox import containers
    from fastbox.runtime import container_files as cf
    if output is None and sys.stdout.isatty():
        raise SpecError("cowardly refusing to save to a terminal: use the -o flag or redirect")
    record = containers.get(container).reload().attrs
    again = ["export", *(["-o", output] if output else []), container]
    with _root_or_rerun(record, False, again) as root:
        source = cf.entries(root.fd, ".", "", skip=root.mount_points())
        if output is None:
            cf.tar_out(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        tmp = output + ".tmp"
        with open(tmp, "wb") as f:
            cf.tar_out(source, f)
        os.replace(tmp, output)


def commit(container: str,
           repository: Optional[str] = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
           change: List[str] = typer.Option([], "--change", "-c",
                                            help="Dockerfile instruction: CMD, ENTRYPOINT, ENV, "
                                                 "WORKDIR, USER, LABEL, EXPOSE"),
           message: str = typer.Option("", "--message", "-m", help="Commit message"),
           author: str = typer.Option("", "--author", "-a", help="Author"),
           pause: bool = typer.Option(True, "--pause/--no-pause", "-p",
                                      help="Pause the container while committing")):
    """Create a new image from a container's changes; print its id."""
    from fastbox import containers
    image = containers.get(container).commit(repository, change, message, author, pause)
    print(image.id)
