/* Mounts made by the container child: the overlay root (new mount API with a mount(2)
 * fallback), volumes, /proc, /dev, /sys, tmpfs, masked and read-only paths.
 *
 * Volumes are opened as detached trees before pivot_root and attached after it, so every
 * target path is resolved inside the new root: an image's symlinks cannot send a mount
 * to the host (CVE-2021-30465). */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include "fb_child.h"
#include "fb_sys.h"

/* Values of the new mount API, spelled out so the build does not depend on which of
 * glibc's and the kernel's headers declare them. */
#define FB_FSOPEN_CLOEXEC 0x1
#define FB_FSCONFIG_SET_FLAG 0
#define FB_FSCONFIG_SET_STRING 1
#define FB_FSCONFIG_CMD_CREATE 6
#define FB_FSMOUNT_CLOEXEC 0x1
#define FB_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define FB_OPEN_TREE_CLONE 0x1
#define FB_AT_RECURSIVE 0x8000
#define FB_AT_EMPTY_PATH 0x1000
#define FB_MOUNT_ATTR_RDONLY 0x1

struct fb_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

#define FB_LEGACY_OPTS_MAX 4096

static long sys_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                      const char *data)
{
    return FB_SYS5(SYS_mount, src, dst, type, flags, data);
}

static int append(char *buf, int pos, int cap, const char *s)
{
    int n = (int)strlen(s);
    if (pos < 0 || pos + n >= cap)
        return -1;
    memcpy(buf + pos, s, n + 1);
    return pos + n;
}

int fb_mkdir_p(const char *path, int mode)
{
    char buf[FB_PATH_MAX];
    int n = (int)strlen(path);
    if (n >= FB_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (int i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        long r = FB_SYS2(SYS_mkdir, buf, mode);
        if (r < 0 && r != -EEXIST)
            return (int)r;
        buf[i] = saved;
    }
    return 0;
}

/* Legacy mount(2): one option string, limited to a page. */
static int overlay_legacy(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    char opts[FB_LEGACY_OPTS_MAX];
    int pos = append(opts, 0, sizeof opts, "lowerdir=");
    for (int i = 0; i < p->n_lowers; i++) {
        if (i)
            pos = append(opts, pos, sizeof opts, ":");
        pos = append(opts, pos, sizeof opts, p->lowers[i]);
    }
    pos = append(opts, pos, sizeof opts, ",upperdir=");
    pos = append(opts, pos, sizeof opts, p->upper);
    pos = append(opts, pos, sizeof opts, ",workdir=");
    pos = append(opts, pos, sizeof opts, p->work);
    for (int i = 0; i < p->n_overlay_opts; i++) {
        pos = append(opts, pos, sizeof opts, ",");
        pos = append(opts, pos, sizeof opts, p->overlay_opts[i]);
    }
    if (pos < 0)
        return fb_fail(&c->report->err, E2BIG, FB_PHASE_ROOTFS, "overlay options too long for mount(2)", NULL);
    long r = sys_mount("overlay", p->rootfs, "overlay", 0, opts);
    if (r < 0)
        return fb_fail(&c->report->err, r, FB_PHASE_ROOTFS, "mount overlay on", p->rootfs);
    return 0;
}

static long fsconfig_str(int fd, const char *key, const char *value)
{
    return FB_SYS5(SYS_fsconfig, fd, FB_FSCONFIG_SET_STRING, key, value, 0);
}

/* An option is "flag" or "key=value". */
static long fsconfig_opt(int fd, const char *opt)
{
    char key[64];
    const char *eq = strchr(opt, '=');
    if (!eq)
        return FB_SYS5(SYS_fsconfig, fd, FB_FSCONFIG_SET_FLAG, opt, 0, 0);
    size_t n = (size_t)(eq - opt);
    if (n >= sizeof key)
        return -EINVAL;
    memcpy(key, opt, n);
    key[n] = '\0';
    return fsconfig_str(fd, key, eq + 1);
}

/* lowerdir+ (kernel 6.8) takes one layer per call, so no length limit applies; older
 * kernels get the joined string, which fsconfig caps at 256 bytes. */
static long fsconfig_lowers(int fd, const struct fb_plan *p)
{
    long r = fsconfig_str(fd, "lowerdir+", p->lowers[0]);
    if (r == 0) {
        for (int i = 1; i < p->n_lowers && r == 0; i++)
            r = fsconfig_str(fd, "lowerdir+", p->lowers[i]);
        return r;
    }
    char joined[256];
    int pos = 0;
    for (int i = 0; i < p->n_lowers; i++) {
        if (i)
            pos = append(joined, pos, sizeof joined, ":");
        pos = append(joined, pos, sizeof joined, p->lowers[i]);
    }
    return pos < 0 ? -E2BIG : fsconfig_str(fd, "lowerdir", joined);
}

static int overlay_fsmount(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    long fd = FB_SYS2(SYS_fsopen, "overlay", FB_FSOPEN_CLOEXEC);
    if (fd < 0)
        return (int)fd; /* no new mount API: caller falls back */
    long r = fsconfig_lowers((int)fd, p);
    if (r == 0)
        r = fsconfig_str((int)fd, "upperdir", p->upper);
    if (r == 0)
        r = fsconfig_str((int)fd, "workdir", p->work);
    for (int i = 0; i < p->n_overlay_opts && r == 0; i++)
        r = fsconfig_opt((int)fd, p->overlay_opts[i]);
    if (r == 0)
        r = FB_SYS5(SYS_fsconfig, fd, FB_FSCONFIG_CMD_CREATE, 0, 0, 0);
    long mfd = r == 0 ? FB_SYS3(SYS_fsmount, fd, FB_FSMOUNT_CLOEXEC, 0) : r;
    FB_SYS1(SYS_close, fd);
    if (mfd < 0)
        return (int)mfd;
    r = FB_SYS5(SYS_move_mount, mfd, "", AT_FDCWD, p->rootfs, FB_MOVE_MOUNT_F_EMPTY_PATH);
    FB_SYS1(SYS_close, mfd);
    return (int)r;
}

static int mount_scratch(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    long r = sys_mount("tmpfs", p->scratch, "tmpfs", MS_NOSUID | MS_NODEV, p->scratch_data);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_ROOTFS, "mount scratch tmpfs on", p->scratch);
    const char *dirs[3] = {p->upper, p->work, p->rootfs};
    for (int i = 0; i < 3; i++) {
        r = FB_SYS2(SYS_mkdir, dirs[i], 0755);
        if (r < 0 && r != -EEXIST)
            return fb_fail(e, r, FB_PHASE_ROOTFS, "mkdir", dirs[i]);
    }
    return 0;
}

