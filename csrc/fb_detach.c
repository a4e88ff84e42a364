/* Starting a container that outlives its caller: a double clone puts an intermediate
 * process in a new session, with no parent but init (or a subreaper); it starts the
 * container with fb_spawn, so the container is its child, reports back over a pipe, and
 * execs fastbox-monitor, which inherits the container as its child. No Python runs
 * in the new processes.
 *
 * Both clones share our memory (CLONE_VM, as vfork does) instead of copying it: a fork
 * of the engine copied the page tables of a large Python process and then paid its
 * copy-on-write faults and the teardown of the copy at the monitor's exec, ~3-7 ms of a
 * `run -d` here. The intermediate runs on the calling thread's TLS, so that thread
 * waits, all signals blocked, touching nothing until the intermediate has exec'd or
 * died (the sync pipe's end of file): exactly the container child's own contract with
 * fb_spawn. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "fb_plan.h"

#define FB_MAX_MONITOR_ARGS 160

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The caller's side, while the intermediate runs on its TLS: raw syscalls, which (with
 * every signal blocked) neither fail nor touch the thread's cancellation state, as the
 * libc wrappers of read and close do. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = syscall(SYS_read, fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return (int)got;
}

static void null_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; fd >= 0 && i < 3; i++)
        dup2(fd, i);
    if (fd > 2)
        close(fd);
}

/* The master of the terminal the container made, sent over the console socket. */
static int receive_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

/* The intermediate: spawn, report, become the monitor. Never returns. */
static void run_intermediate(const struct fb_plan *p, const struct fb_monitor_args *m, int sync_fd,
                             const sigset_t *mask)
{
    signal(SIGPIPE, SIG_IGN); /* a dead starter's pipe: EPIPE, not death */
    struct fb_report rep;
    char pidbuf[24], ttybuf[24];
    const char *argv[FB_MAX_MONITOR_ARGS + 5];
    pid_t self = getpid();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int rc = fb_spawn(p, &rep);
    /* If the starter died meanwhile the report goes nowhere; the container runs anyway
     * and must get its monitor (whose started.json tells the record it runs). */
    if (write_all(sync_fd, &rep, sizeof rep) == 0)
        write_all(sync_fd, &self, sizeof self);
    if (rc < 0)
        _exit(125);
    int n = 0, master = m->console_fd >= 0 ? receive_fd(m->console_fd) : -1;
    for (; n < m->argc && n < FB_MAX_MONITOR_ARGS; n++)
        argv[n] = m->argv[n];
    fb_format_int(pidbuf, rep.pid);
    argv[n++] = "--pid";
    argv[n++] = pidbuf;
    if (master >= 0) {
        fb_format_int(ttybuf, master);
        argv[n++] = "--tty";
        argv[n++] = ttybuf;
    }
    argv[n] = NULL;
    /* The monitor inherits nothing of the caller's but the fds it was given: an
     * inherited pipe (a test harness's, a shell's) would otherwise stay open for as
     * long as the container runs. */
    syscall(SYS_close_range, 3, ~0U, 1U << 2 /* CLOSE_RANGE_CLOEXEC */);
    for (int i = 0; i < m->n_keep_fds; i++)
        fcntl(m->keep_fds[i], F_SETFD, 0);
    if (master >= 0)
        fcntl(master, F_SETFD, 0);
    if (rep.pidfd >= 0)
        close(rep.pidfd);
    null_stdio();
    sigprocmask(SIG_SETMASK, mask, NULL); /* the monitor starts as its caller was */
    execv(argv[0], (char *const *)argv);
    int err = errno;
    kill(rep.pid, SIGKILL); /* no monitor: the container must not run unwatched */
    write_all(sync_fd, &err, sizeof err);
    _exit(127);
}

#define FB_DETACH_STACK (512 * 1024) /* the intermediate's: fb_spawn's frames and its argv */
#define FB_FIRST_STACK (16 * 1024)

