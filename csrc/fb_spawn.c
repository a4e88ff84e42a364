/* The parent side of starting a container: cgroups, clone with the namespaces, the
 * v1 cgroup attach, and the wait for exec.
 *
 * The child is created with CLONE_VM on a small private stack, so the size of the
 * (Python) parent does not matter: no page tables are copied. */

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fb_cgroup.h"
#include "fb_devices.h"
#include "fb_child.h"
#include "fb_exec.h"
#include "fb_sys.h"

#define FB_STACK_SIZE (256 * 1024)

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#define FB_CLONE_INTO_CGROUP 0x200000000ULL

struct fb_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

#if FB_HAVE_RAW_SYSCALL
/* clone3 has no libc wrapper: the child starts on the new stack inside the syscall, so
 * it must call fn without returning through C frames that live on the parent's stack. */
long fb_clone3_asm(struct fb_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl fb_clone3_asm\n"
        ".hidden fb_clone3_asm\n"
        ".type fb_clone3_asm,@function\n"
        "fb_clone3_asm:\n"
        "  mov %rcx, %r8\n"
        "  mov $435, %eax\n"
        "  syscall\n"
        "  test %rax, %rax\n"
        "  jz 1f\n"
        "  ret\n"
        "1:\n"
        "  xor %ebp, %ebp\n"
        "  mov %r8, %rdi\n"
        "  call *%rdx\n"
        "  mov %eax, %edi\n"
        "  mov $60, %eax\n"
        "  syscall\n"
        "  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl fb_clone3_asm\n"
        ".hidden fb_clone3_asm\n"
        ".type fb_clone3_asm,%function\n"
        "fb_clone3_asm:\n"
        "  mov x8, #435\n"
        "  svc #0\n"
        "  cbz x0, 1f\n"
        "  ret\n"
        "1:\n"
        "  mov x29, xzr\n"
        "  mov x30, xzr\n"
        "  mov x0, x3\n"
        "  blr x2\n"
        "  mov x8, #93\n"
        "  svc #0\n");
#endif
#endif

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* clone3 where we have it (pidfd, CLONE_INTO_CGROUP), else clone(2), which cannot place
 * the child in a v2 cgroup: the child then joins it through cgroup.procs itself. */
static pid_t start_child(struct fb_child *c, int cgfd, void *stack, int *pidfd,
                         int (*fn)(void *), void *arg)
{
    uint64_t flags = (uint64_t)c->plan->ns_flags | (pidfd ? CLONE_PIDFD : 0);
#if FB_HAVE_RAW_SYSCALL
    struct fb_clone_args args = {
        .flags = flags | CLONE_VM | (cgfd >= 0 ? FB_CLONE_INTO_CGROUP : 0),
        .pidfd = (uint64_t)(uintptr_t)pidfd,
        .exit_signal = SIGCHLD,
        .stack = (uint64_t)(uintptr_t)stack,
        .stack_size = FB_STACK_SIZE,
        .cgroup = cgfd >= 0 ? (uint64_t)cgfd : 0,
    };
    long pid = fb_clone3_asm(&args, sizeof args, fn, arg);
    if (pid != -ENOSYS && pid != -E2BIG)
        return pid < 0 ? (errno = (int)-pid, -1) : (pid_t)pid;
    flags |= CLONE_VM;
#endif
    if (c->plan->cg_into) {
        size_t n = strlen(c->plan->cg_into);
        if (n + sizeof "/cgroup.procs" > sizeof c->fallback_join)
            return errno = ENAMETOOLONG, -1;
        memcpy(c->fallback_join, c->plan->cg_into, n);
        memcpy(c->fallback_join + n, "/cgroup.procs", sizeof "/cgroup.procs");
    }
    return clone(fn, (char *)stack + FB_STACK_SIZE, (int)flags | SIGCHLD, arg, pidfd);
}

