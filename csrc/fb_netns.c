/* Network namespaces made ahead of time. Creating one is the costliest step of a
 * container start (~0.5 ms here), and its creation and teardown contend on the kernel's
 * rtnl lock, which caps a burst's rate. A pool (fastbox.burst.Pool) makes its namespaces
 * once and reuses them; the spare worker (fb_spare.c) makes one per container. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include "fb_plan.h"

struct netns_job {
    int fd;
    struct fb_error *e;
};

static int lo_up(void)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r = s < 0 ? -1 : ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    if (s >= 0)
        close(s);
    errno = err;
    return r;
}

int fb_netns_unshare(struct fb_error *e)
{
    if (unshare(CLONE_NEWNET) < 0)
        return fb_fail(e, errno, FB_PHASE_CLONE, "unshare network namespace", NULL);
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lo_up() < 0) {
        int rc = fb_fail(e, errno, FB_PHASE_CLONE, fd < 0 ? "open netns" : "bring up lo", NULL);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    return fd;
}

static void *make_netns(void *arg)
{
    struct netns_job *job = arg;
    job->fd = fb_netns_unshare(job->e);
    return NULL;
}

/* fn(arg) on a short-lived thread, joined: what enters a namespace never leaves the
 * caller's thread in it. 0, or the thread could not be made (e filled). */
static int on_thread(void *(*fn)(void *), void *arg, struct fb_error *e, int phase, const char *what)
{
    pthread_t t;
    int rc = pthread_create(&t, NULL, fn, arg);
    if (rc != 0)
        return fb_fail(e, rc, phase, what, NULL);
    pthread_join(t, NULL);
    return 0;
}

int fb_netns_new(struct fb_error *e)
{
    struct netns_job job = {-1, e};
    int rc = on_thread(make_netns, &job, e, FB_PHASE_CLONE, "thread for a network namespace");
    return rc < 0 ? rc : job.fd;
}

/* --sysctl net.*: written in the container's namespace before anything of the container
 * runs there, from a short-lived thread that enters it (a /proc/sys/net file is the
 * opener's namespace's). paths: "/proc/sys/net/..." (checked by the caller), values. */
struct sysctl_job {
    int netns_fd, n;
    const char *const *paths, *const *values;
    struct fb_error *e;
    int rc;
};

static void *write_sysctls(void *arg)
{
    struct sysctl_job *job = arg;
    if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
        job->rc = fb_fail(job->e, errno, FB_PHASE_NETWORK, "enter the container's network namespace", NULL);
        return NULL;
    }
    for (int i = 0; i < job->n; i++) {
        int fd = open(job->paths[i], O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t len = strlen(job->values[i]);
        ssize_t w = fd < 0 ? -1 : write(fd, job->values[i], len);
        int err = errno;
        if (fd >= 0)
            close(fd);
        if (fd < 0 || w != (ssize_t)len) {
            job->rc = fb_fail(job->e, fd < 0 || w < 0 ? err : EIO, FB_PHASE_NETWORK, "--sysctl", job->paths[i]);
            return NULL;
        }
    }
    return NULL;
}

int fb_netns_sysctls(int netns_fd, const char *const *paths, const char *const *values, int n,
                     struct fb_error *e)
{
    struct sysctl_job job = {netns_fd, n, paths, values, e, 0};
    int rc = on_thread(write_sysctls, &job, e, FB_PHASE_NETWORK, "thread for --sysctl");
    return rc < 0 ? rc : job.rc;
}