int fb_mount_rootfs(struct fb_child *c)
{
    struct fb_error *e = &c->report->err;
    /* Nothing this namespace mounts may propagate back to the host. */
    long r = sys_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_ROOTFS, "make / private", NULL);
    if (c->plan->scratch && mount_scratch(c) < 0)
        return -e->err;
    int rc = overlay_fsmount(c);
    if (rc == -ENOSYS || rc == -EINVAL || rc == -E2BIG)
        return overlay_legacy(c);
    if (rc < 0)
        return fb_fail(e, rc, FB_PHASE_ROOTFS, "mount overlay on", c->plan->rootfs);
    return 0;
}

int fb_open_volumes(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    for (int i = 0; i < p->n_mounts; i++) {
        const struct fb_mount *m = &p->mounts[i];
        c->vol_fds[i] = -1;
        if (m->kind != FB_MOUNT_BIND_DIR && m->kind != FB_MOUNT_BIND_FILE)
            continue;
        long fd = FB_SYS3(SYS_open_tree, AT_FDCWD, m->src,
                          FB_OPEN_TREE_CLONE | O_CLOEXEC | FB_AT_RECURSIVE);
        if (fd < 0)
            return fb_fail(&c->report->err, fd, FB_PHASE_MOUNTS, "open volume", m->src);
        c->vol_fds[i] = (int)fd;
        if (!m->readonly)
            continue;
        struct fb_mount_attr attr = {.attr_set = FB_MOUNT_ATTR_RDONLY};
        long r = FB_SYS5(SYS_mount_setattr, fd, "", FB_AT_EMPTY_PATH | FB_AT_RECURSIVE, &attr,
                         sizeof attr);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "make volume read-only", m->src);
    }
    return 0;
}

