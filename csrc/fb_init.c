/* The container child: its ordered steps from clone to execve.
 *
 * It shares the parent's memory, so it allocates nothing, calls no libc function that
 * can touch errno or locks, and reports failure by filling the shared report and
 * exiting; the parent learns of success when the close-on-exec pipe reaches EOF. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <poll.h>
#include <linux/capability.h>
#include "fb_child.h"
#include "fb_sys.h"

void fb_stamp(struct fb_child *c, int which)
{
    struct timespec ts;
#ifdef FB_NOLIBC /* the exec helper has no vDSO lookup */
    FB_SYS2(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts); /* vDSO: no syscall, no errno on success */
#endif
    c->report->t[which] = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void send_msg(struct fb_child *c, int tag, int pid);

static __attribute__((noreturn)) void child_exit(int code)
{
    for (;;)
        FB_SYS1(SYS_exit, code);
}

/* Put the plan's fds on 0, 1, 2. A source that is itself one of 0-2 (stderr to the
 * caller's stdout, say) is first copied above 2, so that no dup clobbers a source that
 * a later dup still needs; the copies are close-on-exec. */
static int setup_stdio(struct fb_child *c)
{
    long src[3];
    for (int i = 0; i < 3; i++) {
        src[i] = c->plan->stdio[i];
        if (src[i] >= 0 && src[i] < 3 && src[i] != i)
            src[i] = FB_SYS3(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3);
        if (src[i] < -1)
            return fb_fail(&c->report->err, src[i], FB_PHASE_STDIO, "stdio", NULL);
    }
    for (int i = 0; i < 3; i++) {
        long r = 0;
        if (src[i] == i)
            r = FB_SYS3(SYS_fcntl, i, F_SETFD, 0);
        else if (src[i] >= 0)
            r = FB_SYS3(SYS_dup3, src[i], i, 0);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_STDIO, "stdio", NULL);
    }
    return 0;
}

/* Move ourselves into each cgroup (v1 cannot place a child at clone time), then make
 * our own cgroup the root of a new cgroup namespace. Done first, so that everything the
 * child does is accounted to the container. */
static int join_file(struct fb_child *c, const char *path)
{
    long fd = FB_SYS3(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    long r = fd < 0 ? fd : FB_SYS3(SYS_write, fd, "0", 1);
    if (fd >= 0)
        FB_SYS1(SYS_close, fd);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_CGROUP_JOIN, "join cgroup", path) : 0;
}

static int join_cgroups(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    for (int i = 0; i < p->n_cg_join; i++)
        if (join_file(c, p->cg_join[i]) < 0)
            return -1;
    if (c->fallback_join[0] && join_file(c, c->fallback_join) < 0)
        return -1;
    if (p->unshare_cgroupns) {
        long r = FB_SYS1(SYS_unshare, CLONE_NEWCGROUP);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_CGROUP_JOIN, "unshare cgroup namespace", NULL);
    }
    return 0;
}

/* Drop every capability outside the plan's set from the bounding set; *kept is the
 * plan's set as far as we hold it (capset may not grant more than is permitted). No
 * per-capability read: dropping one already gone succeeds, and the first number past
 * the kernel's last capability fails with EINVAL. */
static int drop_capabilities(struct fb_child *c, uint64_t *kept)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    long r = FB_SYS2(SYS_capget, &hdr, data);
    if (r < 0)
        return fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "capget", NULL);
    uint64_t permitted = data[0].permitted | ((uint64_t)data[1].permitted << 32);
    *kept = c->plan->caps & permitted;
    for (int cap = 0; cap < 64; cap++) {
        if (c->plan->caps & (1ULL << cap))
            continue;
        r = FB_SYS2(SYS_prctl, PR_CAPBSET_DROP, cap);
        if (r == -EINVAL)
            break; /* past the kernel's last capability */
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "drop capability", NULL);
    }
    return 0;
}

/* Root keeps the plan's set as effective and permitted; any other uid loses them at
 * setresuid, as with Docker. */
