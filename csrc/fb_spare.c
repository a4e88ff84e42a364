/* The spare network namespace: a worker thread makes the next container's namespace
 * (new, never used, lo up) while the current container starts, so that the next start
 * skips its ~0.5 ms. Each spare serves exactly one container. One worker per process,
 * started on first use. A fork()ed child starts with no spare and no worker: the worker
 * is not copied, and parent and child would hand out the same namespace.
 *
 * For a container on a bridge, the worker also makes the veth pair (its container end in
 * the new namespace, its host end up on the bridge: ~0.5-1.5 ms of rtnl work) and opens a
 * netlink socket inside, so that the start only adds the address and the route (~0.1
 * ms). A spare's veth never outlives the spare: it is deleted with the namespace, which
 * only the spare's fd holds until a container enters it.
 *
 * Cgroup directories were tried the same way and dropped: on this 2-vCPU machine the
 * worker's mkdirs slowed the container running beside them by as much as they saved. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "fb_net.h"
#include "fb_plan.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;  /* a namespace is wanted */
static pthread_cond_t made = PTHREAD_COND_INITIALIZER;  /* the worker finished one */
static int worker_running, atfork_set;
static struct fb_spare ready = {-1, -1, 0, 0, ""};  /* owned here until taken */
static int netns_wanted;
static int want_bridge, want_mtu; /* > 0: the next spare gets a veth on this bridge */

static void discard(struct fb_spare *sp)
{
    if (sp->netns_fd >= 0)
        close(sp->netns_fd);
    if (sp->sock >= 0)
        close(sp->sock);
    sp->netns_fd = sp->sock = -1;
    sp->bridge_index = 0;
}

static void forked(void)
{
    discard(&ready);
    netns_wanted = worker_running = want_bridge = 0;
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&made, NULL);
}

/* A new namespace, then back home, so that the worker never holds a namespace it has
 * handed out (it would outlive its container). */
static int make_netns(int *home, int *sock, int bridge)
{
    struct fb_error e;
    int fd = *home >= 0 ? fb_netns_unshare(&e) : -1;
    /* inside: the container's address goes here */
    *sock = fd >= 0 && bridge > 0 ? fb_net_socket() : -1;
    if (fd >= 0 && setns(*home, CLONE_NEWNET) < 0) {
        close(fd);  /* stuck in it: no more spare namespaces from this worker */
        close(*home);
        if (*sock >= 0)
            close(*sock);
        fd = *home = *sock = -1;
    }
    return fd;
}

/* A netlink socket inside a plain spare made earlier, for the veth it now gets: into
 * the namespace and back home, as make_netns. */
