/* The container's cgroups. cgroupsPath is resolved under the ROOT of each hierarchy, as
 * crun does with its cgroupfs manager: "/a/b" and "a/b" both mean <hierarchy>/a/b and a
 * missing path means /<id>, so nothing ever nests under the caller's own cgroup (here
 * the workplace's). The systemd form "slice:prefix:name" needs systemd, which this
 * runtime does not drive: it is refused with a clear error.
 *
 * Hybrid hosts (v1 controllers plus a cgroup2 mount with none) use v1, as fastbox run
 * does. The directories made here are recorded, and `delete` removes exactly those. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "rt.h"
#include "../fb_devices.h"

struct hier {
    char *mount;
    char *ctrls; /* "cpu,cpuacct" */
};
static struct hier v1[RT_MAX_CG];
static int n_v1 = -1;
static char *v2_mount;

static const char *const known[] = {"cpu", "cpuacct", "memory", "pids", "devices", "blkio", "freezer",
                                    "cpuset", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma",
                                    "misc", NULL};

static int has_ctrl(const char *list, const char *c)
{
    size_t n = strlen(c);
    for (const char *p = list; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t k = comma ? (size_t)(comma - p) : strlen(p);
        if (k == n && !strncmp(p, c, n))
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

static void detect(void)
{
    if (n_v1 >= 0)
        return;
    n_v1 = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        char *fields[12] = {0}, *save = NULL;
        int nf = 0;
        for (char *t = strtok_r(line, " \n", &save); t && nf < 12; t = strtok_r(NULL, " \n", &save)) {
            fields[nf++] = t;
            if (!strcmp(t, "-") && nf < 12) {
                /* after the separator: fstype, source, super options */
                char *type = strtok_r(NULL, " \n", &save), *src = strtok_r(NULL, " \n", &save);
                char *opts = strtok_r(NULL, " \n", &save);
                (void)src;
                if (type && !strcmp(type, "cgroup2") && !v2_mount)
                    v2_mount = rt_strdup(fields[4]);
                if (type && !strcmp(type, "cgroup") && opts && n_v1 < RT_MAX_CG) {
                    char ctrls[512] = "";
                    for (const char *const *k = known; *k; k++)
                        if (has_ctrl(opts, *k))
                            snprintf(ctrls + strlen(ctrls), sizeof ctrls - strlen(ctrls), "%s%s",
                                     ctrls[0] ? "," : "", *k);
                    int dup = 0;
                    for (int i = 0; i < n_v1; i++)
                        dup |= !strcmp(v1[i].ctrls, ctrls);
                    if (ctrls[0] && !dup) {
                        v1[n_v1].mount = rt_strdup(fields[4]);
                        v1[n_v1].ctrls = rt_strdup(ctrls);
                        n_v1++;
                    }
                }
                break;
            }
        }
    }
    if (f)
        fclose(f);
}

int rt_cg_v2_only(void)
{
    detect();
    return n_v1 == 0 && v2_mount;
}

static const char *v1_dir_of(const struct rt_cg *cg, const char *ctrl)
{
    detect();
    for (int i = 0; i < n_v1; i++)
        if (has_ctrl(v1[i].ctrls, ctrl))
            for (int k = 0; k < cg->n; k++)
                if (!strncmp(cg->dirs[k], v1[i].mount, strlen(v1[i].mount)) &&
                    cg->dirs[k][strlen(v1[i].mount)] == '/')
                    return cg->dirs[k];
    return NULL;
}

/* the clean absolute path below a hierarchy root: no "." or ".." components */
static char *clean_path(const char *path, const char *id)
{
    if (!path || !*path)
        return rt_fmt("/%s", id);
    if (strchr(path, ':') && !strchr(path, '/'))
        rt_die("cgroupsPath %s is in systemd's slice:prefix:name form, which needs the systemd "
               "cgroup manager; there is no systemd here: use a cgroupfs path such as /fastbox/%s",
               path, id);
    char *out = malloc(strlen(path) + 2), *o = out;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = strchrnul(p, '/');
        size_t n = (size_t)(e - p);
        if (!n)
            break;
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            rt_die("cgroupsPath %s: \".\" and \"..\" are not allowed", path);
        *o++ = '/';
        memcpy(o, p, n);
        o += n;
        p = e;
    }
    *o = '\0';
    if (o == out)
        rt_die("cgroupsPath %s names a hierarchy's root", path);
    return out;
}

