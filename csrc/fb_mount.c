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

static void close_fd(long *fd)
{
    if (*fd >= 0)
        FB_SYS1(SYS_close, *fd);
}
#define AUTO_FD __attribute__((cleanup(close_fd))) long

/* The container's /etc files, into the upper layer of its scratch tmpfs, which is new
 * and ours alone: nothing in it can be a link planted by anyone. */
static int write_etc_files(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    AUTO_FD upper = FB_SYS3(SYS_openat, AT_FDCWD, p->upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (upper < 0)
        return fb_fail(e, upper, FB_PHASE_ROOTFS, "open the upper layer", p->upper);
    long r = FB_SYS3(SYS_mkdirat, upper, "etc", 0755);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_ROOTFS, "mkdir /etc in the upper layer", p->upper);
    AUTO_FD etc = FB_SYS3(SYS_openat, upper, "etc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (etc < 0)
        return fb_fail(e, etc, FB_PHASE_ROOTFS, "open /etc in the upper layer", p->upper);
    for (int i = 0; i < p->n_etc_files; i++) {
        AUTO_FD fd = FB_SYS4(SYS_openat, etc, p->etc_names[i],
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return fb_fail(e, fd, FB_PHASE_ROOTFS, "create /etc file", p->etc_names[i]);
        size_t len = strlen(p->etc_texts[i]);
        r = len ? FB_SYS3(SYS_write, fd, p->etc_texts[i], len) : 0;
        if (r >= 0 && (size_t)r != len)
            r = -EIO;  /* a tmpfs takes a short text whole or fails */
        if (r < 0)
            return fb_fail(e, r, FB_PHASE_ROOTFS, "write /etc file", p->etc_names[i]);
    }
    return 0;
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
    return p->n_etc_files ? write_etc_files(c) : 0;
}

int fb_mount_rootfs(struct fb_child *c)
{
    struct fb_error *e = &c->report->err;
    /* Nothing this namespace mounts may propagate back to the host. */
    unsigned long prop = c->plan->rootfs_propagation ? c->plan->rootfs_propagation : MS_PRIVATE;
    long r = sys_mount(NULL, "/", NULL, MS_REC | prop, NULL);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_ROOTFS, "make / private", NULL);
    if (c->plan->rootfs_bind) { /* an OCI bundle's rootfs directory, as runc binds it */
        r = sys_mount(c->plan->rootfs_bind, c->plan->rootfs, NULL, MS_BIND | MS_REC, NULL);
        return r < 0 ? fb_fail(e, r, FB_PHASE_ROOTFS, "bind rootfs", c->plan->rootfs_bind) : 0;
    }
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
        if (!m->readonly && !m->attrs)
            continue;
        struct fb_mount_attr attr = {.attr_set = (m->readonly ? FB_MOUNT_ATTR_RDONLY : 0) | (m->attrs & 0xe)};
        long r = FB_SYS5(SYS_mount_setattr, fd, "", FB_AT_EMPTY_PATH | FB_AT_RECURSIVE, &attr,
                         sizeof attr);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "set the volume's flags (ro, nosuid, nodev, noexec)", m->src);
    }
    return 0;
}

/* ---------------------------------------------------------------- after pivot_root
 *
 * Every path mounted over or onto inside the root is opened first, with openat2 from a
 * fd of the root, and the mount goes onto that fd (move_mount with an empty path): a
 * string is never resolved twice, so nothing can swap a path between our check and our
 * mount, and no path reaches the host through a /proc/self/fd magic link (the fds this
 * child inherited). What we mount over or bind from is ours, so it may contain no symlink
 * at all (STRICT); volume, tmpfs and working-directory paths are the image's, whose
 * symlinks resolve inside its root as Docker does (/var/run -> /run) but never through a
 * magic link (SCOPED). Missing components are made one at a time below the fd of their
 * parent, never by path. The null device the masks bind is the one we made, checked to
 * be 1:3 (CVE-2025-31133), and no volume may cover /dev, its devices or devpts. */

