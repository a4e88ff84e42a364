/* `exec` through the exec helper (fb_exec.c): what the CLONE_VM trampoline child needs,
 * prepared by the parent before the clone, so the child only closes fds and execs. */
#ifndef FB_EXEC_H
#define FB_EXEC_H
#include "fb_child.h"

struct fb_trampoline {
    int helper_fd; /* the sealed memfd copy of the helper */
    int blob_fd;   /* the flattened plan (ours to close after the clone) */
    int keep[12];
    int n_keep;
    char bufs[3][12];
    const char *argv[5];
    const char *envp[1];
    struct fb_report *report;
};

int fb_exec_prepare(struct fb_child *c, struct fb_trampoline *t, struct fb_report *r);
int fb_exec_trampoline(void *arg);
int fb_exec_finish(pid_t helper, int fd, struct fb_report *r);
#endif
