/* The spare network namespace: a worker thread makes the next container's namespace
 * (new, never used, lo up) while the current container starts, so that the next start
 * skips its ~0.5 ms. Each spare serves exactly one container. One worker per process,
 * started on first use. A fork()ed child starts with no spare and no worker: the worker
 * is not copied, and parent and child would hand out the same namespace.
 *
 * Cgroup directories were tried the same way and dropped: on this 2-vCPU machine the
 * worker's mkdirs slowed the container running beside them by as much as they saved. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include "fb_plan.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;  /* a namespace is wanted */
static int worker_running, atfork_set;
static int netns_fd = -1;  /* a ready namespace, owned here until taken */
static int netns_wanted;

static void forked(void)
{
    if (netns_fd >= 0)
        close(netns_fd);
    netns_fd = -1;
    netns_wanted = worker_running = 0;
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
}

/* A new namespace, then back home, so that the worker never holds a namespace it has
 * handed out (it would outlive its container). */
static int make_netns(int *home)
{
    struct fb_error e;
    int fd = *home >= 0 ? fb_netns_unshare(&e) : -1;
    if (fd >= 0 && setns(*home, CLONE_NEWNET) < 0) {
        close(fd);  /* stuck in it: no more spare namespaces from this worker */
        close(*home);
        fd = *home = -1;
    }
    return fd;
}

static void *worker_main(void *arg)
{
    (void)arg;
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    pthread_mutex_lock(&lock);
    for (;;) {
        if (netns_wanted) {
            pthread_mutex_unlock(&lock);
            int fd = make_netns(&home);
            pthread_mutex_lock(&lock);
            netns_wanted = 0;
            if (fd >= 0 && netns_fd < 0)
                netns_fd = fd;
            else if (fd >= 0)
                close(fd);
        } else {
            pthread_cond_wait(&wake, &lock);
        }
    }
    return NULL;
}

/* Must hold the lock. 0 once the worker runs; failing that, there are no spares. */
static int ensure_worker(void)
{
    if (worker_running)
        return 0;
    if (!atfork_set && pthread_atfork(NULL, NULL, forked) != 0)
        return -1;
    atfork_set = 1;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    sigfillset(&all);  /* the worker inherits this mask: it never takes a signal */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, &attr, worker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    worker_running = 1;
    return 0;
}

int fb_spare_netns_take(void)
{
    pthread_mutex_lock(&lock);
    int fd = netns_fd;
    netns_fd = -1;
    pthread_mutex_unlock(&lock);
    return fd;
}

void fb_spare_netns_request(void)
{
    pthread_mutex_lock(&lock);
    if (netns_fd < 0 && !netns_wanted && ensure_worker() == 0) {
        netns_wanted = 1;
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&lock);
}