#define FB_RESOLVE_NO_MAGICLINKS 0x02
#define FB_RESOLVE_NO_SYMLINKS 0x04
#define FB_RESOLVE_IN_ROOT 0x10
#define STRICT (FB_RESOLVE_IN_ROOT | FB_RESOLVE_NO_MAGICLINKS | FB_RESOLVE_NO_SYMLINKS)
#define SCOPED (FB_RESOLVE_IN_ROOT | FB_RESOLVE_NO_MAGICLINKS)
#define FB_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define FB_MOUNT_ATTR_NOSUID 0x2
#define FB_MOUNT_ATTR_NODEV 0x4
#define FB_MOUNT_ATTR_NOEXEC 0x8
#define FB_MOUNT_ATTR_STRICTATIME 0x20
#define SAFE_ATTRS (FB_MOUNT_ATTR_NOSUID | FB_MOUNT_ATTR_NODEV | FB_MOUNT_ATTR_NOEXEC)
#define FB_PROC_SUPER_MAGIC 0x9fa0
#define FB_DEVPTS_SUPER_MAGIC 0x1cd1

struct fb_open_how {
    uint64_t flags, mode, resolve;
};

static long open_in(long dirfd, const char *path, int flags, uint64_t resolve)
{
    struct fb_open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .resolve = resolve};
    return FB_SYS4(SYS_openat2, dirfd, path, &how, sizeof how);
}