static int sock_inside(int *home, int netns_fd)
{
    if (*home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return -1;
    int sock = fb_net_socket();
    if (setns(*home, CLONE_NEWNET) < 0) {
        if (sock >= 0)
            close(sock);
        close(*home); /* stuck in it: no more spare namespaces from this worker */
        *home = -1;
        return -1;
    }
    return sock;
}

/* The pair for a spare: the host end's name is fbv and 12 random hex digits. */
static void make_veth(struct fb_spare *sp, int bridge, int mtu)
{
    unsigned char r[6];
    struct fb_error e;
    if (getrandom(r, sizeof r, 0) != sizeof r)
        return;
    snprintf(sp->host_if, sizeof sp->host_if, "fbv%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3], r[4], r[5]);
    struct fb_net_link l = {.netns_fd = sp->netns_fd, .host_if = sp->host_if, .peer_if = "eth0",
                            .bridge_index = bridge, .mtu = mtu};
    if (fb_net_veth(&l, &e) == 0) {
        sp->bridge_index = bridge;
        sp->mtu = mtu;
    }
}

/* Must hold the lock: whether the ready spare is of the kind last asked for. */
static int ready_as_wanted(void)
{
    return ready.netns_fd >= 0 && ready.bridge_index == want_bridge &&
           (want_bridge == 0 || ready.mtu == want_mtu);
}

/* Makes the ready spare what was last asked for: a new namespace, with a veth if a
 * bridge was asked for; or, when a plain one is ready and a bridge is asked for, only
 * its veth (a bridge container asks for the plain namespace as it starts and for the
 * veth once it has exited: the two halves run at different times, neither during the
 * container's short run nor beside its own address and route). A request that comes
 * while one is being made is seen when it is done. */
static void *worker_main(void *arg)
{
    (void)arg;
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    pthread_mutex_lock(&lock);
    for (;;) {
        if (!netns_wanted) {
            pthread_cond_wait(&wake, &lock);
            continue;
        }
        int bridge = want_bridge, mtu = want_mtu;
        struct fb_spare sp = {-1, -1, 0, 0, ""};
        if (!ready_as_wanted()) {
            if (ready.netns_fd >= 0 && ready.bridge_index == 0 && bridge > 0) {
                sp = ready; /* plain: only its veth is missing */
                ready.netns_fd = ready.sock = -1;
            } else if (ready.netns_fd >= 0) {
                discard(&ready); /* made for another kind of container */
            }
            pthread_mutex_unlock(&lock);
            if (sp.netns_fd < 0)
                sp.netns_fd = make_netns(&home, &sp.sock, bridge);
            else
                sp.sock = sock_inside(&home, sp.netns_fd);
            if (sp.netns_fd >= 0 && bridge > 0)
                make_veth(&sp, bridge, mtu);
            pthread_mutex_lock(&lock);
            if (sp.netns_fd >= 0 && ready.netns_fd < 0)
                ready = sp;
            else
                discard(&sp);
        }
        /* done, or it failed (the next request tries again): unless asked for another
         * kind meanwhile */
        if (bridge == want_bridge && mtu == want_mtu)
            netns_wanted = 0;
        pthread_cond_broadcast(&made);
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

/* A spare still being made, of the kind asked for, is waited for (up to WAIT_NS): making
 * one more beside it would race the worker for the same kernel locks and the same CPUs
 * and end later than the one half made (measured: a bridge start that found none ready
 * made its own in 1.5-8 ms, a quarter of back-to-back starts on a loaded 2-CPU machine). */
#define WAIT_NS 50000000L

static void wait_in_flight(int bridge)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* the condition variable's clock */
    until.tv_nsec += WAIT_NS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (ready.netns_fd < 0 && netns_wanted && (want_bridge > 0) == (bridge > 0))
        if (pthread_cond_timedwait(&made, &lock, &until) == ETIMEDOUT)
            break;
}

int fb_spare_take_wait(struct fb_spare *out, int bridge)
{
    pthread_mutex_lock(&lock);
    wait_in_flight(bridge);
    pthread_mutex_unlock(&lock);
    return fb_spare_take(out);
}

int fb_spare_take(struct fb_spare *out)
{
    pthread_mutex_lock(&lock);
    *out = ready;
    ready.netns_fd = ready.sock = -1;
    ready.bridge_index = 0;
    pthread_mutex_unlock(&lock);
    return out->netns_fd;
}

int fb_spare_netns_take(void)
{
    struct fb_spare sp;
    fb_spare_take(&sp);
    if (sp.bridge_index > 0) {  /* a namespace with a veth is no plain namespace */
        discard(&sp);
        return -1;
    }
    if (sp.sock >= 0)
        close(sp.sock);
    return sp.netns_fd;
}

/* Must hold the lock. */
static void request_locked(int bridge_index, int mtu)
{
    want_bridge = bridge_index;
    want_mtu = mtu;
    if (!ready_as_wanted() && ensure_worker() == 0) {
        netns_wanted = 1;
        pthread_cond_signal(&wake);
    }
}

void fb_spare_request_plain_first(int bridge_index, int mtu)
{
    pthread_mutex_lock(&lock);
    int have = ready.netns_fd >= 0 ? ready.bridge_index == bridge_index && ready.mtu == mtu
                                   : netns_wanted && want_bridge == bridge_index && want_mtu == mtu;
    if (!have)
        request_locked(0, 0);
    pthread_mutex_unlock(&lock);
}

void fb_spare_request(int bridge_index, int mtu)
{
    pthread_mutex_lock(&lock);
    request_locked(bridge_index, mtu);
    pthread_mutex_unlock(&lock);
}

void fb_spare_netns_request(void)
{
    fb_spare_request(0, 0);
}
