"""Small file operations of the image store and its ingest area: atomic writes, hashed
copies, listings that tolerate a missing directory, and disk usage. Neither module imports
the other for these."""
import os


def write_hashed(src, path):
    """Copy the binary stream SRC into the new file PATH, synced: (sha256 digest, size,
    first 4 bytes), for the caller to check before the file gets any name that counts."""
    import hashlib
    hasher, total, head = hashlib.sha256(), 0, b""
    with open(path, "xb") as out:
        while chunk := src.read(1 << 20):
            head = head or chunk[:4]
            hasher.update(chunk)
            out.write(chunk)
            total += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return "sha256:" + hasher.hexdigest(), total, head


def write_atomic(path, data, sync=False):
    tmp = tmp_name(os.path.join(os.path.dirname(path), ""))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink(tmp)
        raise


def tmp_name(directory):
    return directory + ".tmp-" + os.urandom(6).hex()


def listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def disk_usage(path):
    """Bytes allocated to a file or a tree, hardlinked files once; 0 if it is gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    total, seen = st.st_blocks * 512, set()
    if not os.path.isdir(path) or os.path.islink(path):
        return total
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if st.st_nlink > 1:
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            total += st.st_blocks * 512
        for name in dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total