void rt_cg_resolve(struct rt_cg *cg, const char *path, const char *id, int want_cpuset)
{
    if (G.systemd_cgroup)
        rt_die("--systemd-cgroup: the systemd cgroup manager is not available (there is no systemd here); "
               "use the cgroupfs manager");
    detect();
    char *rel = clean_path(path, id);
    cg->cpuset = want_cpuset;
    if (n_v1 == 0) {
        if (!v2_mount)
            rt_die("no cgroup hierarchy is mounted");
        cg->v2 = rt_fmt("%s%s", v2_mount, rel);
        cg->dirs[cg->n++] = cg->v2;
        cg->procs = cg->v2;
        return;
    }
    for (int i = 0; i < n_v1; i++) {
        if (!strcmp(v1[i].ctrls, "cpuset") && !want_cpuset)
            continue; /* a v1 cpuset cgroup takes no task until it is given CPUs and nodes */
        char *d = rt_fmt("%s%s", v1[i].mount, rel);
        cg->ctrls[cg->n] = v1[i].ctrls;
        cg->bases[cg->n] = strrchr(v1[i].mount, '/') + 1;
        cg->dirs[cg->n++] = d;
        cg->joins[cg->n_joins++] = rt_fmt("%s/tasks", d);
        if (has_ctrl(v1[i].ctrls, "freezer"))
            cg->freezer = d;
        if (!cg->procs || has_ctrl(v1[i].ctrls, "pids"))
            cg->procs = d;
    }
}

/* v1 cpuset: a new cgroup starts with no CPUs and nodes; copy them down */
static void init_cpuset(const char *dir)
{
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "cpuset.mems" : "cpuset.cpus";
        char *here = rt_fmt("%s/%s", dir, name);
        char *cur = rt_read_file(here);
        if (cur && cur[0] && cur[0] != '\n')
            continue;
        char *parent = rt_strdup(dir);
        *strrchr(parent, '/') = '\0';
        char *up = rt_read_file(rt_fmt("%s/%s", parent, name));
        if (up)
            rt_write_file(here, up);
    }
}

/* v2: the parent's subtree_control must enable what the children use */
static void enable_v2(const char *dir)
{
    char *ctl = rt_fmt("%s/cgroup.subtree_control", dir);
    const char *const want[] = {"+cpu", "+memory", "+pids", "+io", "+cpuset", "+hugetlb", NULL};
    for (const char *const *w = want; *w; w++)
        rt_write_file(ctl, *w); /* a controller the host lacks is refused: nothing to do */
}

static void mkdir_p(struct rt_cg *cg, const char *dir, const char *root)
{
    char *buf = rt_strdup(dir);
    for (char *s = buf + strlen(root) + 1; ; s++) {
        if (*s != '/' && *s)
            continue;
        char saved = *s;
        *s = '\0';
        if (cg->v2) {
            char *parent = rt_strdup(buf);
            *strrchr(parent, '/') = '\0';
            enable_v2(parent);
        }
        if (mkdir(buf, 0755) == 0) {
            if (cg->n_made < 128)
                cg->made[cg->n_made++] = rt_strdup(buf);
            if (strstr(buf, "/cpuset") && !cg->v2 && access(rt_fmt("%s/cpuset.cpus", buf), F_OK) == 0)
                init_cpuset(buf);
        } else if (errno != EEXIST) {
            rt_die("mkdir %s: %s", buf, strerror(errno));
        }
        *s = saved;
        if (!saved)
            break;
    }
}

void rt_cg_make(struct rt_cg *cg)
{
    if (cg->v2) {
        mkdir_p(cg, cg->v2, v2_mount);
        return;
    }
    for (int k = 0; k < cg->n; k++)
        for (int i = 0; i < n_v1; i++) {
            size_t n = strlen(v1[i].mount);
            if (!strncmp(cg->dirs[k], v1[i].mount, n) && cg->dirs[k][n] == '/') {
                mkdir_p(cg, cg->dirs[k], v1[i].mount);
                break;
            }
        }
}