static int set_capabilities(struct fb_child *c, uint64_t kept)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    uint64_t caps = c->plan->uid == 0 ? kept : 0;
    /* Inheritable stays empty (CVE-2022-24769): with it, an exec'd file's inheritable
     * capabilities would be gained. */
    for (int i = 0; i < 2; i++) {
        data[i].effective = data[i].permitted = (uint32_t)(caps >> (32 * i));
        data[i].inheritable = 0;
    }
    long r = FB_SYS2(SYS_capset, &hdr, data);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "capset", NULL) : 0;
}

static int set_hostname(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    if (!p->hostname || !(p->ns_flags & CLONE_NEWUTS))
        return 0;
    long r = FB_SYS2(SYS_sethostname, p->hostname, strlen(p->hostname));
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "sethostname", p->hostname) : 0;
}

static int set_identity(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    struct fb_error *e = &c->report->err;
    long r;
    uint64_t kept = 0;
    if (drop_capabilities(c, &kept) < 0)
        return -1;
    r = FB_SYS2(SYS_setgroups, p->n_groups, p->groups);
    if (r == 0)
        r = FB_SYS3(SYS_setresgid, p->gid, p->gid, p->gid);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_IDENTITY, "set group ids", NULL);
    r = FB_SYS3(SYS_setresuid, p->uid, p->uid, p->uid);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_IDENTITY, "setresuid", NULL);
    if (set_capabilities(c, kept) < 0)
        return -1;
    if (p->no_new_privs) {
        r = FB_SYS5(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (r < 0)
            return fb_fail(e, r, FB_PHASE_IDENTITY, "no_new_privs", NULL);
    }
    return 0;
}

struct fb_kernel_sigaction {
    unsigned long handler;
    unsigned long flags;
    unsigned long restorer;
    uint64_t mask;
};

/* Python ignores SIGPIPE and blocks nothing, but a caller may have: the program starts
 * with every disposition at its default. execve keeps SIG_IGN, so reset explicitly. */