/* Mount, creating the mount point first when the image lacks it. */
static int mount_at(struct fb_child *c, const char *src, const char *dst, const char *type,
                    unsigned long flags, const char *data)
{
    long r = sys_mount(src, dst, type, flags, data);
    if (r == -ENOENT) {
        fb_mkdir_p(dst, 0755);
        r = sys_mount(src, dst, type, flags, data);
    }
    if (r < 0)
        return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mount", dst);
    return 0;
}

static const struct {
    const char *name;
    unsigned major, minor;
} fb_devices[] = {
    {"/dev/null", 1, 3},    {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
    {"/dev/random", 1, 8},  {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

static const struct {
    const char *target, *link;
} fb_dev_links[] = {
    {"pts/ptmx", "/dev/ptmx"},           {"/proc/self/fd", "/dev/fd"},
    {"/proc/self/fd/0", "/dev/stdin"},   {"/proc/self/fd/1", "/dev/stdout"},
    {"/proc/self/fd/2", "/dev/stderr"},  {"/proc/kcore", "/dev/core"},
};

static int mount_dev(struct fb_child *c)
{
    const unsigned long nosuid_noexec = MS_NOSUID | MS_NOEXEC | MS_NODEV;
    if (mount_at(c, "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
        return -1;
    for (unsigned i = 0; i < sizeof fb_devices / sizeof fb_devices[0]; i++) {
        long r = FB_SYS3(SYS_mknod, fb_devices[i].name, S_IFCHR | 0666,
                         makedev(fb_devices[i].major, fb_devices[i].minor));
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mknod", fb_devices[i].name);
    }
    for (unsigned i = 0; i < sizeof fb_dev_links / sizeof fb_dev_links[0]; i++)
        FB_SYS2(SYS_symlink, fb_dev_links[i].target, fb_dev_links[i].link);
    /* /dev is our own new tmpfs: its mount points are made, not looked for first */
    const char *const points[] = {"/dev/pts", "/dev/shm", "/dev/mqueue"};
    for (unsigned i = 0; i < sizeof points / sizeof points[0]; i++)
        FB_SYS2(SYS_mkdir, points[i], 0755);
    if (mount_at(c, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return -1;
    if (mount_at(c, "shm", "/dev/shm", "tmpfs", nosuid_noexec, "mode=1777,size=65536k") < 0)
        return -1;
    return mount_at(c, "mqueue", "/dev/mqueue", "mqueue", nosuid_noexec, NULL);
}

/* Our cgroup namespace is already in place, so each hierarchy shows the container's
 * own cgroup as its root: runtimes (the JVM, Go) read their limits there. */
static int mount_cgroup_v1(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    const unsigned long safe = MS_NOSUID | MS_NOEXEC | MS_NODEV;
    char path[256];
    if (p->n_cgroup_v1 == 0)
        return 0;
    if (mount_at(c, "tmpfs", "/sys/fs/cgroup", "tmpfs", safe, "mode=755,size=64k") < 0)
        return -1;
    for (int i = 0; i < p->n_cgroup_v1; i++) {
        int pos = append(path, 0, sizeof path, "/sys/fs/cgroup/");
        if (append(path, pos, sizeof path, p->cgroup_v1_dirs[i]) < 0)
            return fb_fail(&c->report->err, ENAMETOOLONG, FB_PHASE_MOUNTS, "cgroup dir", p->cgroup_v1_dirs[i]);
        FB_SYS2(SYS_mkdir, path, 0755);
        if (mount_at(c, "cgroup", path, "cgroup", safe | MS_RDONLY, p->cgroup_v1_opts[i]) < 0)
            return -1;
    }
    long r = sys_mount(NULL, "/sys/fs/cgroup", NULL, MS_REMOUNT | MS_RDONLY | safe, "mode=755,size=64k");
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "remount read-only", "/sys/fs/cgroup") : 0;
}

int fb_mount_system(struct fb_child *c)
{
    const unsigned long safe = MS_NOSUID | MS_NOEXEC | MS_NODEV;
    if (mount_at(c, "proc", "/proc", "proc", safe, NULL) < 0)
        return -1;
    if (mount_dev(c) < 0)
        return -1;
    if (mount_at(c, "sysfs", "/sys", "sysfs", safe | MS_RDONLY, NULL) < 0)
        return -1;
    if (c->plan->mount_cgroup2 &&
        mount_at(c, "cgroup2", "/sys/fs/cgroup", "cgroup2", safe | MS_RDONLY, NULL) < 0)
        return -1;
    return mount_cgroup_v1(c);
}

static int attach_volume(struct fb_child *c, int i)
{
    const struct fb_mount *m = &c->plan->mounts[i];
    struct fb_error *e = &c->report->err;
    if (m->kind == FB_MOUNT_BIND_FILE) {
        char parent[FB_PATH_MAX];
        size_t n = strlen(m->dst);
        if (n >= sizeof parent)
            return fb_fail(e, ENAMETOOLONG, FB_PHASE_MOUNTS, "volume target", m->dst);
        memcpy(parent, m->dst, n + 1);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = '\0';
            fb_mkdir_p(parent, 0755);
        }
        long fd = FB_SYS4(SYS_openat, AT_FDCWD, m->dst, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd >= 0)
            FB_SYS1(SYS_close, fd);
    } else {
        fb_mkdir_p(m->dst, 0755);
    }
    long r = FB_SYS5(SYS_move_mount, c->vol_fds[i], "", AT_FDCWD, m->dst, FB_MOVE_MOUNT_F_EMPTY_PATH);
    FB_SYS1(SYS_close, c->vol_fds[i]);
    c->vol_fds[i] = -1;
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_MOUNTS, "mount volume on", m->dst);
    return 0;
}

int fb_mount_volumes(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    for (int i = 0; i < p->n_mounts; i++) {
        const struct fb_mount *m = &p->mounts[i];
        int rc = m->kind == FB_MOUNT_TMPFS
                     ? mount_at(c, "tmpfs", m->dst, "tmpfs",
                                MS_NOSUID | MS_NODEV | MS_NOEXEC | (m->readonly ? MS_RDONLY : 0), m->data)
                     : attach_volume(c, i);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* A masked file gets /dev/null bound over it. The masked directories share one empty
 * read-only tmpfs: mounted on the first, bound over the rest (a bind makes no new
 * superblock). A path this container's /proc or /sys lacks needs no mask: 1. */
static int mask_result(struct fb_child *c, long r, const char *path)
{
    if (r == -ENOENT)
        return 1;
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mask", path) : 0;
}

static int mask_file(struct fb_child *c, const char *path)
{
    return mask_result(c, sys_mount("/dev/null", path, NULL, MS_BIND, NULL), path);
}

static int mask_dir(struct fb_child *c, const char *path, const char *shared)
{
    long r = shared ? sys_mount(shared, path, NULL, MS_BIND, NULL)
                    : sys_mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
    return mask_result(c, r, path);
}

static int readonly_one(struct fb_child *c, const char *path)
{
    long r = sys_mount(path, path, NULL, MS_BIND | MS_REC, NULL);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        r = sys_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "make read-only", path) : 0;
}

int fb_mask_paths(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    for (int i = 0; i < p->n_readonly; i++)
        if (readonly_one(c, p->readonly_paths[i]) < 0)
            return -1;
    for (int i = 0; i < p->n_masked; i++)
        if (mask_file(c, p->masked[i]) < 0)
            return -1;
    const char *shared = NULL;  /* the masked directory holding the shared tmpfs */
    for (int i = 0; i < p->n_masked_dirs; i++) {
        int rc = mask_dir(c, p->masked_dirs[i], shared);
        if (rc < 0)
            return -1;
        if (rc == 0 && !shared)
            shared = p->masked_dirs[i];
    }
    return 0;
}

/* Last step on the filesystem: the working directory (Docker creates a missing one),
 * then the read-only root. */
int fb_finish_rootfs(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    if (p->cwd && p->cwd[0]) {
        long r = FB_SYS1(SYS_chdir, p->cwd);
        if (r == -ENOENT) {
            fb_mkdir_p(p->cwd, 0755);
            r = FB_SYS1(SYS_chdir, p->cwd);
        }
        if (r < 0)
            return fb_fail(e, r, FB_PHASE_MOUNTS, "working directory", p->cwd);
    }
    if (p->readonly_root) {
        long r = sys_mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
        if (r < 0)
            return fb_fail(e, r, FB_PHASE_MOUNTS, "remount / read-only", NULL);
    }
    return 0;
}
