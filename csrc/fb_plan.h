/* The flat plan the Python layer fills for one container, and the report the core fills
 * back. The core reads the plan and decides nothing: every path, flag and value here was
 * chosen in Python. */
#ifndef FB_PLAN_H
#define FB_PLAN_H

#include <stdint.h>
#include <sys/types.h>
#include "fb_error.h"

#define FB_MAX_MOUNTS 64
#define FB_PATH_MAX 4096

enum fb_mount_kind {
    FB_MOUNT_BIND_DIR = 1,  /* host directory bound at dst (volume) */
    FB_MOUNT_BIND_FILE = 2, /* host file bound at dst */
    FB_MOUNT_TMPFS = 3,     /* fresh tmpfs at dst, data = mount options */
};

struct fb_mount {
    int kind;
    int readonly;
    const char *src;  /* host path for binds */
    const char *dst;  /* absolute path inside the container */
    const char *data; /* tmpfs options */
    unsigned attrs;   /* binds: MOUNT_ATTR_NOSUID|NODEV|NOEXEC (0x2|0x4|0x8) set on the whole tree */
};

/* A device node made in the container's /dev (--device): path is relative to /dev and
 * its parent directories are made as needed; mode holds S_IFCHR or S_IFBLK and the
 * permission bits. */
struct fb_devnode {
    const char *path;
    unsigned mode;
    unsigned major, minor;
    uid_t uid;
    gid_t gid;
};

enum fb_time {
    FB_T_START = 0,     /* parent: fb_spawn entered */
    FB_T_CGROUP_READY,  /* parent: cgroups made and limits written */
    FB_T_CLONED,        /* parent: clone returned */
    FB_T_CHILD_START,   /* child: first instruction in the new namespaces */
    FB_T_CGROUP,        /* child: in every cgroup, cgroup namespace set */
    FB_T_ROOTFS,        /* child: overlay mounted */
    FB_T_PIVOT,         /* child: pivot_root done, old root detached */
    FB_T_MOUNTS,        /* child: proc, dev, sys, volumes, masks done */
    FB_T_EXEC,          /* child: about to execve */
    FB_T_EXECED,        /* parent: exec confirmed (close-on-exec pipe hit EOF) */
    FB_T_MAX
};

struct fb_plan {
    int ns_flags; /* CLONE_NEW* set */

    /* root filesystem */
    const char *const *lowers; /* top-most first */
    int n_lowers;
    const char *scratch;      /* if set: a tmpfs is mounted here first (ephemeral upper) */
    const char *scratch_data; /* its mount options */
    const char *upper;        /* upperdir; relative to scratch when scratch is set */
    const char *work;         /* workdir; likewise */
    const char *rootfs;       /* where the overlay is mounted before pivot_root */
    /* With scratch: files written into the fresh upper layer's /etc before the overlay
     * is mounted (an ephemeral container's own /etc/hosts, hostname, resolv.conf when it
     * has no network files of its own to bind: they vanish with its mount namespace) */
    const char *const *etc_names;
    const char *const *etc_texts;
    int n_etc_files;
    const char *const *overlay_opts; /* extra flag options: "volatile", "metacopy=on" */
    int n_overlay_opts;
    int readonly_root;

    const struct fb_mount *mounts;
    int n_mounts;
    const char *const *masked; /* files: /dev/null is bound over each */
    int n_masked;
    const char *const *masked_dirs; /* one empty read-only tmpfs, bound over each */
    int n_masked_dirs;
    const char *const *readonly_paths;
    int n_readonly;
    /* --sysctl: files under /proc/sys written in the container's namespaces (net, IPC,
     * UTS) once its /proc is mounted, before /proc/sys is made read-only */
    const char *const *sysctl_paths;
    const char *const *sysctl_values;
    int n_sysctls;
    int mount_cgroup2; /* mount a read-only cgroup2 at /sys/fs/cgroup */
    /* v1: hierarchies mounted read-only under a tmpfs at /sys/fs/cgroup, parallel lists:
     * directory name and mount options (the controllers), as Docker does */
    const char *const *cgroup_v1_dirs;
    const char *const *cgroup_v1_opts;
    int n_cgroup_v1;

    /* cgroups */
    const char *const *cg_mkdirs;
    int n_cg_mkdirs;
    const char *const *cg_files; /* limit files, parallel with cg_values */
    const char *const *cg_values;
    int n_cg_writes;
    /* Files the child writes "0" to, moving itself: v1 `tasks` files. A thread moving
     * itself skips the global cgroup_threadgroup_rwsem that a cgroup.procs write by pid
     * takes (kernel 6.0+), which costs milliseconds under RCU synchronisation. */
    const char *const *cg_join;
    int n_cg_join;
    const char *cg_into;  /* v2: cgroup directory for CLONE_INTO_CGROUP */
    int unshare_cgroupns; /* unshare CLONE_NEWCGROUP once the child has joined cg_join */

    /* process */
    const char *hostname;
    const char *const *argv; /* NULL-terminated */
    const char *const *envp; /* NULL-terminated */
    const char *path;        /* $PATH for the command lookup */
    const char *cwd;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int n_groups;
    uint64_t caps; /* capabilities kept, bit per capability */
    int no_new_privs;
    const void *seccomp_prog; int seccomp_len; /* number of struct sock_filter; 0 = no filter */
    int loopback_up; /* bring up lo in a new network namespace */
    int stdio[3]; /* fds put on 0,1,2 in the child, -1 to inherit */
    int console_fd; /* >= 0: make a terminal in the container's devpts, make it stdio and
                       the controlling tty, and send its master over this unix socket */
    unsigned short console_rows, console_cols; /* its size from the start (0: unset) */

