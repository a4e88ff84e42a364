# Declarations of the C core (csrc/fb_plan.h, fb_error.h): extern only, no code.
from libc.stdint cimport int64_t, uint64_t, uint32_t
from posix.types cimport uid_t, gid_t, pid_t

cdef extern from "fb_error.h":
    enum:
        FB_MSG_LEN
    struct fb_error:
        int err
        int phase
        char msg[FB_MSG_LEN]

cdef extern from "fb_plan.h":
    enum:
        FB_MAX_MOUNTS
        FB_T_MAX
    struct fb_mount:
        int kind
        int readonly
        const char *src
        const char *dst
        const char *data
    struct fb_devnode:
        const char *path
        unsigned mode
        unsigned major
        unsigned minor
        uid_t uid
        gid_t gid
    struct fb_plan:
        int ns_flags
        const char *const *lowers
        int n_lowers
        const char *scratch
        const char *scratch_data
        const char *upper
        const char *work
        const char *rootfs
        const char *const *etc_names
        const char *const *etc_texts
        int n_etc_files
        const char *const *overlay_opts
        int n_overlay_opts
        int readonly_root
        const fb_mount *mounts
        int n_mounts
        const char *const *masked
        int n_masked
        const char *const *masked_dirs
        int n_masked_dirs
        const char *const *readonly_paths
        int n_readonly
        const char *const *sysctl_paths
        const char *const *sysctl_values
        int n_sysctls
        int mount_cgroup2
        const char *const *cgroup_v1_dirs
        const char *const *cgroup_v1_opts
        int n_cgroup_v1
        const char *const *cg_mkdirs
        int n_cg_mkdirs
        const char *const *cg_files
        const char *const *cg_values
        int n_cg_writes
        const char *const *cg_join
        int n_cg_join
        const char *cg_into
        int unshare_cgroupns
        const char *hostname
        const char *const *argv
        const char *const *envp
        const char *path
        const char *cwd
        uid_t uid
        gid_t gid
        const gid_t *groups
        int n_groups
        uint64_t caps
        int no_new_privs
        const void *seccomp_prog
        int seccomp_len
        int loopback_up
        int stdio[3]
        int console_fd
        unsigned short console_rows
        unsigned short console_cols
        int join_pidfd
        int join_ns_flags
        const char *enter_helper
        int join_netns_fd
        int init_fd
        const uint64_t *rlimits
        int n_rlimits
        int dev_prog_fd
        const fb_devnode *devnodes
        int n_devnodes
    struct fb_report:
        int64_t t[FB_T_MAX]
        pid_t pid
        int pidfd
        fb_error err
    struct fb_monitor_args:
        const char *const *argv
        int argc
        const int *keep_fds
        int n_keep_fds
        int console_fd
    int fb_spawn(const fb_plan *plan, fb_report *report) nogil
    int fb_netns_new(fb_error *e) nogil
    int fb_spare_netns_take() nogil
    void fb_spare_netns_request() nogil
    struct fb_spare:
        int netns_fd
        int sock
        int bridge_index
        int mtu
        char host_if[16]
    int fb_spare_take(fb_spare *out) nogil
    int fb_spare_take_wait(fb_spare *out, int bridge) nogil
    void fb_spare_request(int bridge_index, int mtu) nogil
    void fb_spare_request_plain_first(int bridge_index, int mtu) nogil
    int fb_spawn_detached(const fb_plan *plan, const fb_monitor_args *monitor,
                          fb_report *report, pid_t *monitor_pid) nogil

cdef extern from "fb_devices.h":
    struct fb_dev_rule:
        int type
        int major
        int minor
        int access
    int fb_devices_load(const fb_dev_rule *rules, int n, fb_error *e) nogil
    int fb_devices_attach_path(const char *dir, int prog_fd, fb_error *e) nogil

cdef extern from "fb_net.h":
    struct fb_net_link:
        int netns_fd
        const char *host_if
        const char *peer_if
        int bridge_index
        int mtu
        uint32_t addr
        int prefix
        uint32_t gateway
        int prefix6
        unsigned char addr6[16]
        unsigned char gateway6[16]
        unsigned char mac[6]
    struct fb_nft_elem:
        const char *set
        const void *key
        int key_len
        const void *data
        int data_len
    int fb_net_attach(const fb_net_link *link, int inner_sock, fb_error *e) nogil
    int fb_net_link_del(const char *name, fb_error *e) nogil
    int fb_net_configure(int sock, const fb_net_link *link, fb_error *e) nogil
    int fb_nft_elems(int add, const char *table, const fb_nft_elem *elems, int n, fb_error *e) nogil
    struct fb_net_endpoint:
        const char *id
        const char *record
        const fb_nft_elem *ports
        int n_ports
        const char *lease
        const char *const *files
        int n_files
        const char *dir
    void fb_net_release(const fb_net_endpoint *ep) nogil