static long open_root(struct fb_child *c)
{
    long fd = FB_SYS3(SYS_openat, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? fb_fail(&c->report->err, fd, FB_PHASE_MOUNTS, "open", "/") : fd;
}

/* Attach the detached mount (or tree) fd onto the opened target. */
static long attach(long mnt, long target)
{
    return FB_SYS5(SYS_move_mount, mnt, "", target, "",
                   FB_MOVE_MOUNT_F_EMPTY_PATH | FB_MOVE_MOUNT_T_EMPTY_PATH);
}

/* The opened target of path inside root, made when missing: directories, or (file) an
 * empty file as its last component. With -ENOENT the deepest existing ancestor is found
 * by resolving ever shorter prefixes in full, so the image's symlinks mean the same as
 * for the whole path; each missing component is then made and opened below its
 * parent's fd, following no symlink (one planted there by a racing process is refused). */
static long open_target(long root, const char *path, uint64_t resolve, int file)
{
    /* A mount target that is a symlink is opened as the symlink, for check_target to refuse */
    long fd = open_in(root, path, O_PATH | O_NOFOLLOW, resolve);
    if (fd != -ENOENT)
        return fd;
    char buf[FB_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    size_t end = n;
    long parent = -ENOENT;
    while (parent == -ENOENT && end > 0) {
        while (end > 0 && buf[end - 1] != '/')
            end--; /* buf[end..] is the first missing component */
        while (end > 1 && buf[end - 2] == '/')
            end--;
        char saved = buf[end];
        buf[end] = '\0';
        parent = open_in(root, end ? buf : "/", O_PATH | O_DIRECTORY, resolve);
        buf[end] = saved;
        if (parent == -ENOENT)
            end--; /* past the slash: try the next shorter prefix */
    }
    if (parent < 0)
        return parent;
    for (char *name = buf + end; *name;) {
        char *slash = strchr(name, '/');
        if (slash)
            *slash = '\0';
        int last = !slash || !slash[1];
        long r;
        if (!*name) {
            r = 0; /* an empty component, from a doubled slash */
        } else if (last && file) {
            r = FB_SYS4(SYS_openat, parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (r >= 0)
                FB_SYS1(SYS_close, r);
        } else {
            r = FB_SYS3(SYS_mkdirat, parent, name, 0755);
        }
        long next = r < 0 && r != -EEXIST
                        ? r
                        : open_in(parent, *name ? name : ".", O_PATH | O_NOFOLLOW | (last && file ? 0 : O_DIRECTORY),
                                  FB_RESOLVE_NO_SYMLINKS | FB_RESOLVE_NO_MAGICLINKS);
        FB_SYS1(SYS_close, parent);
        if (next < 0)
            return next;
        parent = next;
        if (!slash)
            break;
        name = slash + 1;
    }
    return parent;
}

/* Applies "key=value,flag,..." to a filesystem context. */
static long fsconfig_opts(long fs, const char *opts)
{
    char one[256];
    while (opts && *opts) {
        const char *comma = strchr(opts, ',');
        size_t n = comma ? (size_t)(comma - opts) : strlen(opts);
        if (n >= sizeof one)
            return -EINVAL;
        memcpy(one, opts, n);
        one[n] = '\0';
        long r = n ? fsconfig_opt((int)fs, one) : 0;
        if (r < 0)
            return r;
        opts = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* A new filesystem of type, as a detached mount with attrs. */
static long new_fs(const char *type, const char *opts, unsigned attrs)
{
    AUTO_FD fs = FB_SYS2(SYS_fsopen, type, FB_FSOPEN_CLOEXEC);
    if (fs < 0)
        return fs;
    long r = fsconfig_str((int)fs, "source", type); /* what /proc/mounts names it */
    if (r == 0)
        r = fsconfig_opts(fs, opts);
    if (r == 0)
        r = FB_SYS5(SYS_fsconfig, fs, FB_FSCONFIG_CMD_CREATE, 0, 0, 0);
    return r < 0 ? r : FB_SYS3(SYS_fsmount, fs, FB_FSMOUNT_CLOEXEC, attrs);
}

/* A new filesystem mounted on target; returns its mount fd (the caller closes it). */
static long mount_new_on(struct fb_child *c, long target, const char *type, const char *opts,
                         unsigned attrs, const char *where)
{
    if (target < 0)
        return fb_fail(&c->report->err, target, FB_PHASE_MOUNTS, "mount point", where);
    long mnt = new_fs(type, opts, attrs);
    long r = mnt < 0 ? mnt : attach(mnt, target);
    if (r < 0) {
        if (mnt >= 0)
            FB_SYS1(SYS_close, mnt);
        return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mount", where);
    }
    return mnt;
}

static int mount_new(struct fb_child *c, long root, const char *path, const char *type,
                     const char *opts, unsigned attrs)
{
    AUTO_FD target = open_target(root, path, STRICT, 0);
    AUTO_FD mnt = mount_new_on(c, target, type, opts, attrs, path);
    return mnt < 0 ? -1 : 0;
}

static const struct {
    const char *name;
    unsigned major, minor;
} fb_devices[] = {
    {"null", 1, 3},    {"zero", 1, 5},    {"full", 1, 7},
    {"random", 1, 8},  {"urandom", 1, 9}, {"tty", 5, 0},
};

static const struct {
    const char *target, *link;
} fb_dev_links[] = {
    {"pts/ptmx", "ptmx"},           {"/proc/self/fd", "fd"},
    {"/proc/self/fd/0", "stdin"},   {"/proc/self/fd/1", "stdout"},
    {"/proc/self/fd/2", "stderr"},  {"/proc/kcore", "core"},
};

/* A --device node in the detached /dev: its parent directories (mode 755), the node,
 * its owner. The path was checked in Python (relative, no "." or "..", clear of the
 * names made here); the tree is ours alone until it is attached. */
static int make_devnode(struct fb_child *c, long dev, const struct fb_devnode *d)
{
    char buf[FB_PATH_MAX];
    size_t n = strlen(d->path);
    if (n == 0 || n >= sizeof buf)
        return fb_fail(&c->report->err, EINVAL, FB_PHASE_MOUNTS, "device path", d->path);
    memcpy(buf, d->path, n + 1);
    for (char *slash = strchr(buf, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        long r = FB_SYS3(SYS_mkdirat, dev, buf, 0755);
        *slash = '/';
        if (r < 0 && r != -EEXIST)
            return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mkdir /dev/", buf);
    }
    long r = FB_SYS4(SYS_mknodat, dev, buf, d->mode, makedev(d->major, d->minor));
    if (r == 0)
        r = FB_SYS5(SYS_fchownat, dev, buf, d->uid, d->gid, AT_SYMLINK_NOFOLLOW);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mknod /dev/", buf) : 0;
}

/* /dev is filled while it is still detached, unreachable by anyone; then attached, and
 * its own mounts go on directories opened below its fd. */
static int mount_dev(struct fb_child *c, long root)
{
    struct fb_error *e = &c->report->err;
    AUTO_FD target = open_target(root, "/dev", STRICT, 0);
    if (target < 0)
        return fb_fail(e, target, FB_PHASE_MOUNTS, "mount point", "/dev");
    AUTO_FD dev = new_fs("tmpfs", "mode=755,size=65536k", FB_MOUNT_ATTR_NOSUID | FB_MOUNT_ATTR_STRICTATIME);
    if (dev < 0)
        return fb_fail(e, dev, FB_PHASE_MOUNTS, "mount tmpfs on", "/dev");
    for (unsigned i = 0; i < sizeof fb_devices / sizeof fb_devices[0]; i++) {
        long r = FB_SYS4(SYS_mknodat, dev, fb_devices[i].name, S_IFCHR | 0666,
                         makedev(fb_devices[i].major, fb_devices[i].minor));
        if (r < 0)
            return fb_fail(e, r, FB_PHASE_MOUNTS, "mknod /dev/", fb_devices[i].name);
    }
    for (unsigned i = 0; i < sizeof fb_dev_links / sizeof fb_dev_links[0]; i++)
        FB_SYS3(SYS_symlinkat, fb_dev_links[i].target, dev, fb_dev_links[i].link);
    for (int i = 0; i < c->plan->n_devnodes; i++)
        if (make_devnode(c, dev, &c->plan->devnodes[i]) < 0)
            return -1;
    static const char *const points[] = {"pts", "shm", "mqueue"};
    for (unsigned i = 0; i < sizeof points / sizeof points[0]; i++)
        FB_SYS3(SYS_mkdirat, dev, points[i], 0755);
    long r = attach(dev, target);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_MOUNTS, "mount tmpfs on", "/dev");
    static const struct {
        const char *dir, *type, *opts, *where;
        unsigned attrs;
    } subs[] = {
        {"pts", "devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", "/dev/pts",
         FB_MOUNT_ATTR_NOSUID | FB_MOUNT_ATTR_NOEXEC},
        {"shm", "tmpfs", "mode=1777,size=65536k", "/dev/shm", SAFE_ATTRS},
        {"mqueue", "mqueue", NULL, "/dev/mqueue", SAFE_ATTRS},
    };
    for (unsigned i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        AUTO_FD at = open_in(dev, subs[i].dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, STRICT);
        AUTO_FD mnt = mount_new_on(c, at, subs[i].type, subs[i].opts, subs[i].attrs, subs[i].where);
        if (mnt < 0)
            return -1;
    }
    return 0;
}

/* Our cgroup namespace is already in place, so each hierarchy shows the container's
 * own cgroup as its root: runtimes (the JVM, Go) read their limits there. */
static int mount_cgroup_v1(struct fb_child *c, long root)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    if (p->n_cgroup_v1 == 0)
        return 0;
    AUTO_FD target = open_target(root, "/sys/fs/cgroup", STRICT, 0);
    AUTO_FD top = mount_new_on(c, target, "tmpfs", "mode=755,size=64k", SAFE_ATTRS, "/sys/fs/cgroup");
    if (top < 0)
        return -1;
    for (int i = 0; i < p->n_cgroup_v1; i++) {
        const char *dir = p->cgroup_v1_dirs[i];
        long r = FB_SYS3(SYS_mkdirat, top, dir, 0755);
        AUTO_FD at = r < 0 && r != -EEXIST ? r : open_in(top, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW, STRICT);
        AUTO_FD mnt = mount_new_on(c, at, "cgroup", p->cgroup_v1_opts[i],
                                   SAFE_ATTRS | FB_MOUNT_ATTR_RDONLY, dir);
        if (mnt < 0)
            return -1;
    }
    struct fb_mount_attr ro = {.attr_set = FB_MOUNT_ATTR_RDONLY};
    long r = FB_SYS5(SYS_mount_setattr, top, "", FB_AT_EMPTY_PATH, &ro, sizeof ro);
    return r < 0 ? fb_fail(e, r, FB_PHASE_MOUNTS, "remount read-only", "/sys/fs/cgroup") : 0;
}

int fb_mount_system(struct fb_child *c)
{
    AUTO_FD root = open_root(c);
    if (root < 0)
        return -1;
    if (mount_new(c, root, "/proc", "proc", NULL, SAFE_ATTRS) < 0 || mount_dev(c, root) < 0 ||
        mount_new(c, root, "/sys", "sysfs", NULL, SAFE_ATTRS | FB_MOUNT_ATTR_RDONLY) < 0)
        return -1;
    if (c->plan->mount_cgroup2 &&
        mount_new(c, root, "/sys/fs/cgroup", "cgroup2", NULL, SAFE_ATTRS | FB_MOUNT_ATTR_RDONLY) < 0)
        return -1;
    return mount_cgroup_v1(c, root);
}

struct fb_statx_lite {
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, pad0;
    uint64_t ino, size, blocks, attributes_mask;
    int64_t times[8]; /* atime, btime, ctime, mtime: {sec, nsec + pad} */
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t spare[14];
};
_Static_assert(sizeof(struct fb_statx_lite) == 256, "struct statx is 256 bytes");
#define FB_STATX_TYPE 0x1
#define FB_STATX_INO 0x100

static long stat_fd(long fd, struct fb_statx_lite *st)
{
    return FB_SYS5(SYS_statx, fd, "", FB_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
                   FB_STATX_TYPE | FB_STATX_INO, st);
}

/* A volume or tmpfs may not land on what we made: /dev itself, a device node (ours,
 * or one an image planted), devpts or procfs (as runc refuses mounts into /proc). */
static int check_target(struct fb_child *c, long fd, const char *dst, const struct fb_statx_lite *dev)
{
    struct fb_error *e = &c->report->err;
    struct fb_statx_lite st;
    long r = stat_fd(fd, &st);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_MOUNTS, "volume target", dst);
    if (S_ISLNK(st.mode))
        return fb_fail(e, ELOOP, FB_PHASE_MOUNTS, "volume target is a symlink:", dst);
    if (S_ISCHR(st.mode) || S_ISBLK(st.mode))
        return fb_fail(e, EBUSY, FB_PHASE_MOUNTS, "volume target is a device node:", dst);
    if (st.ino == dev->ino && st.dev_major == dev->dev_major && st.dev_minor == dev->dev_minor)
        return fb_fail(e, EBUSY, FB_PHASE_MOUNTS, "volume target would hide the container's devices:", dst);
    uint64_t fs[16]; /* struct statfs: f_type first */
    r = FB_SYS2(SYS_fstatfs, fd, fs);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_MOUNTS, "volume target", dst);
    if (fs[0] == FB_PROC_SUPER_MAGIC || fs[0] == FB_DEVPTS_SUPER_MAGIC)
        return fb_fail(e, EBUSY, FB_PHASE_MOUNTS, "volume target is in /proc or /dev/pts:", dst);
    return 0;
}

static int attach_volume(struct fb_child *c, long root, int i, const struct fb_statx_lite *dev)
{
    const struct fb_mount *m = &c->plan->mounts[i];
    struct fb_error *e = &c->report->err;
    AUTO_FD target = open_target(root, m->dst, SCOPED, m->kind == FB_MOUNT_BIND_FILE);
    if (target < 0)
        return fb_fail(e, target, FB_PHASE_MOUNTS, "volume target", m->dst);
    if (check_target(c, target, m->dst, dev) < 0)
        return -1;
    if (m->kind == FB_MOUNT_TMPFS) {
        unsigned attrs = SAFE_ATTRS | (m->readonly ? FB_MOUNT_ATTR_RDONLY : 0);
        AUTO_FD mnt = mount_new_on(c, target, "tmpfs", m->data, attrs, m->dst);
        return mnt < 0 ? -1 : 0;
    }
    long r = attach(c->vol_fds[i], target);
    FB_SYS1(SYS_close, c->vol_fds[i]);
    c->vol_fds[i] = -1;
    return r < 0 ? fb_fail(e, r, FB_PHASE_MOUNTS, "mount volume on", m->dst) : 0;
}

int fb_mount_volumes(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    if (p->n_mounts == 0)
        return 0;
    AUTO_FD root = open_root(c);
    if (root < 0)
        return -1;
    struct fb_statx_lite dev;
    AUTO_FD devfd = open_in(root, "/dev", O_PATH | O_DIRECTORY | O_NOFOLLOW, STRICT);
    long r = devfd < 0 ? devfd : stat_fd(devfd, &dev);
    if (r < 0)
        return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "open", "/dev");
    for (int i = 0; i < p->n_mounts; i++)
        if (attach_volume(c, root, i, &dev) < 0)
            return -1;
    return 0;
}

/* Masks and read-only paths are in /proc and /sys, ours: opened STRICT; one missing
 * from this kernel needs nothing. A masked file gets the null device we made bound over
 * it, checked first (CVE-2025-31133: a /dev/null that is a symlink would bind anything
 * over the mask). The masked directories share one empty read-only tmpfs: mounted on
 * the first, cloned over the rest (a bind makes no new superblock). */
static long open_null(struct fb_child *c, long root)
{
    struct fb_statx_lite st;
    long fd = open_in(root, "/dev/null", O_PATH | O_NOFOLLOW, STRICT);
    long r = fd < 0 ? fd : stat_fd(fd, &st);
    if (r == 0 && (!S_ISCHR(st.mode) || st.rdev_major != 1 || st.rdev_minor != 3))
        r = -EINVAL;
    if (r < 0) {
        if (fd >= 0)
            FB_SYS1(SYS_close, fd);
        return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mask source is not the null device:", "/dev/null");
    }
    return fd;
}

static int bind_clone(struct fb_child *c, long src, long target, unsigned recursive, const char *path)
{
    AUTO_FD tree = FB_SYS3(SYS_open_tree, src, "", FB_OPEN_TREE_CLONE | O_CLOEXEC | FB_AT_EMPTY_PATH | recursive);
    long r = tree < 0 ? tree : attach(tree, target);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "mask", path) : 0;
}

