/* The error every fallible core function fills: errno, the phase it failed in, and a
 * short message naming what failed (usually a path). Written by the child into memory it
 * shares with the parent, so it must be fillable without allocation. */
#ifndef FB_ERROR_H
#define FB_ERROR_H

enum fb_phase {
    FB_PHASE_NONE = 0,
    FB_PHASE_CGROUP_SETUP, /* parent: mkdir and limit writes */
    FB_PHASE_CLONE,        /* parent: clone3/clone with the namespaces */
    FB_PHASE_STDIO,        /* child: dup of the requested stdio */
    FB_PHASE_CGROUP_JOIN,  /* child: joining v1 cgroups, cgroup namespace */
    FB_PHASE_ROOTFS,       /* child: overlay assembly */
    FB_PHASE_PIVOT,        /* child: pivot_root and detaching the old root */
    FB_PHASE_MOUNTS,       /* child: proc, sys, dev, volumes, tmpfs, masks */
    FB_PHASE_IDENTITY,     /* child: hostname, workdir, uid/gid, capabilities */
    FB_PHASE_EXEC,         /* child: execve */
    FB_PHASE_NETWORK,      /* parent: veth, addresses, routes, port mappings (fb_net.c) */
    FB_PHASE_MAX
};

#define FB_MSG_LEN 240

struct fb_error {
    int err;   /* positive errno, 0 when no error */
    int phase; /* enum fb_phase */
    char msg[FB_MSG_LEN];
};

/* Fill e and return -err (negative), so callers can `return fb_fail(...)`. */
int fb_fail(struct fb_error *e, int err, int phase, const char *what, const char *arg);

/* v >= 0 in decimal into buf (24 bytes are enough), without libc. */
void fb_format_int(char *buf, long v);

#endif
