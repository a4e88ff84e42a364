"""A regular file's bytes from one fd to another, in the kernel: copy_file_range (reflinks
or server-side copies where the filesystem has them), sendfile where it does not (across
filesystems on older kernels, special files)."""
import errno
import os


def copy_fd(src, dst):
    """From src's offset to its end onto dst."""
    while True:
        try:
            n = os.copy_file_range(src, dst, 1 << 30)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = os.sendfile(dst, src, None, 1 << 30)
        if n == 0:
            return
