/* The parent side of `exec`: a process made to run in a running container.
 *
 * The container's processes can see whatever enters their pid namespace, so that is never
 * a clone of the caller (a Python process: its memory, its fds, its /proc/N/exe). Instead:
 *   1. a CLONE_VM child of ours, still in our pid namespace and invisible to the container,
 *      closes every fd but the ones the plan names and execs the exec helper from a sealed
 *      memfd copy (made once per process), so /proc/N/exe never names a host file;
 *   2. the helper (a fresh, small, static process) makes itself non-dumpable, joins the
 *      cgroups and namespaces, and forks into the container's pid namespace with
 *      CLONE_PARENT, so the exec'd process is our child, not dumpable until its execve;
 *   3. both report over a pipe (no memory is shared with them): the pid, then the report
 *      just before execve or at failure. EOF comes at execve or exit. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "fb_child.h"
#include "fb_exec.h"
#include "fb_sys.h"

#ifndef SYS_memfd_create
#define SYS_memfd_create 319
#endif
#define FB_MFD_CLOEXEC 0x1U
#define FB_MFD_ALLOW_SEALING 0x2U
#define FB_F_ADD_SEALS 1033
#define FB_SEALS (0x1 | 0x2 | 0x4 | 0x8) /* SEAL, SHRINK, GROW, WRITE */
#define FB_AT_EMPTY_PATH 0x1000
#define FB_MAX_KEEP 12

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd = -1;

/* A sealed, close-on-exec memfd copy of the helper: nothing can write it, and the exec'd
 * helper's /proc/N/exe is that memfd, not a host binary (CVE-2019-5736). */
static int helper_memfd(const char *path, struct fb_error *e)
{
    pthread_mutex_lock(&helper_lock);
    int fd = helper_fd, src = -1, err = 0;
    if (fd >= 0)
        goto out;
    struct stat st;
    src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0 || fstat(src, &st) < 0) {
        err = errno;
        goto out;
    }
    fd = (int)syscall(SYS_memfd_create, "fastbox-enter", FB_MFD_CLOEXEC | FB_MFD_ALLOW_SEALING);
    char buf[65536];
    ssize_t n = 0;
    off_t done = 0;
    while (fd >= 0 && (n = read(src, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || write(fd, buf, (size_t)n) != n)
            break;
        done += n;
    }
    if (fd < 0 || n != 0 || done != st.st_size || fcntl(fd, FB_F_ADD_SEALS, FB_SEALS) < 0) {
        err = errno ? errno : EIO;
        if (fd >= 0)
            close(fd);
        fd = -1;
        goto out;
    }
    helper_fd = fd;
out:
    if (src >= 0)
        close(src);
    pthread_mutex_unlock(&helper_lock);
    return fd >= 0 ? fd : fb_fail(e, err, FB_PHASE_CLONE, "exec helper", path);
}

/* The plan, flattened into a memfd the helper maps. */
static int plan_memfd(const struct fb_plan *p, struct fb_error *e)
{
    char *buf;
    size_t len, done = 0;
    int rc = fb_plan_pack(p, &buf, &len);
    if (rc < 0)
        return fb_fail(e, rc, FB_PHASE_CLONE, "pack the exec plan", NULL);
    int fd = (int)syscall(SYS_memfd_create, "fastbox-exec-plan", FB_MFD_CLOEXEC);
    while (fd >= 0 && done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            fd = -1;
            break;
        }
        done += (size_t)n;
    }
    int err = errno;
    free(buf);
    return fd >= 0 ? fd : fb_fail(e, err, FB_PHASE_CLONE, "exec plan memfd", NULL);
}

static void format_fd(char *buf, int v)
{
    char tmp[12];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}

/* Step 1, in the CLONE_VM child: keep only the named fds, exec the helper. */
int fb_exec_trampoline(void *arg)
{
    struct fb_trampoline *t = arg;
    long r = fb_fds_close_except(t->keep, t->n_keep, &t->report->err);
    /* the helper itself stays close-on-exec: the exec'd helper must not hold its memfd */
    if (r == 0 && (r = FB_SYS3(SYS_fcntl, t->helper_fd, F_SETFD, FD_CLOEXEC)) < 0)
        fb_fail(&t->report->err, r, FB_PHASE_CLONE, "exec helper fd", NULL);
    if (r == 0) {
        r = FB_SYS5(SYS_execveat, t->helper_fd, "", t->argv, t->envp, FB_AT_EMPTY_PATH);
        fb_fail(&t->report->err, r, FB_PHASE_CLONE, "exec the exec helper", NULL);
    }
    for (;;)
        FB_SYS1(SYS_exit, 125);
}

static void keep(struct fb_trampoline *t, int fd)
{
    if (fd >= 0 && t->n_keep < FB_MAX_KEEP)
        t->keep[t->n_keep++] = fd;
}

int fb_exec_prepare(struct fb_child *c, struct fb_trampoline *t, struct fb_report *r)
{
    const struct fb_plan *p = c->plan;
    memset(t, 0, sizeof *t);
    t->report = r;
    t->blob_fd = -1;
    if (!p->enter_helper)
        return fb_fail(&r->err, EINVAL, FB_PHASE_CLONE, "exec helper: none given", NULL);
    if ((t->helper_fd = helper_memfd(p->enter_helper, &r->err)) < 0)
        return -r->err.err;
    if ((t->blob_fd = plan_memfd(p, &r->err)) < 0)
        return -r->err.err;
    for (int i = 0; i < 3; i++)
        keep(t, p->stdio[i]);
    keep(t, p->console_fd);
    keep(t, p->join_pidfd);
    keep(t, c->owner_pidfd);
    keep(t, c->err_fd);
    keep(t, t->blob_fd);
    keep(t, t->helper_fd);
    format_fd(t->bufs[0], t->blob_fd);
    format_fd(t->bufs[1], c->err_fd);
    format_fd(t->bufs[2], c->owner_pidfd);
    t->argv[0] = "fastbox-enter";
    for (int i = 0; i < 3; i++)
        t->argv[i + 1] = t->bufs[i];
    t->argv[4] = NULL;
    t->envp[0] = NULL;
    return 0;
}

/* Steps 3: read the helper's messages until EOF, reap the helper, and name the exec'd
 * process (our child through CLONE_PARENT) by a pidfd. */
int fb_exec_finish(pid_t helper, int fd, struct fb_report *r)
{
    struct fb_enter_msg m;
    pid_t pid = 0;
    int got_report = 0;
    for (;;) {
        ssize_t n = read(fd, &m, sizeof m);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof m)
            break;
        if (m.tag == FB_MSG_PID && m.pid > 0)
            pid = m.pid;
        if (m.tag == FB_MSG_REPORT) {
            got_report = 1;
            r->err = m.report.err;
            for (int i = FB_T_CHILD_START; i <= FB_T_EXEC; i++)
                r->t[i] = m.report.t[i];
        }
    }
    while (waitpid(helper, NULL, __WALL) < 0 && errno == EINTR)
        ;
    if (!r->err.err && (!pid || !got_report))
        fb_fail(&r->err, ECHILD, FB_PHASE_CLONE, "the exec helper died", NULL);
    if (r->err.err) {
        while (pid > 0 && waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        return -r->err.err;
    }
    r->pid = pid;
    r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    return 0;
}
