/* config.json (runtime-spec 1.0-1.2) into the core's flat plan: the same plan, and so the
 * same child steps and security, as `fastbox run`: every mount target resolved inside
 * the root through fds, masks over /proc and /sys, capabilities bounded, seccomp last
 * before execve, no host fd past exec, the device controller always on.
 *
 * What the core builds itself: /proc, /dev (a tmpfs with the standard nodes, devpts,
 * shm, mqueue), /sys read-only and /sys/fs/cgroup read-only in a cgroup namespace. The
 * config's mounts of those are recognised and served by it; every other mount is a
 * bind (rbind; "ro" is recursive read-only, as "rro") or a tmpfs with its options. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "rt.h"

static const char *const cap_names[] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE", NULL};

static uint64_t cap_set(const struct js *list, int *present)
{
    uint64_t m = 0;
    *present = list != NULL;
    JS_EACH(c, list) {
        const char *name = c->str ? c->str : "";
        if (!strncasecmp(name, "CAP_", 4))
            name += 4;
        int found = 0;
        for (int i = 0; cap_names[i]; i++)
            if (!strcasecmp(name, cap_names[i])) {
                m |= 1ULL << i;
                found = 1;
            }
        if (!found)
            rt_warn("unknown capability %s ignored", c->str);
    }
    return m;
}

static const char **str_list(const struct js *arr, int *n)
{
    int k = arr ? arr->n : 0, i = 0;
    const char **out = calloc((size_t)k + 1, sizeof *out);
    JS_EACH(s, arr) if (s->type == JS_STR) out[i++] = s->str;
    if (n)
        *n = i;
    return out;
}

static const char *env_path(const char *const *envp)
{
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, "PATH=", 5))
            return *envp + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* process: args, env, cwd, user, capabilities, noNewPrivileges, terminal */
void rt_build_process(struct fb_plan *p, const struct js *proc, const struct js *cfg, int *terminal)
{
    if (!proc)
        rt_die("config.json: process is required");
    int n;
    p->argv = str_list(js_get(proc, "args"), &n);
    if (n == 0)
        rt_die("config.json: process.args must not be empty");
    p->envp = str_list(js_get(proc, "env"), NULL);
    p->path = env_path(p->envp);
    p->cwd = js_str(proc, "cwd", "/");
    if (p->cwd[0] != '/')
        rt_die("config.json: process.cwd %s must be an absolute path", p->cwd);
    const struct js *user = js_get(proc, "user");
    if (js_str(user, "username", NULL))
        rt_die("process.user.username is not supported (Windows only)");
    p->uid = (uid_t)js_int(user, "uid", 0);
    p->gid = (gid_t)js_int(user, "gid", 0);
    const struct js *groups = js_get(user, "additionalGids");
    gid_t *g = calloc((size_t)(groups ? groups->n : 0) + 1, sizeof *g);
    JS_EACH(x, groups) g[p->n_groups++] = (gid_t)x->num;
    p->groups = g;
    const struct js *caps = js_get(proc, "capabilities");
    int has_b, has_p, has_e;
    uint64_t b = cap_set(js_get(caps, "bounding"), &has_b);
    uint64_t perm = cap_set(js_get(caps, "permitted"), &has_p);
    uint64_t eff = cap_set(js_get(caps, "effective"), &has_e);
    /* one set in the core: the bounding set, narrowed to what is permitted or effective */
    uint64_t set = has_b ? b : ~0ULL;
    if (has_p || has_e)
        set &= perm | eff;
    if (!has_b && !has_p && !has_e)
        set = 0;
    p->caps = set;
    p->no_new_privs = js_bool(proc, "noNewPrivileges", 0);
    *terminal = js_bool(proc, "terminal", 0);
    const struct js *size = js_get(proc, "consoleSize");
    p->console_rows = (unsigned short)js_int(size, "height", 0);
    p->console_cols = (unsigned short)js_int(size, "width", 0);
    if (js_str(proc, "apparmorProfile", NULL) && *js_str(proc, "apparmorProfile", ""))
        rt_warn("apparmorProfile %s ignored: AppArmor is not enabled", js_str(proc, "apparmorProfile", ""));
    const struct js *sc = js_path(cfg, "linux", "seccomp", NULL);
    if (sc) {
        int insns = 0;
        p->seccomp_prog = rt_seccomp_compile(sc, &insns);
        p->seccomp_len = insns;
    }
}

static const struct { const char *name; int res; } rlimits[] = {
    {"RLIMIT_CPU", RLIMIT_CPU}, {"RLIMIT_FSIZE", RLIMIT_FSIZE}, {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_STACK", RLIMIT_STACK}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_LOCKS", RLIMIT_LOCKS}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME}};

/* Set on ourselves before the clone: the child inherits them. Raising a hard limit takes
 * CAP_SYS_RESOURCE, which root lacks here: the error names the limit. */
