/* Installing the container's seccomp filter. The program was compiled in Python, once
 * per profile and capability set (fastbox/runtime/seccomp.py, through libseccomp), and
 * reaches the child as a flat array of struct sock_filter in the plan: here it is one
 * raw syscall, with no allocation and no library call (the child is a CLONE_VM clone of
 * the caller). */
#include <errno.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include "fb_child.h"
#include "fb_sys.h"

int fb_seccomp(struct fb_child *c)
{
    const struct fb_plan *p = c->plan;
    if (p->seccomp_len <= 0)
        return 0;
    if (p->seccomp_len > BPF_MAXINSNS || !p->seccomp_prog)
        return fb_fail(&c->report->err, EINVAL, FB_PHASE_IDENTITY, "seccomp: bad program", NULL);
    struct sock_fprog prog = {.len = (unsigned short)p->seccomp_len,
                              .filter = (struct sock_filter *)p->seccomp_prog};
    long r = FB_SYS3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "seccomp", NULL) : 0;
}