static void add(struct rt_cg *cg, const char *dir, const char *file, const char *value, const char *what)
{
    if (!dir)
        rt_die("linux.resources.%s needs a cgroup controller this host does not have", what);
    if (cg->n_writes >= 256)
        rt_die("too many cgroup writes");
    cg->files[cg->n_writes] = rt_fmt("%s/%s", dir, file);
    cg->values[cg->n_writes++] = value;
}

static const char *num(long long v)
{
    return rt_fmt("%lld", v);
}

/* runtime-spec's linux.resources as cgroup writes (applied by the core before the clone,
 * or by `update` at once). */
void rt_cg_resources(struct rt_cg *cg, const struct js *res)
{
    if (!res)
        return;
    const struct js *mem = js_get(res, "memory"), *cpu = js_get(res, "cpu"), *pids = js_get(res, "pids");
    if (cg->v2) {
        const char *d = cg->v2;
        long long limit = js_int(mem, "limit", 0);
        if (js_has(mem, "limit"))
            add(cg, d, "memory.max", limit > 0 ? num(limit) : "max", "memory");
        if (js_has(mem, "swap") && js_has(mem, "limit")) {
            long long swap = js_int(mem, "swap", 0);
            add(cg, d, "memory.swap.max", swap < 0 ? "max" : num(swap > limit ? swap - limit : 0), "memory");
        }
        if (js_has(mem, "reservation"))
            add(cg, d, "memory.low", num(js_int(mem, "reservation", 0)), "memory");
        if (js_has(cpu, "shares") && js_int(cpu, "shares", 0) > 0)
            add(cg, d, "cpu.weight", num(1 + ((js_int(cpu, "shares", 0) - 2) * 9999) / 262142), "cpu");
        if (js_has(cpu, "quota") || js_has(cpu, "period")) {
            long long q = js_int(cpu, "quota", -1), p = js_int(cpu, "period", 100000);
            add(cg, d, "cpu.max", q > 0 ? rt_fmt("%lld %lld", q, p) : rt_fmt("max %lld", p), "cpu");
        }
        if (js_str(cpu, "cpus", NULL))
            add(cg, d, "cpuset.cpus", js_str(cpu, "cpus", ""), "cpu");
        if (js_str(cpu, "mems", NULL))
            add(cg, d, "cpuset.mems", js_str(cpu, "mems", ""), "cpu");
        if (js_has(pids, "limit"))
            add(cg, d, "pids.max", js_int(pids, "limit", 0) > 0 ? num(js_int(pids, "limit", 0)) : "max", "pids");
        JS_EACH(h, js_get(res, "hugepageLimits"))
            add(cg, d, rt_fmt("hugetlb.%s.max", js_str(h, "pageSize", "")), num(js_int(h, "limit", 0)), "hugepageLimits");
        JS_EACH(u, js_get(res, "unified")) {
            if (strchr(u->key, '/') || u->key[0] == '.')
                rt_die("linux.resources.unified: bad file name %s", u->key);
            add(cg, d, u->key, u->str ? u->str : "", "unified");
        }
        return;
    }
    if (js_get(res, "unified") && js_get(res, "unified")->n)
        rt_die("linux.resources.unified needs cgroup v2; this host's controllers are on v1");
    const char *m = v1_dir_of(cg, "memory"), *c = v1_dir_of(cg, "cpu"), *p = v1_dir_of(cg, "pids");
    if (js_has(mem, "limit")) {
        add(cg, m, "memory.limit_in_bytes", num(js_int(mem, "limit", 0)), "memory");
        if (js_has(mem, "swap") && m && access(rt_fmt("%s/memory.memsw.limit_in_bytes", m), F_OK) == 0)
            add(cg, m, "memory.memsw.limit_in_bytes", num(js_int(mem, "swap", 0)), "memory");
    }
    if (js_has(mem, "reservation"))
        add(cg, m, "memory.soft_limit_in_bytes", num(js_int(mem, "reservation", 0)), "memory");
    if (js_has(mem, "swappiness") && js_int(mem, "swappiness", -1) >= 0 && js_int(mem, "swappiness", 0) <= 100)
        add(cg, m, "memory.swappiness", num(js_int(mem, "swappiness", 0)), "memory");
    if (js_bool(mem, "disableOOMKiller", 0))
        add(cg, m, "memory.oom_control", "1", "memory");
    if (js_int(cpu, "shares", 0) > 0)
        add(cg, c, "cpu.shares", num(js_int(cpu, "shares", 0)), "cpu");
    if (js_int(cpu, "period", 0) > 0)
        add(cg, c, "cpu.cfs_period_us", num(js_int(cpu, "period", 0)), "cpu");
    if (js_has(cpu, "quota") && js_int(cpu, "quota", 0) != 0)
        add(cg, c, "cpu.cfs_quota_us", num(js_int(cpu, "quota", 0)), "cpu");
    if (js_str(cpu, "cpus", NULL) && *js_str(cpu, "cpus", ""))
        add(cg, v1_dir_of(cg, "cpuset"), "cpuset.cpus", js_str(cpu, "cpus", ""), "cpu.cpus");
    if (js_str(cpu, "mems", NULL) && *js_str(cpu, "mems", ""))
        add(cg, v1_dir_of(cg, "cpuset"), "cpuset.mems", js_str(cpu, "mems", ""), "cpu.mems");
    if (js_has(pids, "limit"))
        add(cg, p, "pids.max", js_int(pids, "limit", 0) > 0 ? num(js_int(pids, "limit", 0)) : "max", "pids");
    JS_EACH(h, js_get(res, "hugepageLimits"))
        add(cg, v1_dir_of(cg, "hugetlb"), rt_fmt("hugetlb.%s.limit_in_bytes", js_str(h, "pageSize", "")),
            num(js_int(h, "limit", 0)), "hugepageLimits");
    const struct js *bio = js_get(res, "blockIO");
    if (js_int(bio, "weight", 0) > 0 && v1_dir_of(cg, "blkio") &&
        access(rt_fmt("%s/blkio.weight", v1_dir_of(cg, "blkio")), F_OK) == 0)
        add(cg, v1_dir_of(cg, "blkio"), "blkio.weight", num(js_int(bio, "weight", 0)), "blockIO");
}

