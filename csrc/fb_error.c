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

void fb_format_int(char *buf, long v)
{
    char tmp[24];
    int n = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}