static void reset_signals(void)
{
    struct fb_kernel_sigaction dfl = {0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            FB_SYS4(SYS_rt_sigaction, sig, &dfl, 0, sizeof(uint64_t));
}

static void unblock_signals(void)
{
    uint64_t none = 0;
    FB_SYS4(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof none);
}

/* execve the program, searching $PATH when it has no slash, like execvpe. */
static int exec_program(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    const char *prog = p->argv[0];
    char buf[4096];
    long r, seen_eacces = 0;
    if (p->init_fd >= 0) {
        r = FB_SYS5(SYS_execveat, p->init_fd, "", p->argv, p->envp, 0x1000 /* AT_EMPTY_PATH */);
        return fb_fail(&c->report->err, r, FB_PHASE_EXEC, "exec", "the --init program");
    }
    if (strchr(prog, '/')) {
        r = FB_SYS3(SYS_execve, prog, p->argv, p->envp);
        return fb_fail(&c->report->err, r, FB_PHASE_EXEC, "exec", prog);
    }
    size_t plen = strlen(prog);
    for (const char *dir = p->path; dir && *dir;) {
        const char *end = strchr(dir, ':');
        size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
        if (dlen + plen + 2 <= sizeof buf) {
            memcpy(buf, dlen ? dir : ".", dlen ? dlen : 1);
            size_t pos = dlen ? dlen : 1;
            buf[pos++] = '/';
            memcpy(buf + pos, prog, plen + 1);
            r = FB_SYS3(SYS_execve, buf, p->argv, p->envp);
            if (r == -EACCES)
                seen_eacces = 1;
            else if (r != -ENOENT && r != -ENOTDIR)
                return fb_fail(&c->report->err, r, FB_PHASE_EXEC, "exec", prog);
        }
        dir = end ? end + 1 : dir + dlen;
    }
    return fb_fail(&c->report->err, seen_eacces ? EACCES : ENOENT, FB_PHASE_EXEC, "exec", prog);
}

/* A terminal from the container's own devpts (so ttyname() works inside, as with
 * Docker): open its ptmx, make the peer our stdio and controlling terminal, and hand
 * the master to the caller over the console socket (SCM_RIGHTS). */
static int send_fd(int sock, int fd)
{
    char byte = 'm';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return (int)FB_SYS3(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL);
}

static int setup_console(struct fb_child *c)
{
    struct fb_error *e = &c->report->err;
    int unlock = 0;
    long master = FB_SYS4(SYS_openat, AT_FDCWD, "/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
    if (master < 0)
        return fb_fail(e, master, FB_PHASE_STDIO, "open", "/dev/ptmx");
    long r = FB_SYS3(SYS_ioctl, master, TIOCSPTLCK, &unlock);
    /* The caller's size before the program runs: it may ask at once (`stty size`). */
    struct winsize ws = {.ws_row = c->plan->console_rows, .ws_col = c->plan->console_cols};
    if (r >= 0 && ws.ws_row && ws.ws_col)
        r = FB_SYS3(SYS_ioctl, master, TIOCSWINSZ, &ws);
    long slave = r < 0 ? r : FB_SYS3(SYS_ioctl, master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    for (int i = 0; slave >= 0 && i < 3 && r >= 0; i++)
        r = FB_SYS3(SYS_dup3, slave, i, 0);
    if (r >= 0 && slave >= 0)
        r = FB_SYS0(SYS_setsid);
    if (r >= 0 && slave >= 0)
        r = FB_SYS3(SYS_ioctl, 0, TIOCSCTTY, 0);
    if (r >= 0 && slave >= 0)
        r = send_fd(c->plan->console_fd, (int)master);
    FB_SYS1(SYS_close, master);
    if (slave >= 0)
        FB_SYS1(SYS_close, slave);
    FB_SYS1(SYS_close, c->plan->console_fd);
    long err = slave < 0 ? slave : r;
    return err < 0 ? fb_fail(e, err, FB_PHASE_STDIO, "container terminal", NULL) : 0;
}

/* A new network namespace starts with lo down; Docker's "none" network has it up. */
static int loopback_up(struct fb_child *c)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    long fd = FB_SYS3(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    long r = fd < 0 ? fd : FB_SYS3(SYS_ioctl, fd, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = FB_SYS3(SYS_ioctl, fd, SIOCSIFFLAGS, &ifr);
    }
    if (fd >= 0)
        FB_SYS1(SYS_close, fd);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "bring up lo", NULL) : 0;
}

/* The starter's death kills us (SIGKILL), and a starter already dead when that was set
 * stops us here: no container process runs with nobody to reap it and tear it down.
 * Set again after the identity change: a change of uid clears it. */
static int tie_to_owner(struct fb_child *c)
{
    if (c->plan->detached)
        return 0;
    long r = FB_SYS2(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
    if (r == 0 && c->owner_pidfd >= 0) {
        struct pollfd pfd = {.fd = c->owner_pidfd, .events = POLLIN};
        struct timespec zero = {0, 0};
        r = FB_SYS5(SYS_ppoll, &pfd, 1, &zero, 0, 8);
        if (r > 0)
            r = -ESRCH; /* readable: the starter has exited */
    }
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_CLONE, "tie to the starting process", NULL) : 0;
}

/* runc's verifyCwd: a working directory reached through a leaked fd or a magic link
 * (WORKDIR /proc/self/fd/N) lies outside our root, and the kernel's getcwd then says
 * "(unreachable)" instead of an absolute path. */
static int verify_cwd(struct fb_child *c)
{
    char buf[FB_PATH_MAX];
    long r = FB_SYS2(SYS_getcwd, buf, sizeof buf);
    if (r > 0 && buf[0] == '/')
        return 0;
    return fb_fail(&c->report->err, r < 0 ? r : EPERM, FB_PHASE_MOUNTS,
                   "possible container breakout detected: the working directory is outside the container:",
                   c->plan->cwd);
}

/* Without a terminal of its own the process leaves the caller's session, so /dev/tty
 * fails (ENXIO) and TIOCSTI cannot reach the caller's shell. */
static int new_session(struct fb_child *c)
{
    long r = FB_SYS0(SYS_setsid);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_STDIO, "setsid", NULL) : 0;
}

/* OCI `create`: everything is set up; tell the starter (EOF on the exec pipe) and wait,
 * as runc's init waits on exec.fifo, until `start` opens the fifo for reading. The fifo
 * is reopened through our own O_PATH fd, in the container's /proc. */
static int wait_for_start(struct fb_child *c)
{
    char path[64] = "/proc/self/fd/";
    fb_format_int(path + strlen(path), c->plan->wait_fifo_fd);
    FB_SYS1(SYS_close, c->err_fd);
    long fd;
    do
        fd = FB_SYS3(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    while (fd == -EINTR);
    long r = fd < 0 ? fd : FB_SYS3(SYS_write, fd, "0", 1);
    if (fd >= 0)
        FB_SYS1(SYS_close, fd);
    FB_SYS1(SYS_close, c->plan->wait_fifo_fd);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_EXEC, "exec.fifo", NULL) : 0;
}

/* --sysctl: in the container's own namespaces (net, IPC, UTS), through the /proc just
 * mounted for it (its files are the kernel's: nothing of the image is resolved). */
static int write_sysctls(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    for (int i = 0; i < p->n_sysctls; i++) {
        long fd = FB_SYS3(SYS_openat, AT_FDCWD, p->sysctl_paths[i], O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        long n = (long)strlen(p->sysctl_values[i]);
        long w = fd < 0 ? fd : FB_SYS3(SYS_write, fd, p->sysctl_values[i], n);
        if (fd >= 0)
            FB_SYS1(SYS_close, fd);
        if (w < 0 || w != n)
            return fb_fail(&c->report->err, w < 0 ? w : -EIO, FB_PHASE_MOUNTS, "--sysctl", p->sysctl_paths[i]);
    }
    return 0;
}

/* A new container: its own root filesystem, pivoted into, with the system mounts. */
static int build_rootfs(struct fb_child *c)
{
    if (fb_mount_rootfs(c) < 0 || fb_open_volumes(c) < 0)
        return -1;
    fb_stamp(c, FB_T_ROOTFS);
    if (fb_pivot(c) < 0)
        return -1;
    fb_stamp(c, FB_T_PIVOT);
    if (fb_mount_system(c) < 0 || write_sysctls(c) < 0 || fb_mount_volumes(c) < 0 ||
        fb_mask_paths(c) < 0)
        return -1;
    if (fb_finish_rootfs(c) < 0)
        return -1;
    fb_stamp(c, FB_T_MOUNTS);
    return 0;
}

/* The steps shared by a new container's init and an exec'd process, once it stands in
 * the container's filesystem: session or terminal, identity, seccomp, then execve. */
static int start_program(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    if ((p->console_fd >= 0 ? setup_console(c) : new_session(c)) < 0)
        return -1;
    /* lo comes up while we still hold CAP_NET_ADMIN, which set_identity drops. */
    if ((p->loopback_up && loopback_up(c) < 0) || set_hostname(c) < 0)
        return -1;
    /* With no_new_privs the filter goes in last, right before execve, so that a profile
     * need allow nothing of ours but execve. Without, installing one takes CAP_SYS_ADMIN:
     * it goes in before set_identity drops that (as runc does), and the profile must
     * allow what follows (setresuid, capset, prctl, close_range, rt_sigaction...). */
    if (!p->no_new_privs && fb_seccomp(c) < 0)
        return -1;
    for (int i = 0; i < p->n_rlimits; i++) {
        const uint64_t *l = p->rlimits + 3 * i;
        long r = FB_SYS4(SYS_prlimit64, 0, l[0], &l[1], 0);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "set --ulimit", NULL);
    }
    /* OCI create waits here, still root: a non-dumpable process that has become another
     * user cannot open its own /proc/self/fd (root owns it), through which the fifo is
     * reopened. */
    if (p->wait_fifo && wait_for_start(c) < 0)
        return -1;
    if (set_identity(c) < 0 || tie_to_owner(c) < 0)
        return -1;
    FB_SYS1(SYS_umask, 022);
    reset_signals();
    if (fb_fds_cloexec(&c->report->err) < 0)
        return -1;
    unblock_signals();
    fb_stamp(c, FB_T_EXEC);
    /* exec helper: the stamps go to the starter (no shared memory) before the filter, which
     * need not allow write */
    if (c->report_fd >= 0)
        send_msg(c, FB_MSG_REPORT, 0);
    if (p->no_new_privs && fb_seccomp(c) < 0)
        return -1;
    return exec_program(c);
}

static int child_steps(struct fb_child *c)
{
    fb_stamp(c, FB_T_CHILD_START);
    /* OCI create: this clone of the runtime lives on, blocked, until `start`; non-dumpable,
     * so nothing that can see it (a process in a pid namespace it joined) can ptrace it
     * or open its /proc/N/exe, the host's runtime binary (CVE-2019-5736). exec resets it. */
    if (c->plan->wait_fifo)
        FB_SYS2(SYS_prctl, PR_SET_DUMPABLE, 0);
    FB_SYS1(SYS_umask, 0); /* device nodes and dirs get exactly the modes asked for */
    /* Every fd of the caller's is close-on-exec before anything touches the container's
     * filesystem; verify_cwd then proves the working directory is inside. */
    if (tie_to_owner(c) < 0 || fb_fds_cloexec(&c->report->err) < 0)
        return -1;
    if (setup_stdio(c) < 0 || join_cgroups(c) < 0)
        return -1;
    fb_stamp(c, FB_T_CGROUP);
    if (c->plan->join_netns_fd >= 0) {
        long r = FB_SYS2(SYS_setns, c->plan->join_netns_fd, CLONE_NEWNET);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_CGROUP_JOIN, "enter the pool's network namespace", NULL);
    }
    if (build_rootfs(c) < 0 || verify_cwd(c) < 0)
        return -1;
    return start_program(c);
}

