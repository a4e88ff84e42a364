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

/* No IPv6 router advertisements in a container's namespace: its interfaces (made after
 * this, so they copy "default") take none, as Docker's since CVE-2020-13401. Otherwise a
 * neighbour on the bridge with NET_RAW (a default capability) could advertise itself as
 * the default router and hand out addresses, and take its neighbours' IPv6 traffic. The
 * IPv6 addresses and routes fastbox gives are static. Written through /proc/sys/net,
 * which is the calling thread's namespace's; no IPv6 in the kernel: nothing to do. */
static void no_router_advertisements(void)
{
    static const char *const knobs[] = {"/proc/sys/net/ipv6/conf/default/accept_ra",
                                        "/proc/sys/net/ipv6/conf/all/accept_ra"};
    for (size_t i = 0; i < sizeof knobs / sizeof *knobs; i++) {
        int fd = open(knobs[i], O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, "0", 1);
            close(fd);
        }
    }
}

int fb_netns_unshare(struct fb_error *e)
{
    if (unshare(CLONE_NEWNET) < 0)
        return fb_fail(e, errno, FB_PHASE_CLONE, "unshare network namespace", NULL);
    no_router_advertisements();
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

int fb_netns_new(struct fb_error *e)
{
    struct netns_job job = {-1, e};
    pthread_t t;
    int rc = pthread_create(&t, NULL, make_netns, &job);
    if (rc != 0)
        return fb_fail(e, rc, FB_PHASE_CLONE, "thread for a network namespace", NULL);
    pthread_join(t, NULL);
    return job.fd;
}