void rt_apply_rlimits(const struct js *proc)
{
    JS_EACH(r, js_get(proc, "rlimits")) {
        const char *type = js_str(r, "type", "");
        int res = -1;
        for (unsigned i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++)
            if (!strcmp(type, rlimits[i].name))
                res = rlimits[i].res;
        if (res < 0)
            rt_die("config.json: unknown rlimit %s", type);
        struct rlimit rl = {(rlim_t)js_int(r, "soft", 0), (rlim_t)js_int(r, "hard", 0)};
        if (js_int(r, "soft", 0) < 0) rl.rlim_cur = RLIM_INFINITY;
        if (js_int(r, "hard", 0) < 0) rl.rlim_max = RLIM_INFINITY;
        if (setrlimit(res, &rl) < 0) {
            struct rlimit cur;
            getrlimit(res, &cur);
            rt_die("setrlimit %s soft=%llu hard=%llu: %s (the hard limit here is %llu)", type,
                   (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, strerror(errno),
                   (unsigned long long)cur.rlim_max);
        }
    }
}

static const struct { const char *name; int flag; } ns_types[] = {
    {"pid", CLONE_NEWPID}, {"network", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
    {"mount", CLONE_NEWNS}, {"cgroup", CLONE_NEWCGROUP}, {"user", CLONE_NEWUSER}, {"time", 0x80}};

int rt_ns_flags(const struct js *cfg)
{
    int f = 0;
    JS_EACH(ns, js_path(cfg, "linux", "namespaces", NULL))
        for (unsigned i = 0; i < sizeof ns_types / sizeof ns_types[0]; i++)
            if (!strcmp(js_str(ns, "type", ""), ns_types[i].name))
                f |= ns_types[i].flag;
    return f;
}

static void namespaces(struct rt_build *b, const struct js *cfg)
{
    int seen = 0;
    JS_EACH(ns, js_path(cfg, "linux", "namespaces", NULL)) {
        const char *type = js_str(ns, "type", ""), *path = js_str(ns, "path", NULL);
        int flag = -1;
        for (unsigned i = 0; i < sizeof ns_types / sizeof ns_types[0]; i++)
            if (!strcmp(type, ns_types[i].name))
                flag = ns_types[i].flag;
        if (flag < 0)
            rt_die("config.json: unknown namespace type %s", type);
        if (flag == CLONE_NEWUSER || flag == 0x80)
            rt_die("namespace %s is not supported by fastbox-runtime", type);
        if (seen & flag)
            rt_die("config.json: namespace %s given twice", type);
        seen |= flag;
        if (path && *path) {
            /* joined by the runtime process itself before the clone (setns) */
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                rt_die("namespace %s path %s: %s", type, path, strerror(errno));
            b->ns_join_fds[b->n_ns_join] = fd;
            b->ns_join_types[b->n_ns_join++] = flag;
            continue;
        }
        b->plan.ns_flags |= flag;
    }
    if (!(seen & CLONE_NEWNS))
        rt_die("config.json: a mount namespace is required");
    b->plan.loopback_up = (b->plan.ns_flags & CLONE_NEWNET) != 0; /* as runc's loopback */
}

static int has_opt(const struct js *opts, const char *o)
{
    JS_EACH(x, opts) if (x->str && !strcmp(x->str, o)) return 1;
    return 0;
}

/* the filesystem options of a tmpfs (size=, mode=, nr_inodes=...), without mount flags */
static const char *fs_data(const struct js *opts)
{
    static const char *const flags[] = {"nosuid", "suid", "nodev", "dev", "noexec", "exec", "ro", "rw",
                                        "strictatime", "relatime", "noatime", "nodiratime", "private",
                                        "rprivate", "slave", "rslave", "shared", "rshared", "bind", "rbind",
                                        "rro", "rrw", "sync", "async", "tmpcopyup", NULL};
    char *out = calloc(1, 4096);
    JS_EACH(x, opts) {
        int flag = 0;
        for (const char *const *f = flags; *f; f++)
            flag |= !strcmp(x->str ? x->str : "", *f);
        if (!flag && x->str && strlen(out) + strlen(x->str) + 2 < 4096)
            snprintf(out + strlen(out), 4096 - strlen(out), "%s%s", *out ? "," : "", x->str);
    }
    return out;
}

static void mounts(struct rt_build *b, const struct js *cfg, const char *bundle)
{
    static struct fb_mount list[FB_MAX_MOUNTS];
    struct fb_plan *p = &b->plan;
    int n = 0, cgroup_mount = 0;
    JS_EACH(m, js_get(cfg, "mounts")) {
        const char *dst = js_str(m, "destination", ""), *type = js_str(m, "type", "");
        const char *src = js_str(m, "source", "");
        const struct js *opts = js_get(m, "options");
        int bind = !strcmp(type, "bind") || has_opt(opts, "bind") || has_opt(opts, "rbind");
        if (dst[0] != '/')
            rt_die("mount destination %s must be absolute", dst);
        /* what the core makes itself */
        if (!bind && (!strcmp(dst, "/proc") || !strcmp(dst, "/dev") || !strcmp(dst, "/dev/pts") ||
                      !strcmp(dst, "/dev/mqueue") || !strcmp(dst, "/sys") ||
                      (!strcmp(dst, "/dev/shm") && !strcmp(type, "tmpfs"))))
            continue;
        if (!strcmp(dst, "/sys/fs/cgroup") && (!strcmp(type, "cgroup") || !strcmp(type, "cgroup2"))) {
            cgroup_mount = 1;
            continue;
        }
        if (n >= FB_MAX_MOUNTS)
            rt_die("too many mounts (at most %d)", FB_MAX_MOUNTS);
        struct fb_mount *fm = &list[n];
        fm->dst = dst;
        fm->readonly = has_opt(opts, "ro") || has_opt(opts, "rro");
        if (bind) {
            char *abs = src[0] == '/' ? rt_strdup(src) : rt_fmt("%s/%s", bundle, src);
            struct stat st;
            if (stat(abs, &st) < 0)
                rt_die("mount source %s for %s: %s", abs, dst, strerror(errno));
            fm->kind = S_ISDIR(st.st_mode) ? FB_MOUNT_BIND_DIR : FB_MOUNT_BIND_FILE;
            fm->src = abs;
            /* MOUNT_ATTR_NOSUID, NODEV, NOEXEC: on the bound tree, recursively */
            fm->attrs = (has_opt(opts, "nosuid") ? 0x2 : 0) | (has_opt(opts, "nodev") ? 0x4 : 0) |
                        (has_opt(opts, "noexec") ? 0x8 : 0);
        } else if (!strcmp(type, "tmpfs")) {
            fm->kind = FB_MOUNT_TMPFS;
            fm->data = fs_data(opts);
        } else {
            rt_die("mount of type %s at %s is not supported", type, dst);
        }
        n++;
    }
    p->mounts = list;
    p->n_mounts = n;
    if (!cgroup_mount)
        return;
    /* /sys/fs/cgroup: the hierarchies the container joined, read-only, in its own
     * cgroup namespace (so it sees its own cgroup as the root) */
    p->ns_flags |= CLONE_NEWCGROUP;
    if (b->cg.v2) {
        p->mount_cgroup2 = 1;
        return;
    }
    p->cgroup_v1_dirs = b->cg.bases;
    p->cgroup_v1_opts = b->cg.ctrls;
    p->n_cgroup_v1 = b->cg.n;
}

/* masked paths: a directory gets an empty read-only tmpfs, anything else /dev/null; which
 * one is seen on the host's /proc and /sys, whose entries the container's mirror */
static void masks(struct fb_plan *p, const struct js *cfg)
{
    const struct js *masked = js_path(cfg, "linux", "maskedPaths", NULL);
    int k = masked ? masked->n : 0, nf = 0, nd = 0;
    const char **files = calloc((size_t)k + 1, sizeof *files), **dirs = calloc((size_t)k + 1, sizeof *dirs);
    JS_EACH(m, masked) {
        struct stat st;
        if (!m->str || m->str[0] != '/')
            continue;
        if (stat(m->str, &st) == 0 && S_ISDIR(st.st_mode))
            dirs[nd++] = m->str;
        else
            files[nf++] = m->str;
    }
    p->masked = files;
    p->n_masked = nf;
    p->masked_dirs = dirs;
    p->n_masked_dirs = nd;
    p->readonly_paths = str_list(js_path(cfg, "linux", "readonlyPaths", NULL), &p->n_readonly);
}

static void devices(struct fb_plan *p, const struct js *cfg)
{
    static const char *const made[] = {"null", "zero", "full", "random", "urandom", "tty", "ptmx",
                                       "console", NULL};
    const struct js *list = js_path(cfg, "linux", "devices", NULL);
    struct fb_devnode *nodes = calloc((size_t)(list ? list->n : 0) + 1, sizeof *nodes);
    int n = 0;
    JS_EACH(d, list) {
        const char *path = js_str(d, "path", "");
        int bad = strncmp(path, "/dev/", 5) != 0 || !path[5];
        for (const char *c = path + 4; !bad && c && *c; c = strchr(c + 1, '/')) {
            const char *next = c + 1; /* each component: not empty, "." or ".." */
            size_t n = strcspn(next, "/");
            bad = n == 0 || (n == 1 && next[0] == '.') || (n == 2 && next[0] == '.' && next[1] == '.');
        }
        if (bad)
            rt_die("linux.devices: %s must be a path under /dev without \".\" or \"..\"", path);
        int skip = 0;
        for (const char *const *m = made; *m; m++)
            skip |= !strcmp(path + 5, *m);
        if (skip)
            continue;
        const char *type = js_str(d, "type", "c");
        unsigned kind = !strcmp(type, "b") ? S_IFBLK : !strcmp(type, "p") ? S_IFIFO : S_IFCHR;
        nodes[n].path = path + 5;
        nodes[n].mode = kind | (unsigned)(js_int(d, "fileMode", 0666) & 07777);
        nodes[n].major = (unsigned)js_int(d, "major", 0);
        nodes[n].minor = (unsigned)js_int(d, "minor", 0);
        nodes[n].uid = (uid_t)js_int(d, "uid", 0);
        nodes[n].gid = (gid_t)js_int(d, "gid", 0);
        n++;
    }
    p->devnodes = nodes;
    p->n_devnodes = n;
}

static unsigned long propagation(const char *s)
{
    if (!s || !*s)
        return 0;
    static const struct { const char *name; unsigned long flag; } t[] = {
        {"private", MS_PRIVATE}, {"rprivate", MS_PRIVATE}, {"slave", MS_SLAVE}, {"rslave", MS_SLAVE},
        {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE}};
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].name))
            return t[i].flag;
    rt_die("rootfsPropagation %s is not supported (a shared root would let the container's mounts "
           "reach the host): use private or slave", s);
}

