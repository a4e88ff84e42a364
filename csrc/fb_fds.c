/* fd hygiene for the processes that become a container's: no fd of the host's reaches
 * the program, and none stays open while the process can be seen from the container
 * (CVE-2024-21626). close_range does it in one call; where the kernel refuses it (no
 * CLOSE_RANGE_CLOEXEC before 5.11, a seccomp filter of the caller's), the open fds are
 * walked in /proc/self/fd instead. Any failure is the caller's failure: an fd that might
 * leak is never ignored. Raw syscalls only: the caller may share its parent's memory. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include "fb_child.h"
#include "fb_sys.h"

#define FB_CLOSE_RANGE_CLOEXEC (1U << 2)

struct fb_dirent64 {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

static int parse_fd(const char *s)
{
    int v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int kept(int fd, const int *keep, int n_keep)
{
    for (int i = 0; i < n_keep; i++)
        if (keep[i] == fd)
            return 1;
    return 0;
}

/* Closes (or marks close-on-exec) every open fd >= 3 not in keep. */
static long walk_fds(const int *keep, int n_keep, int cloexec)
{
    long dir = FB_SYS4(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dir < 0)
        return dir;
    char buf[2048];
    long n, r = 0;
    while (r == 0 && (n = FB_SYS3(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n && r == 0;) {
            struct fb_dirent64 *d = (struct fb_dirent64 *)(buf + off);
            off += d->reclen;
            int fd = parse_fd(d->name);
            if (fd < 3 || fd == dir || kept(fd, keep, n_keep))
                continue;
            r = cloexec ? FB_SYS3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC) : FB_SYS1(SYS_close, fd);
            if (r == -EBADF) /* closed meanwhile by another thread's exec: gone is fine */
                r = 0;
        }
    }
    if (r == 0 && n < 0)
        r = n;
    FB_SYS1(SYS_close, dir);
    return r;
}

int fb_fds_cloexec(struct fb_error *e)
{
    long r = FB_SYS3(SYS_close_range, 3, ~0U, FB_CLOSE_RANGE_CLOEXEC);
    if (r < 0)
        r = walk_fds(NULL, 0, 1);
    return r < 0 ? fb_fail(e, r, FB_PHASE_STDIO, "mark fds close-on-exec", NULL) : 0;
}

/* Closes every fd >= 3 but those in keep (at most 16), which lose close-on-exec. */
int fb_fds_close_except(const int *keep, int n_keep, struct fb_error *e)
{
    int sorted[16], n = 0;
    for (int i = 0; i < n_keep && n < 16; i++) {
        int fd = keep[i], j = n;
        if (fd < 3 || kept(fd, sorted, n))
            continue;
        for (; j > 0 && sorted[j - 1] > fd; j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = fd;
        n++;
    }
    long r = 0;
    unsigned lo = 3;
    for (int i = 0; i <= n && r == 0; i++) {
        unsigned hi = i < n ? (unsigned)sorted[i] : 0U;
        if (i == n || hi > lo)
            r = FB_SYS3(SYS_close_range, lo, i < n ? hi - 1 : ~0U, 0);
        if (i < n)
            lo = hi + 1;
    }
    if (r < 0)
        r = walk_fds(sorted, n, 0);
    for (int i = 0; i < n && r >= 0; i++)
        r = FB_SYS3(SYS_fcntl, sorted[i], F_SETFD, 0);
    return r < 0 ? fb_fail(e, r, FB_PHASE_STDIO, "close inherited fds", NULL) : 0;
}