static int exit_code(struct fb_child *c)
{
    /* Docker's codes: 127 not found, 126 cannot execute, else an engine failure. */
    int e = c->report->err.err;
    return c->report->err.phase == FB_PHASE_EXEC ? (e == ENOENT ? 127 : 126) : 125;
}

static void send_msg(struct fb_child *c, int tag, int pid)
{
    struct fb_enter_msg m;
    memset(&m, 0, sizeof m);
    m.tag = tag;
    m.pid = pid;
    if (tag == FB_MSG_REPORT)
        m.report = *c->report;
    FB_SYS3(SYS_write, c->report_fd, &m, sizeof m);
}

/* The exec'd process, forked by the helper inside the container's pid namespace: it is
 * not dumpable (inherited from the helper) and holds only the fds it was given. */
static int enter_steps(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    FB_SYS1(SYS_umask, 0);
    if (tie_to_owner(c) < 0 || fb_fds_cloexec(&c->report->err) < 0 || setup_stdio(c) < 0)
        return -1;
    if (p->cwd && p->cwd[0]) {
        long r = FB_SYS1(SYS_chdir, p->cwd);
        if (r < 0)
            return fb_fail(&c->report->err, r, FB_PHASE_MOUNTS, "working directory", p->cwd);
    }
    if (verify_cwd(c) < 0)
        return -1;
    fb_stamp(c, FB_T_MOUNTS);
    return start_program(c);
}