/* Waits for the child's close-on-exec pipe to reach EOF: at exec or at exit. */
static void wait_exec(int fd)
{
    char b;
    while (read(fd, &b, 1) < 0 && errno == EINTR)
        ;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

/* Clone with every signal blocked: no handler of the parent may run in the child
 * before the child resets them. */
static pid_t clone_blocked(struct fb_child *c, int cgfd, void *stack, int *pidfd,
                           int (*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = start_child(c, cgfd, stack, pidfd, fn, arg);
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return pid;
}

static int finish(pid_t pid, int pidfd, struct fb_report *r)
{
    if (!r->err.err) {
        r->pid = pid;
        r->pidfd = pidfd;
        return 0;
    }
    reap(pid);
    if (pidfd >= 0)
        close(pidfd);
    return -r->err.err;
}

/* exec (fb_exec.c): the clone is only a trampoline to the exec helper. */
static int spawn_enter(struct fb_child *c, int cgfd, void *stack, struct fb_report *r)
{
    struct fb_trampoline t;
    int rc = fb_exec_prepare(c, &t, r);
    if (rc < 0) {
        if (t.blob_fd >= 0)
            close(t.blob_fd);
        return rc;
    }
    /* CLONE_PIDFD is not asked for: the helper's pidfd is of no use, and no pidfd of
     * ours may reach it. */
    pid_t pid = clone_blocked(c, cgfd, stack, NULL, fb_exec_trampoline, &t);
    int clone_errno = errno;
    r->t[FB_T_CLONED] = now_ns();
    close(t.blob_fd);
    close(c->err_fd);
    if (pid < 0) {
        close(c->parent_fd);
        return fb_fail(&r->err, clone_errno, FB_PHASE_CLONE, "clone", NULL);
    }
    rc = fb_exec_finish(pid, c->parent_fd, r);
    close(c->parent_fd);
    r->t[FB_T_EXECED] = now_ns();
    return rc;
}

static int spawn_new(struct fb_child *c, int cgfd, void *stack, struct fb_report *r)
{
    int pidfd = -1;
    pid_t pid = clone_blocked(c, cgfd, stack, &pidfd, fb_child_main, c);
    int clone_errno = errno;
    r->t[FB_T_CLONED] = now_ns();
    close(c->err_fd);
    if (pid > 0)
        wait_exec(c->parent_fd);
    close(c->parent_fd);
    r->t[FB_T_EXECED] = now_ns();
    return pid < 0 ? fb_fail(&r->err, clone_errno, FB_PHASE_CLONE, "clone", NULL) : finish(pid, pidfd, r);
}

int fb_spawn(const struct fb_plan *p, struct fb_report *r)
{
    /* A child that waits for `start` (wait_fifo) outlives this call and our process:
     * what it reads (this struct, its stack) is never freed or reused under it. */
    static struct fb_child waiting;
    struct fb_child local, *cp = p->wait_fifo ? &waiting : &local;
    memset(cp, 0, sizeof *cp);
    cp->plan = p;
    cp->report = r;
    cp->report_fd = -1;
#define c (*cp)
    int errp[2], cgfd = -1, rc;
    memset(r, 0, sizeof *r);
    r->pidfd = -1;
    r->t[FB_T_START] = now_ns();
    if (p->n_mounts > FB_MAX_MOUNTS)
        return fb_fail(&r->err, E2BIG, FB_PHASE_MOUNTS, "too many mounts", NULL);
    /* Made before the clone, on this CPU: on a small VM, waking the other (idle) vCPU to
     * overlap this with the child's work costs more than the work itself. */
    if ((rc = fb_cgroup_prepare(p, &r->err)) < 0 || (rc = fb_cgroup_open_into(p, &cgfd, &r->err)) < 0)
        return rc;
    /* v2: the device program goes on the container's cgroup before the child exists, which
     * CLONE_INTO_CGROUP then starts inside it: nothing runs there unfiltered. */
    if (p->dev_prog_fd >= 0 && (rc = fb_devices_attach(cgfd, p->dev_prog_fd, p->cg_into, &r->err)) < 0) {
        if (cgfd >= 0)
            close(cgfd);
        return rc;
    }
    r->t[FB_T_CGROUP_READY] = now_ns();
    /* The child dies with us: it checks this pidfd once its death signal is set. */
    c.owner_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    void *stack = mmap(NULL, FB_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED || pipe2(errp, O_CLOEXEC) < 0) {
        rc = fb_fail(&r->err, errno, FB_PHASE_CLONE, stack == MAP_FAILED ? "mmap" : "pipe", NULL);
        goto out;
    }
    c.err_fd = errp[1];
    c.parent_fd = errp[0];
    rc = p->join_pidfd >= 0 ? spawn_enter(&c, cgfd, stack, r) : spawn_new(&c, cgfd, stack, r);
out:
    if (stack != MAP_FAILED && (!p->wait_fifo || rc < 0))
        munmap(stack, FB_STACK_SIZE); /* the child is past execve (new mm) or gone */
    if (cgfd >= 0)
        close(cgfd);
    if (c.owner_pidfd >= 0)
        close(c.owner_pidfd);
    return rc;
}
#undef c