    /* exec into a running container: a pidfd of its init, and the namespaces to enter
     * (CLONE_NEW* without NEWPID: the child is cloned into its pid namespace). With it
     * set, no namespace is created and no filesystem is built; -1 otherwise. */
    int join_pidfd;
    int join_ns_flags;
    /* With join_pidfd: the exec helper executable (csrc/enter/fb_enter.c). The process
     * that enters the container is the helper's child, never a clone of the caller: the
     * container can see it, so it must share no memory with a host process. */
    const char *enter_helper;
    /* >= 0: enter this network namespace (a pool's, made by fb_netns_new) instead of
     * creating one; ns_flags then lacks CLONE_NEWNET */
    int join_netns_fd;
    /* >= 0 (run --init): execveat this fd (a sealed memfd of fastbox-init) with argv, in
     * place of a $PATH search for argv[0]; the init then runs the program */
    int init_fd;
    /* --ulimit: n_rlimits triples (RLIMIT_*, soft, hard), set before the identity drops */
    const uint64_t *rlimits;
    int n_rlimits;

    /* cgroup v2 device control: >= 0, a BPF_PROG_TYPE_CGROUP_DEVICE program (fb_devices.c)
     * the parent attaches to cg_into after making it and before the clone, so the child
     * runs under it from its first instruction; -1: none (v1, a pool's cgroup that has it
     * already, --privileged) */
    int dev_prog_fd;
    const struct fb_devnode *devnodes; /* extra nodes in /dev, made before it is attached */
    int n_devnodes;

    /* OCI runtime (csrc/runtime/). All zero for fastbox's own run and exec. */
    int detached; /* no tie to the starting process (no PDEATHSIG): a subreaper that is not
                     the starter reaps it (`create`, `exec --detach`) */
    int wait_fifo; /* `create`: once ready, close the exec pipe (the starter returns) and
                      block opening wait_fifo_fd (an O_PATH fd of exec.fifo) for writing,
                      until `start` opens it for reading; then write one byte and exec */
    int wait_fifo_fd;
    const char *rootfs_bind; /* with no lowers: this directory, bound on rootfs, is the root */
    unsigned long rootfs_propagation; /* MS_SLAVE, MS_PRIVATE... for / (0: MS_PRIVATE) */
};

struct fb_report {
    int64_t t[FB_T_MAX]; /* CLOCK_MONOTONIC ns, 0 when the step did not happen */
    pid_t pid;
    int pidfd; /* -1 when the kernel has no CLONE_PIDFD */
    struct fb_error err;
};

/* What the detached path execs once the container runs: argv (the monitor binary and
 * its options, to which "--pid N" is appended) and the fds it must inherit. */
struct fb_monitor_args {
    const char *const *argv;
    int argc;
    const int *keep_fds;
    int n_keep_fds;
    int console_fd; /* >= 0: receive the container's terminal master here, for --tty */
};

/* Build and start the container; on success the program has been exec'd and
 * report->pid/pidfd name it. On failure returns -errno with report->err filled, and
 * any child has been reaped. */
int fb_spawn(const struct fb_plan *plan, struct fb_report *report);

/* The exec plan as one flat buffer (fb_plan_pack.c): malloc'd *out of *len bytes, or
 * -ENOMEM. */
int fb_plan_pack(const struct fb_plan *plan, char **out, size_t *len);

/* A new network namespace with lo up, held only by the returned fd (fb_netns.c); -errno
 * with e filled on failure. Made on a short-lived thread: no thread of the caller ever
 * leaves its own namespace. */
int fb_netns_new(struct fb_error *e);

/* The same, in the calling thread, which is left in the new namespace. */
int fb_netns_unshare(struct fb_error *e);

/* The spare network namespace (fb_spare.c). take: a new, never-used namespace with lo
 * up, owned by the caller from then on, or -1 when none is ready. request: have the
 * worker thread make one, unless one is ready or being made. A ready one is held until
 * the process exits. */
int fb_spare_netns_take(void);
void fb_spare_netns_request(void);

/* A spare with, when asked for, a veth pair on a bridge: its host end's name, and a
 * NETLINK_ROUTE socket opened inside the namespace (both owned by the caller). take
 * returns netns_fd (-1: none ready); request(bridge_index, mtu) asks for the next, with a
 * veth when bridge_index > 0 (a ready spare of another kind is discarded). */
struct fb_spare {
    int netns_fd;
    int sock;
    int bridge_index; /* > 0: the veth was made on this bridge */
    int mtu;
    char host_if[16];
};
int fb_spare_take(struct fb_spare *out);
/* The same, but first waits (50 ms at most) for one the worker is making, if it is of
 * the kind asked for (bridge > 0: with a veth; 0: a plain namespace). */
int fb_spare_take_wait(struct fb_spare *out, int bridge);
void fb_spare_request(int bridge_index, int mtu);
/* For a next container on this bridge, its namespace alone for now (its veth comes with
 * fb_spare_request later): nothing if one with its veth is ready or being made. */
void fb_spare_request_plain_first(int bridge_index, int mtu);

/* Start the container under a new fastbox-monitor process that is no child of the
 * caller (fb_detach.c); *monitor_pid is the monitor's pid, report->pid the container's. */
int fb_spawn_detached(const struct fb_plan *plan, const struct fb_monitor_args *monitor,
                      struct fb_report *report, pid_t *monitor_pid);

#endif
