"""Reading the JSON-lines log the monitor writes (Docker's json-file format:
{"log": "...", "stream": "stdout"|"stderr", "time": RFC 3339}), across the files its
rotation makes: LOG.<n> (oldest) ... LOG.2, LOG.1, LOG (current).

The monitor rotates by making a new file and renaming it over LOG last (csrc/monitor/
fb_monitor.c), so LOG always exists, a file once renamed is complete, and a reader that
holds a file open can read it to its end. Files are told apart by inode: a name can move
under a reader, an inode cannot.
"""
import json
import os
import time

FOLLOW_POLL_S = 0.05
_OPEN_TRIES = 50


def read(path, follow=False, tail=None, running=lambda: False, offset=0):
    """Yields entries, oldest first. offset: position() from before a restart (only the
    new run's output), or a byte offset in the current file. With follow, keeps yielding,
    from file to file as the log rotates, until the container has stopped and the log
    has nothing more."""
    for _ in range(_OPEN_TRIES):
        chain = _wait_for_chain(path, follow, running)
        if not chain:
            return
        try:
            chain = _from_offset(chain, offset)
            current = chain.pop()
            lines = [line for f in chain for line in f.readlines()]
            lines += _complete_lines(current)
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            entries = _parsed(lines)
        finally:
            for f in chain:
                f.close()
        if entries is not None:
            break
        current.close()  # a torn view of a file in the middle of a rotation: read again
    else:
        raise OSError(f"{path}: the log rotates too fast to be read")
    yield from entries
    if follow:
        yield from _follow(path, current, running)
    else:
        current.close()


def _parsed(lines):
    """The entries of whole JSON lines, or None if one is torn (CI once read a line cut
    short in a file the monitor was rotating: never seen alone, so it is read again)."""
    try:
        return [json.loads(line) for line in lines]
    except ValueError:
        return None


def _complete_lines(f):
    """The rest of f's whole lines; a line still being written is left to read later."""
    lines = f.readlines()
    if lines and not lines[-1].endswith(b"\n"):
        f.seek(-len(lines.pop()), 1)
    return lines


def _follow(path, f, running):
    """Entries as they come: at the end of f, either the monitor has rotated (LOG is
    another inode: f is complete, go on with the files after it) or we wait."""
    try:
        while True:
            line = f.readline()
            if line.endswith(b"\n"):
                yield json.loads(line)
                continue
            f.seek(-len(line), 1)
            if os.fstat(f.fileno()).st_size < f.tell():
                f.seek(0)  # emptied in place: the monitor could not make a new file
                continue
            stopped = not running()  # before looking for a rotation: then none follows
            newer = _newer_files(path, _ino(f))
            if newer:
                for entry in _rest(f):
                    yield entry
                f.close()
                f = newer.pop()
                for older in newer:
                    with older:
                        for entry in _rest(older):
                            yield entry
                continue
            if stopped:
                yield from _rest(f)  # the monitor's last words, written before it exited
                return
            time.sleep(FOLLOW_POLL_S)
    finally:
        f.close()


def _rest(f):
    for line in f.read().splitlines():
        yield json.loads(line)


def _newer_files(path, ino):
    """If LOG is no longer inode ino: the files that came after it, oldest first (all of
    them if ino has been dropped meanwhile); else []."""
    try:
        if os.stat(path).st_ino == ino:
            return []
    except FileNotFoundError:
        return []  # removed with its container: nothing follows
    chain = open_chain(path)
    for i, f in enumerate(chain):
        if _ino(f) == ino:
            for older in chain[:i + 1]:
                older.close()
            return chain[i + 1:]
    return chain


def open_chain(path):
    """The log's files, opened, oldest first; [] if there is no log. The names are opened
    newest first and kept only if LOG is still the file opened first: a rotation in
    between would shift the names, so the opening starts again."""
    for _ in range(_OPEN_TRIES):
        opened, seen, index, missing = [], set(), 0, 0
        while missing < 2:  # a rotation renames from the oldest: at most one gap
            try:
                f = open(path if index == 0 else f"{path}.{index}", "rb")
            except FileNotFoundError:
                if index == 0:
                    return []
                missing += 1
            else:
                missing = 0
                if _ino(f) in seen:
                    f.close()
                else:
                    seen.add(_ino(f))
                    opened.append(f)
            index += 1
        try:
            if os.stat(path).st_ino == _ino(opened[0]):
                return opened[::-1]
        except FileNotFoundError:
            pass
        for f in opened:
            f.close()
    raise OSError(f"{path}: the log rotates too fast to be read")


def _ino(f):
    return os.fstat(f.fileno()).st_ino


def _from_offset(chain, offset):
    """The files from offset on, the first one positioned there."""
    if isinstance(offset, (tuple, list)):
        ino, at = offset
        for i, f in enumerate(chain):
            if _ino(f) == ino:
                for older in chain[:i]:
                    older.close()
                chain = chain[i:]
                chain[0].seek(at)
                return chain
        return chain  # that file has been rotated away: all that is left is newer
    if offset:
        for older in chain[:-1]:
            older.close()
        chain = chain[-1:]
        chain[0].seek(offset)
    return chain


def _wait_for_chain(path, follow, running):
    """The log's files; when following a container that has just started, wait for the
    monitor to create the log."""
    while True:
        chain = open_chain(path)
        if chain or not (follow and running()):
            return chain
        time.sleep(FOLLOW_POLL_S)


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def position(path):
    """(inode, size) of the current log file: read(offset=...) starts there, even if the
    file has been rotated since. (0, 0) if there is no log yet."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_size)


def format_entry(entry, timestamps=False):
    """(stream, bytes) as `fastbox logs` prints it."""
    text = entry["log"]
    if timestamps:
        text = f"{entry['time']} {text}"
    return entry["stream"], text.encode("utf-8", "surrogateescape")