struct detach_job {
    const struct fb_plan *p;
    const struct fb_monitor_args *m;
    int sync_r, sync_w;
    char *stack;   /* the intermediate's */
    sigset_t mask; /* the caller's, for the monitor */
};

static int second_main(void *arg)
{
    struct detach_job *j = arg;
    close(j->sync_r);
    run_intermediate(j->p, j->m, j->sync_w, &j->mask);
    return 0;
}

/* The first clone: a new session, the intermediate, and gone, so that the intermediate
 * is nobody's child but init's (or a subreaper's). */
static int first_main(void *arg)
{
    struct detach_job *j = arg;
    setsid();
    pid_t second = clone(second_main, j->stack + FB_DETACH_STACK, CLONE_VM | SIGCHLD, j);
    syscall(SYS_exit, second < 0 ? 1 : 0); /* this process only, and no atexit work */
    return 0;
}

/* The first child and the intermediate, each a CLONE_VM process; the intermediate's
 * fork() instead when the plan has a child that outlives the start (it waits for a
 * later `start`): that one must not share our memory. */
static pid_t start_detached(struct detach_job *j, char *first_stack)
{
    if (j->p->wait_fifo) {
        pid_t first = fork();
        if (first == 0) {
            setsid();
            pid_t second = fork();
            if (second != 0)
                _exit(second < 0 ? 1 : 0);
            close(j->sync_r);
            run_intermediate(j->p, j->m, j->sync_w, &j->mask);
        }
        return first;
    }
    /* CLONE_VFORK: we resume once the first child is gone, its stack free again. */
    return clone(first_main, first_stack + FB_FIRST_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, j);
}

int fb_spawn_detached(const struct fb_plan *p, const struct fb_monitor_args *m, struct fb_report *r,
                      pid_t *monitor_pid)
{
    int sync[2], status, err = 0;
    sigset_t all;
    memset(r, 0, sizeof *r);
    r->pidfd = -1;
    if (pipe2(sync, O_CLOEXEC) < 0)
        return fb_fail(&r->err, errno, FB_PHASE_CLONE, "pipe", NULL);
    char *stacks = mmap(NULL, FB_DETACH_STACK + FB_FIRST_STACK, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stacks == MAP_FAILED) {
        int e = errno;
        close(sync[0]);
        close(sync[1]);
        return fb_fail(&r->err, e, FB_PHASE_CLONE, "mmap", NULL);
    }
    struct detach_job j = {.p = p, .m = m, .sync_r = sync[0], .sync_w = sync[1], .stack = stacks};
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &j.mask);
    pid_t first = start_detached(&j, stacks + FB_DETACH_STACK);
    int fork_err = errno;
    syscall(SYS_close, sync[1]);
    if (first < 0) {
        pthread_sigmask(SIG_SETMASK, &j.mask, NULL);
        munmap(stacks, FB_DETACH_STACK + FB_FIRST_STACK);
        close(sync[0]);
        return fb_fail(&r->err, fork_err, FB_PHASE_CLONE, "clone", NULL);
    }
    syscall(SYS_wait4, first, &status, 0, NULL); /* signals blocked: no EINTR */
    int got = read_all(sync[0], r, sizeof *r);
    got += read_all(sync[0], monitor_pid, sizeof *monitor_pid);
    int exec_failed = read_all(sync[0], &err, sizeof err) == sizeof err;
    /* End of file: the intermediate has exec'd (a new mm) or is gone; its stack is ours. */
    close(sync[0]);
    munmap(stacks, FB_DETACH_STACK + FB_FIRST_STACK);
    pthread_sigmask(SIG_SETMASK, &j.mask, NULL);
    if (got != (int)(sizeof *r + sizeof *monitor_pid))
        return fb_fail(&r->err, ECHILD, FB_PHASE_CLONE, "the starting process died", NULL);
    if (r->err.err)
        return -r->err.err;
    if (exec_failed)
        return fb_fail(&r->err, err, FB_PHASE_CLONE, "exec monitor", m->argv[0]);
    r->pidfd = -1; /* the pidfd belonged to the intermediate */
    return 0;
}
