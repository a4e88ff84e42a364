/* A plan for `exec` as one flat buffer: the exec helper (csrc/enter/fb_enter.c) is a
 * fresh process that shares no memory with its starter, so the plan travels to it
 * through a memfd. Pointers are stored as offsets (+1, so that NULL stays 0) from the
 * start of the buffer; only the fields an exec reads are carried, the rest are zeroed. The helper turns
 * them back into pointers (csrc/enter/fb_enter.c). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fb_plan.h"

struct packer {
    char *buf;
    size_t len, cap;
};

static int reserve(struct packer *k, size_t n)
{
    if (k->len + n <= k->cap)
        return 0;
    size_t cap = k->cap ? k->cap : 4096;
    while (cap < k->len + n)
        cap *= 2;
    char *b = realloc(k->buf, cap);
    if (!b)
        return -1;
    k->buf = b;
    k->cap = cap;
    return 0;
}

/* Appends n bytes (8-aligned) and returns their offset + 1, or 0 for NULL data. */
static uintptr_t put(struct packer *k, const void *data, size_t n)
{
    if (!data)
        return 0;
    size_t at = (k->len + 7) & ~(size_t)7;
    if (reserve(k, at - k->len + n) < 0)
        return (uintptr_t)-1;
    memset(k->buf + k->len, 0, at - k->len);
    memcpy(k->buf + at, data, n);
    k->len = at + n;
    return at + 1;
}

static uintptr_t put_str(struct packer *k, const char *s)
{
    return s ? put(k, s, strlen(s) + 1) : 0;
}

/* n strings, or a NULL-terminated vector when n < 0. */
static uintptr_t put_strv(struct packer *k, const char *const *v, int n)
{
    if (!v)
        return 0;
    if (n < 0)
        for (n = 0; v[n]; n++)
            ;
    uintptr_t *offs = calloc((size_t)n + 1, sizeof *offs);
    if (!offs)
        return (uintptr_t)-1;
    for (int i = 0; i < n; i++)
        if ((offs[i] = put_str(k, v[i])) == (uintptr_t)-1)
            n = -1;
    uintptr_t at = n < 0 ? (uintptr_t)-1 : put(k, offs, ((size_t)n + 1) * sizeof *offs);
    free(offs);
    return at;
}

int fb_plan_pack(const struct fb_plan *p, char **out, size_t *len)
{
    struct packer k = {0};
    struct fb_plan flat;
    memset(&flat, 0, sizeof flat);
    if (put(&k, &flat, sizeof flat) == (uintptr_t)-1)
        return -ENOMEM;
    uintptr_t f[8];
    f[0] = put_strv(&k, p->argv, -1);
    f[1] = put_strv(&k, p->envp, -1);
    f[2] = put_str(&k, p->path);
    f[3] = put_str(&k, p->cwd);
    f[4] = put(&k, p->groups, (size_t)p->n_groups * sizeof *p->groups);
    f[5] = put_strv(&k, p->cg_join, p->n_cg_join);
    f[6] = put_str(&k, p->hostname);
    f[7] = put(&k, p->seccomp_len > 0 ? p->seccomp_prog : NULL, (size_t)p->seccomp_len * 8);
    for (int i = 0; i < 8; i++)
        if (f[i] == (uintptr_t)-1) {
            free(k.buf);
            return -ENOMEM;
        }
    flat.join_pidfd = p->join_pidfd;
    flat.join_ns_flags = p->join_ns_flags;
    flat.join_netns_fd = -1;
    flat.init_fd = -1;
    flat.rlimits = NULL; /* an exec'd process inherits them from nothing of ours */
    flat.n_rlimits = 0;
    flat.dev_prog_fd = -1; /* an exec joins a cgroup that has its program already */
    flat.argv = (const char *const *)f[0];
    flat.envp = (const char *const *)f[1];
    flat.path = (const char *)f[2];
    flat.cwd = (const char *)f[3];
    flat.uid = p->uid;
    flat.gid = p->gid;
    flat.groups = (const gid_t *)f[4];
    flat.n_groups = p->n_groups;
    flat.cg_join = (const char *const *)f[5];
    flat.n_cg_join = p->n_cg_join;
    flat.hostname = (const char *)f[6];
    flat.caps = p->caps;
    flat.no_new_privs = p->no_new_privs;
    flat.seccomp_prog = (const void *)f[7]; /* struct sock_filter is 8 bytes */
    flat.seccomp_len = p->seccomp_len;
    flat.loopback_up = 0;
    flat.detached = p->detached;
    memcpy(flat.stdio, p->stdio, sizeof flat.stdio);
    flat.console_fd = p->console_fd;
    flat.console_rows = p->console_rows;
    flat.console_cols = p->console_cols;
    memcpy(k.buf, &flat, sizeof flat);
    *out = k.buf;
    *len = k.len;
    return 0;
}
