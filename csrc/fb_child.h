/* What the container child works from: the plan, the shared report, its pipe ends and
 * the volume trees it opened before pivot_root. Lives on the parent's stack for the
 * duration of fb_spawn; the child shares that memory (CLONE_VM). */
#ifndef FB_CHILD_H
#define FB_CHILD_H

#include "fb_plan.h"

struct fb_child {
    const struct fb_plan *plan;
    struct fb_report *report;
    int err_fd;        /* write end of the close-on-exec pipe: EOF tells the parent exec happened */
    int parent_fd;     /* the parent's read end, closed first thing in the child */
    char fallback_join[4096]; /* v2 without clone3: cgroup.procs the child joins by itself */
    int vol_fds[FB_MAX_MOUNTS];
    int owner_pidfd;   /* pidfd of the starting process: the child dies with it */
    int report_fd;     /* exec helper: the report goes here (no shared memory); else -1 */
};

/* What the exec helper's messages to its starter look like (fb_enter.c, fb_spawn.c):
 * the helper sends the pid of the process it made, that process its report just before
 * execve (err 0) or when it fails. Each fits in one atomic pipe write. */
enum { FB_MSG_PID = 1, FB_MSG_REPORT = 2 };
struct fb_enter_msg {
    int tag;
    int pid;
    struct fb_report report;
};

int fb_child_main(void *arg);

/* fb_mount.c: before pivot_root */
int fb_mount_rootfs(struct fb_child *c);
int fb_open_volumes(struct fb_child *c);
/* fb_pivot.c */
int fb_pivot(struct fb_child *c);
/* fb_mount.c: after pivot_root, with paths resolved inside the new root */
int fb_mount_system(struct fb_child *c);
int fb_mount_volumes(struct fb_child *c);
int fb_mask_paths(struct fb_child *c);
int fb_mkdir_p(const char *path, int mode);
int fb_finish_rootfs(struct fb_child *c);

void fb_stamp(struct fb_child *c, int which);
/* fb_init.c: the exec helper's work, from a fresh process to the program (no return) */
void fb_enter_main(struct fb_child *c);
/* fb_fds.c: every fd >= 3 close-on-exec; every fd >= 3 but keep closed */
int fb_fds_cloexec(struct fb_error *e);
int fb_fds_close_except(const int *keep, int n_keep, struct fb_error *e);
/* fb_seccomp.c: install the container's seccomp filter (needs no_new_privs). */
int fb_seccomp(struct fb_child *c);

#endif