/* The standard devices every container may use (runc's list; the core makes these
 * nodes and devpts), after the config's own rules. */
static const char *const default_allow[] = {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                                            "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", NULL};

static const char *rule_text(const struct js *d)
{
    const char *type = js_str(d, "type", "a");
    long long ma = js_int(d, "major", -1), mi = js_int(d, "minor", -1);
    char majs[24] = "*", mins[24] = "*";
    if (ma >= 0)
        snprintf(majs, sizeof majs, "%lld", ma);
    if (mi >= 0)
        snprintf(mins, sizeof mins, "%lld", mi);
    const char *access = js_str(d, "access", "rwm");
    if (!*access)
        access = "rwm";
    if (!strcmp(type, "a"))
        return rt_fmt("a *:* %s", access);
    return rt_fmt("%s %s:%s %s", type, majs, mins, access);
}

static int rule_struct(const char *text, struct fb_dev_rule *r)
{
    char t, ma[24], mi[24], acc[8];
    if (sscanf(text, "%c %23[^:]:%23s %7s", &t, ma, mi, acc) != 4)
        return -1;
    r->type = t == 'b' ? FB_DEV_BLOCK : t == 'c' ? FB_DEV_CHAR : FB_DEV_ANY;
    r->major = !strcmp(ma, "*") ? FB_DEV_WILDCARD : atoi(ma);
    r->minor = !strcmp(mi, "*") ? FB_DEV_WILDCARD : atoi(mi);
    r->access = (strchr(acc, 'm') ? FB_DEV_MKNOD : 0) | (strchr(acc, 'r') ? FB_DEV_READ : 0) |
                (strchr(acc, 'w') ? FB_DEV_WRITE : 0);
    return 0;
}

/* linux.resources.devices: on v1 written in order to the container's devices cgroup
 * (the first rule is usually "deny all"); on v2 an allow-list program (fb_devices.c)
 * that the core attaches before the clone. Either way every device outside the rules
 * and the standard list is refused. */