static int readonly_one(struct fb_child *c, long root, const char *path)
{
    AUTO_FD target = open_in(root, path, O_PATH | O_NOFOLLOW, STRICT);
    if (target == -ENOENT)
        return 0;
    AUTO_FD tree = target < 0 ? target
                              : FB_SYS3(SYS_open_tree, target, "",
                                        FB_OPEN_TREE_CLONE | O_CLOEXEC | FB_AT_EMPTY_PATH | FB_AT_RECURSIVE);
    /* Recursive: a mount below (binfmt_misc in /proc/sys/fs) is made read-only too. */
    struct fb_mount_attr attr = {.attr_set = FB_MOUNT_ATTR_RDONLY | SAFE_ATTRS};
    long r = tree < 0 ? tree
                      : FB_SYS5(SYS_mount_setattr, tree, "", FB_AT_EMPTY_PATH | FB_AT_RECURSIVE, &attr, sizeof attr);
    if (r == 0)
        r = attach(tree, target);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "make read-only", path) : 0;
}

int fb_mask_paths(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    AUTO_FD root = open_root(c);
    if (root < 0)
        return -1;
    for (int i = 0; i < p->n_readonly; i++)
        if (readonly_one(c, root, p->readonly_paths[i]) < 0)
            return -1;
    AUTO_FD null = p->n_masked ? open_null(c, root) : -1;
    if (p->n_masked && null < 0)
        return -1;
    for (int i = 0; i < p->n_masked; i++) {
        AUTO_FD target = open_in(root, p->masked[i], O_PATH | O_NOFOLLOW, STRICT);
        if (target == -ENOENT)
            continue;
        if (target < 0)
            return fb_fail(e, target, FB_PHASE_MOUNTS, "mask", p->masked[i]);
        if (bind_clone(c, null, target, 0, p->masked[i]) < 0)
            return -1;
    }
    AUTO_FD shared = -1; /* the empty tmpfs, once mounted on the first masked directory */
    for (int i = 0; i < p->n_masked_dirs; i++) {
        const char *path = p->masked_dirs[i];
        AUTO_FD target = open_in(root, path, O_PATH | O_NOFOLLOW | O_DIRECTORY, STRICT);
        if (target == -ENOENT)
            continue;
        if (target < 0)
            return fb_fail(e, target, FB_PHASE_MOUNTS, "mask", path);
        if (shared >= 0) {
            if (bind_clone(c, shared, target, 0, path) < 0)
                return -1;
            continue;
        }
        shared = mount_new_on(c, target, "tmpfs", "size=0", SAFE_ATTRS | FB_MOUNT_ATTR_RDONLY, path);
        if (shared < 0)
            return -1;
    }
    return 0;
}

/* Last step on the filesystem: the working directory (Docker creates a missing one),
 * entered through the fd it was opened as, then the read-only root. */
int fb_finish_rootfs(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    if (p->cwd && p->cwd[0]) {
        AUTO_FD root = open_root(c);
        if (root < 0)
            return -1;
        /* A WORKDIR that is an image symlink is followed, inside the root. */
        AUTO_FD dir = open_in(root, p->cwd, O_PATH | O_DIRECTORY, SCOPED);
        if (dir == -ENOENT)
            dir = open_target(root, p->cwd, SCOPED, 0);
        long r = dir < 0 ? dir : FB_SYS1(SYS_fchdir, dir);
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
