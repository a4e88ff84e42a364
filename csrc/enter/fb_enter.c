/* fastbox-enter: the exec helper (see csrc/fb_exec.c). Run from a sealed memfd by a
 * trampoline child of the starter, with exactly the fds the plan names:
 *
 *     fastbox-enter PLAN_FD REPORT_FD OWNER_PIDFD
 *
 * It is a fresh process of its own (no memory of the starter's), made non-dumpable
 * before anything else, so that once it forks into the container's pid namespace
 * nothing the container can see reveals, or lets anyone write, a host process. No libc
 * (fb_nolibc.c): raw syscalls only. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include "fb_child.h"
#include "fb_sys.h"

/* In the helper: turns the offsets back into pointers into buf (len bytes), checking
 * that each lies inside it. Returns the plan, or NULL when the buffer is malformed. */
static int rel(char *buf, size_t len, uintptr_t off, void **out)
{
    if (off == 0) {
        *out = NULL;
        return 0;
    }
    if (off - 1 >= len)
        return -1;
    *out = buf + off - 1;
    return 0;
}

static int rel_str(char *buf, size_t len, const char **s)
{
    void *p;
    if (rel(buf, len, (uintptr_t)*s, &p) < 0 || (p && !memchr(p, 0, len - (size_t)((char *)p - buf))))
        return -1;
    *s = p;
    return 0;
}

static int rel_strv(char *buf, size_t len, const char *const **v, int n)
{
    void *p;
    if (rel(buf, len, (uintptr_t)*v, &p) < 0)
        return -1;
    if (!p)
        return 0;
    const char **s = p;
    for (int i = 0; n < 0 || i < n; i++) {
        if ((char *)(s + i + 1) > buf + len)
            return -1;
        if (n < 0 && !s[i])
            break;
        if (rel_str(buf, len, &s[i]) < 0)
            return -1;
    }
    *v = s;
    return 0;
}

static struct fb_plan *unpack(char *buf, size_t len)
{
    if (len < sizeof(struct fb_plan))
        return NULL;
    struct fb_plan *p = (struct fb_plan *)buf;
    void *groups;
    if (rel_strv(buf, len, &p->argv, -1) < 0 || rel_strv(buf, len, &p->envp, -1) < 0 ||
        rel_str(buf, len, &p->path) < 0 || rel_str(buf, len, &p->cwd) < 0 ||
        rel_strv(buf, len, &p->cg_join, p->n_cg_join) < 0 || rel_str(buf, len, &p->hostname) < 0 ||
        rel(buf, len, (uintptr_t)p->groups, &groups) < 0 || !p->argv || !p->argv[0])
        return NULL;
    if (p->n_groups < 0 || (groups && (char *)groups + (size_t)p->n_groups * sizeof(gid_t) > buf + len))
        return NULL;
    p->groups = groups;
    return p;
}

static int parse_fd(const char *s)
{
    int v = 0;
    if (s[0] == '-' && s[1] == '1' && !s[2])
        return -1;
    if (!*s)
        return -2;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1 << 20)
            return -2;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static struct fb_report report;

static int fail(struct fb_child *c, const char *what)
{
    struct fb_enter_msg m;
    fb_fail(&report.err, EINVAL, FB_PHASE_CLONE, what, NULL);
    memset(&m, 0, sizeof m);
    m.tag = FB_MSG_REPORT;
    m.report = report;
    if (c->report_fd >= 0)
        FB_SYS3(SYS_write, c->report_fd, &m, sizeof m);
    return 125;
}

int fb_enter_start(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    struct fb_child c;
    memset(&c, 0, sizeof c);
    c.report = &report;
    c.parent_fd = c.report_fd = -1;
    /* First: a non-dumpable process can be neither ptraced nor opened through /proc by
     * the container's root; the process forked into the container inherits it. */
    if (FB_SYS5(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || argc != 4)
        return 125;
    int plan_fd = parse_fd(argv[1]);
    c.report_fd = c.err_fd = parse_fd(argv[2]);
    c.owner_pidfd = parse_fd(argv[3]);
    if (plan_fd < 0 || c.report_fd < 0 || c.owner_pidfd < -1)
        return 125;
    FB_SYS3(SYS_fcntl, c.report_fd, F_SETFD, FD_CLOEXEC);
    if (c.owner_pidfd >= 0)
        FB_SYS3(SYS_fcntl, c.owner_pidfd, F_SETFD, FD_CLOEXEC);
    struct stat st;
    long buf = -1;
    if (FB_SYS2(SYS_fstat, plan_fd, &st) == 0 && st.st_size > 0)
        buf = FB_SYS6(SYS_mmap, 0, st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, plan_fd, 0);
    FB_SYS1(SYS_close, plan_fd);
    if (buf < 0 && buf > -4096)
        return fail(&c, "exec helper: cannot map the plan");
    if (!(c.plan = unpack((char *)buf, (size_t)st.st_size)))
        return fail(&c, "exec helper: malformed plan");
    fb_enter_main(&c); /* does not return */
    return 125;
}