void rt_cg_devices(struct rt_cg *cg, const struct js *res, struct fb_plan *plan)
{
    const struct js *rules = js_get(res, "devices");
    if (!cg->v2) {
        const char *d = v1_dir_of(cg, "devices");
        if (!d)
            rt_die("no devices cgroup on this host: cannot confine the container's devices");
        add(cg, d, "devices.deny", "a", "devices");
        JS_EACH(r, rules) {
            const char *t = rule_text(r);
            int allow = js_bool(r, "allow", 0);
            if (!allow && !strncmp(t, "a *:* rwm", 9))
                continue; /* denied already */
            add(cg, d, allow ? "devices.allow" : "devices.deny", t, "devices");
        }
        for (const char *const *a = default_allow; *a; a++)
            add(cg, d, "devices.allow", *a, "devices");
        return;
    }
    static struct fb_dev_rule list[FB_DEV_MAX_RULES];
    int n = 0, allow_all = 0;
    JS_EACH(r, rules) {
        if (!js_bool(r, "allow", 0)) {
            if (n || allow_all)
                rt_warn("device rule \"%s\" (deny after an allow) is not supported on cgroup v2; ignored",
                        rule_text(r));
            continue;
        }
        if (n < FB_DEV_MAX_RULES && rule_struct(rule_text(r), &list[n]) == 0)
            n++;
    }
    for (const char *const *a = default_allow; *a && n < FB_DEV_MAX_RULES; a++)
        if (rule_struct(*a, &list[n]) == 0)
            n++;
    struct fb_error e = {0};
    int fd = fb_devices_load(list, n, &e);
    if (fd < 0)
        rt_die("device cgroup program: %s: %s", e.msg, strerror(e.err));
    plan->dev_prog_fd = fd;
}

void rt_cg_apply_writes(struct rt_cg *cg)
{
    for (int i = 0; i < cg->n_writes; i++) {
        int rc = rt_write_file(cg->files[i], cg->values[i]);
        if (rc < 0)
            rt_die("write %s to %s: %s", cg->values[i], cg->files[i], strerror(-rc));
    }
}

/* rmdir the directories we made, deepest first; a parent another container still uses
 * stays (EBUSY), one with a dying task is retried briefly. */
void rt_cg_remove(const struct js *st)
{
    const struct js *made = js_get(st, "madeCgroups");
    int n = made ? made->n : 0;
    const char **dirs = calloc((size_t)n + 1, sizeof *dirs);
    int i = 0;
    JS_EACH(d, made) dirs[i++] = d->str;
    for (i = n - 1; i >= 0; i--) {
        for (int tries = 0; tries < 200; tries++) {
            if (rmdir(dirs[i]) == 0 || errno == ENOENT)
                break;
            if (errno != EBUSY)
                break;
            /* a leaf is busy only while its last tasks exit; a parent may be shared */
            char *procs = rt_read_file(rt_fmt("%s/cgroup.procs", dirs[i]));
            int empty = procs && !procs[0];
            if (empty && tries > 2)
                break;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

int rt_cg_frozen(const struct js *st)
{
    const char *v2 = js_str(st, "v2", ""), *fz = js_str(st, "freezer", "");
    char *s = *v2 ? rt_read_file(rt_fmt("%s/cgroup.freeze", v2))
                  : *fz ? rt_read_file(rt_fmt("%s/freezer.state", fz)) : NULL;
    return s && (*v2 ? s[0] == '1' : !strncmp(s, "FROZEN", 6));
}

int rt_cg_freeze(const struct js *st, int frozen)
{
    const char *v2 = js_str(st, "v2", ""), *fz = js_str(st, "freezer", "");
    if (*v2)
        return rt_write_file(rt_fmt("%s/cgroup.freeze", v2), frozen ? "1" : "0") < 0 ? -1 : 0;
    if (!*fz)
        return errno = ENOTSUP, -1;
    char *file = rt_fmt("%s/freezer.state", fz);
    for (int tries = 0; tries < 1000; tries++) {
        int rc = rt_write_file(file, frozen ? "FROZEN" : "THAWED");
        if (rc < 0)
            return errno = -rc, -1;
        char *s = rt_read_file(file);
        if (s && !strncmp(s, frozen ? "FROZEN" : "THAWED", 6))
            return 0;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return errno = EBUSY, -1;
}

pid_t *rt_cg_pids(const struct js *st, int *n)
{
    const char *dir = js_str(st, "procs", "");
    char *s = *dir ? rt_read_file(rt_fmt("%s/cgroup.procs", dir)) : NULL;
    pid_t *out = calloc(4096, sizeof *out);
    *n = 0;
    for (char *p = s; p && *p && *n < 4096;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        out[(*n)++] = (pid_t)v;
        p = end;
        while (*p == '\n')
            p++;
    }
    return out;
}
