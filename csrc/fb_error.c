#include "fb_error.h"

/* Copy without libc: the child calls this while sharing the parent's memory. */
static int fb_append(char *dst, int pos, const char *src)
{
    while (src && *src && pos < FB_MSG_LEN - 1)
        dst[pos++] = *src++;
    dst[pos] = '\0';
    return pos;
}

int fb_fail(struct fb_error *e, int err, int phase, const char *what, const char *arg)
{
    int pos = 0;
    if (err < 0)
        err = -err;
    e->err = err ? err : 1;
    e->phase = phase;
    pos = fb_append(e->msg, pos, what);
    if (arg) {
        pos = fb_append(e->msg, pos, " ");
        fb_append(e->msg, pos, arg);
    }
    return -e->err;
}
