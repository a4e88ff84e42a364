/* pivot_root into the assembled rootfs and drop every reference to the host's root. */
#include <sys/mount.h>
#include "fb_child.h"
#include "fb_sys.h"

int fb_pivot(struct fb_child *c)
{
    struct fb_error *e = &c->report->err;
    long r = FB_SYS1(SYS_chdir, c->plan->rootfs);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_PIVOT, "chdir", c->plan->rootfs);
    /* pivot_root(".", ".") stacks the old root on top of the new one (as runc does),
     * so no put_old directory has to exist inside the image. */
    r = FB_SYS2(SYS_pivot_root, ".", ".");
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_PIVOT, "pivot_root", c->plan->rootfs);
    /* The old root was made private at start, so detaching it cannot propagate to the host. */
    r = FB_SYS2(SYS_umount2, ".", MNT_DETACH);
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_PIVOT, "umount old root", NULL);
    r = FB_SYS1(SYS_chdir, "/");
    if (r < 0)
        return fb_fail(e, r, FB_PHASE_PIVOT, "chdir", "/");
    return 0;
}
