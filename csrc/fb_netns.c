/* Network namespaces made ahead of time. Creating one is the costliest step of a
 * container start (~0.5 ms here), and its creation and teardown contend on the kernel's
 * rtnl lock, which caps a burst's rate. Two users:
 *  - a pool (fastbox.burst.Pool) makes its namespaces once and reuses them;
 *  - the spare: one new, never-used namespace that a worker thread makes while the
 *    previous container runs, so the next container enters it instead of creating
 *    one on its start path. Each spare serves exactly one container. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
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

static void *make_netns(void *arg)
{
    struct netns_job *job = arg;
    if (unshare(CLONE_NEWNET) < 0) {
        job->fd = fb_fail(job->e, errno, FB_PHASE_CLONE, "unshare network namespace", NULL);
        return NULL;
    }
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lo_up() < 0) {
        job->fd = fb_fail(job->e, errno, FB_PHASE_CLONE, fd < 0 ? "open netns" : "bring up lo", NULL);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    job->fd = fd;
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

/* The spare. One worker thread per process, started on first use, blocked until asked
 * for a namespace. A fork()ed child starts with no spare and no worker (the worker is
 * not copied; the fd would be a namespace the parent might hand out too). */
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spare_wanted = PTHREAD_COND_INITIALIZER;
static int spare_fd = -1;      /* ready namespace, owned by the spare until taken */
static int spare_making;       /* the worker has been asked for one */
static int spare_worker;       /* the worker thread exists in this process */
static int spare_atfork;

static void spare_forked(void)
{
    if (spare_fd >= 0)
        close(spare_fd);
    spare_fd = -1;
    spare_making = spare_worker = 0;
    pthread_mutex_init(&spare_lock, NULL);
    pthread_cond_init(&spare_wanted, NULL);
}

static void *spare_main(void *arg)
{
    /* After each one the worker goes home, so that it holds no reference to a
     * namespace it handed out (which would outlive its container). */
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    pthread_mutex_lock(&spare_lock);
    for (;;) {
        while (!spare_making)
            pthread_cond_wait(&spare_wanted, &spare_lock);
        pthread_mutex_unlock(&spare_lock);
        struct fb_error e;
        struct netns_job job = {-1, &e};
        if (home >= 0)
            make_netns(&job);
        if (job.fd >= 0 && setns(home, CLONE_NEWNET) < 0) {
            close(job.fd);  /* stuck in it: no more spares from this worker */
            close(home);
            job.fd = home = -1;
        }
        pthread_mutex_lock(&spare_lock);
        spare_making = 0;
        if (job.fd >= 0 && spare_fd < 0)
            spare_fd = job.fd;
        else if (job.fd >= 0)
            close(job.fd);
    }
    return NULL;
}

/* Must hold spare_lock. Asks the worker for the next spare, starting it if needed;
 * failing that, there is simply no spare (the container makes its own namespace). */
static void spare_request(void)
{
    if (spare_making || spare_fd >= 0)
        return;
    if (!spare_worker) {
        if (!spare_atfork && pthread_atfork(NULL, NULL, spare_forked) != 0)
            return;
        spare_atfork = 1;
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        sigfillset(&all);   /* the worker inherits this mask: it never takes a signal */
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        int rc = pthread_create(&t, &attr, spare_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            return;
        spare_worker = 1;
    }
    spare_making = 1;
    pthread_cond_signal(&spare_wanted);
}

int fb_netns_take_spare(void)
{
    pthread_mutex_lock(&spare_lock);
    int fd = spare_fd;
    spare_fd = -1;
    spare_request();
    pthread_mutex_unlock(&spare_lock);
    return fd;
}
