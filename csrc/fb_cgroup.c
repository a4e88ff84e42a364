/* Parent-side cgroup work: make the container's cgroups, write its limits, and on v1
 * move the child in (one write per hierarchy). Paths and values come from the plan. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fb_cgroup.h"

/* A value of several lines goes in one write(2) per line, on one open file: a v1
 * devices.allow or devices.deny takes one rule per write. */
static int write_file(const char *path, const char *value, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    const char *end = value + len;
    int err = 0;
    do {
        const char *nl = memchr(value, '\n', (size_t)(end - value));
        size_t line = nl ? (size_t)(nl - value) : (size_t)(end - value);
        ssize_t n = write(fd, value, line);
        err = n < 0 ? errno : (size_t)n != line ? EIO : 0;
        value += line + (nl != NULL);
    } while (!err && value < end);
    close(fd);
    return -err;
}

int fb_cgroup_prepare(const struct fb_plan *p, struct fb_error *e)
{
    for (int i = 0; i < p->n_cg_mkdirs; i++)
        if (mkdir(p->cg_mkdirs[i], 0755) < 0 && errno != EEXIST)
            return fb_fail(e, errno, FB_PHASE_CGROUP_SETUP, "mkdir", p->cg_mkdirs[i]);
    for (int i = 0; i < p->n_cg_writes; i++) {
        int rc = write_file(p->cg_files[i], p->cg_values[i], strlen(p->cg_values[i]));
        if (rc < 0)
            return fb_fail(e, rc, FB_PHASE_CGROUP_SETUP, "write", p->cg_files[i]);
    }
    return 0;
}

int fb_cgroup_open_into(const struct fb_plan *p, int *fd, struct fb_error *e)
{
    *fd = -1;
    if (!p->cg_into)
        return 0;
    /* Not O_PATH: BPF_PROG_ATTACH (the device program) refuses an O_PATH fd. */
    *fd = open(p->cg_into, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return fb_fail(e, errno, FB_PHASE_CGROUP_SETUP, "open", p->cg_into);
    return 0;
}