void rt_build_plan(struct rt_build *b, const struct js *cfg, const char *bundle, const char *id)
{
    struct fb_plan *p = &b->plan;
    memset(p, 0, sizeof *p);
    p->join_pidfd = -1;
    p->join_netns_fd = -1;
    p->dev_prog_fd = -1;
    p->console_fd = -1;
    p->init_fd = -1; /* no --init: the OCI process is the container's pid 1 */
    for (int i = 0; i < 3; i++)
        p->stdio[i] = -1;
    b->cfg = cfg;
    for (const char *const *h = (const char *const[]){"createContainer", "startContainer", NULL}; *h; h++) {
        const struct js *list = js_path(cfg, "hooks", *h, NULL);
        if (list && list->n) /* they run inside the container's namespaces: not done yet */
            rt_die("hooks.%s is not supported by fastbox-runtime (prestart, createRuntime, poststart "
                   "and poststop are)", *h);
    }
    const char *ver = js_str(cfg, "ociVersion", "");
    if (strncmp(ver, "1.", 2))
        rt_die("config.json: unsupported ociVersion \"%s\" (1.0 to 1.2 are)", ver);
    const struct js *root = js_get(cfg, "root");
    const char *rp = js_str(root, "path", NULL);
    if (!rp)
        rt_die("config.json: root.path is required");
    char *abs = rp[0] == '/' ? rt_strdup(rp) : rt_fmt("%s/%s", bundle, rp);
    char real[PATH_MAX];
    if (!realpath(abs, real))
        rt_die("rootfs %s: %s", abs, strerror(errno));
    b->rootfs = rt_strdup(real);
    p->rootfs = b->rootfs;
    p->rootfs_bind = b->rootfs;
    p->readonly_root = js_bool(root, "readonly", 0);
    p->rootfs_propagation = propagation(js_str(js_get(cfg, "linux"), "rootfsPropagation", NULL));
    namespaces(b, cfg);
    p->hostname = js_str(cfg, "hostname", NULL);
    rt_build_process(p, js_get(cfg, "process"), cfg, &b->terminal);
    /* cgroups: resolved under the roots, limits and device rules written by the core */
    const struct js *linux_ = js_get(cfg, "linux"), *res = js_get(linux_, "resources");
    const struct js *cpu = js_get(res, "cpu");
    int cpuset = (js_str(cpu, "cpus", NULL) && *js_str(cpu, "cpus", "")) ||
                 (js_str(cpu, "mems", NULL) && *js_str(cpu, "mems", ""));
    rt_cg_resolve(&b->cg, js_str(linux_, "cgroupsPath", NULL), id, cpuset);
    rt_cg_resources(&b->cg, res);
    rt_cg_devices(&b->cg, res, p);
    p->cg_files = b->cg.files;
    p->cg_values = b->cg.values;
    p->n_cg_writes = b->cg.n_writes;
    p->cg_join = (const char *const *)b->cg.joins;
    p->n_cg_join = b->cg.n_joins;
    p->cg_into = b->cg.v2;
    mounts(b, cfg, bundle);
    if (!b->cg.v2 && (p->ns_flags & CLONE_NEWCGROUP)) {
        /* v1: the child enters its cgroup namespace once it has joined its cgroups */
        p->unshare_cgroupns = 1;
        p->ns_flags &= ~CLONE_NEWCGROUP;
    }
    masks(p, cfg);
    devices(p, cfg);
}
