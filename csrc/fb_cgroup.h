#ifndef FB_CGROUP_H
#define FB_CGROUP_H
#include "fb_plan.h"

int fb_cgroup_prepare(const struct fb_plan *p, struct fb_error *e);
/* The v2 cgroup directory fd for CLONE_INTO_CGROUP in *fd, -1 when the plan has none. */
int fb_cgroup_open_into(const struct fb_plan *p, int *fd, struct fb_error *e);
#endif