/* The helper itself, in the host's pid namespace (so the container cannot see it): join
 * the v1 cgroups, enter the container's namespaces, fork the process that execs into
 * its pid namespace as our starter's child (CLONE_PARENT: the starter waits for it),
 * tell the starter its pid, and exit. */
void fb_enter_main(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    fb_stamp(c, FB_T_CHILD_START);
    if (tie_to_owner(c) < 0 || join_cgroups(c) < 0)
        goto fail;
    fb_stamp(c, FB_T_CGROUP);
    long r = FB_SYS2(SYS_setns, p->join_pidfd, p->join_ns_flags | CLONE_NEWPID);
    if (r < 0) {
        fb_fail(&c->report->err, r, FB_PHASE_ROOTFS, "enter the container's namespaces", NULL);
        goto fail;
    }
    FB_SYS1(SYS_close, p->join_pidfd);
    fb_stamp(c, FB_T_ROOTFS);
    long pid = FB_SYS5(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        enter_steps(c);
        send_msg(c, FB_MSG_REPORT, 0);
        child_exit(exit_code(c));
    }
    if (pid < 0) {
        fb_fail(&c->report->err, pid, FB_PHASE_CLONE, "fork into the container", NULL);
        goto fail;
    }
    send_msg(c, FB_MSG_PID, (int)pid);
    child_exit(0);
fail:
    send_msg(c, FB_MSG_REPORT, 0);
    child_exit(exit_code(c));
}

int fb_child_main(void *arg)
{
    struct fb_child *c = arg;
    FB_SYS1(SYS_close, c->parent_fd);
    child_steps(c);
    child_exit(exit_code(c));
}
