/* Releasing a container's network endpoint from the host's side alone, at its exit: by
 * the engine's teardown of a foreground run (fastbox/runtime/network.py) and by the
 * monitor of a detached one (csrc/monitor/fb_monitor.c). It never needs the container's
 * network namespace, which may be gone; its veth goes with that namespace. Each step
 * tolerates what is gone already. The paths were chosen in Python (fastbox/network). */
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "fb_net.h"

/* The lease, if it still holds id (one reclaimed and taken by another is theirs), or is
 * empty (its writer died between making it and naming it): under its network's lease
 * lock (LEASES/.lock), as fastbox/network/ipam.py frees one. */
static void free_lease(const char *lease, const char *id)
{
    char lock[4096];
    const char *slash = strrchr(lease, '/');
    int lk = -1;
    if (slash && (size_t)(slash - lease) + sizeof "/.lock" <= sizeof lock) {
        memcpy(lock, lease, (size_t)(slash - lease));
        strcpy(lock + (slash - lease), "/.lock");
        lk = open(lock, O_RDWR | O_CLOEXEC);
        if (lk >= 0)
            flock(lk, LOCK_EX);
    }
    char held[160] = "";
    int fd = open(lease, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, held, sizeof held - 1);
        held[r > 0 ? r : 0] = '\0';
        close(fd);
        if (!strcmp(held, id) || !held[0])
            unlink(lease);
    }
    if (lk >= 0)
        close(lk); /* drops the flock */
}

void fb_net_release(const struct fb_net_endpoint *ep)
{
    /* no record: someone released it (`network disconnect`, rm): its ports and its
     * lease may be another's by now */
    int recorded = !ep->record || access(ep->record, F_OK) == 0;
    if (recorded && ep->n_ports > 0) {
        struct fb_error e;
        if (fb_nft_elems(0, "fastbox", ep->ports, ep->n_ports, &e) < 0)
            for (int i = 0; i < ep->n_ports; i++) /* one was gone already: the rest, one by one */
                fb_nft_elems(0, "fastbox", &ep->ports[i], 1, &e);
    }
    if (recorded && ep->lease && ep->id)
        free_lease(ep->lease, ep->id);
    for (int i = 0; i < ep->n_files; i++)
        unlink(ep->files[i]);
    if (ep->dir)
        rmdir(ep->dir);
}
