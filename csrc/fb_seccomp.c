/* The container's seccomp filter: the system calls Docker's default profile refuses
 * (mounting, namespaces, kernel modules, keyrings, clocks, reboot, ...) fail with EPERM,
 * clone with namespace flags too, clone3 with ENOSYS (its flags are out of a filter's
 * reach, so libc falls back to clone), and foreign ABIs are refused outright. Built on
 * the child's stack from the build's own syscall numbers: no allocation, no library. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include "fb_child.h"
#include "fb_sys.h"

#if defined(__x86_64__)
#define FB_AUDIT_ARCH AUDIT_ARCH_X86_64
#define FB_X32_BIT 0x40000000
#elif defined(__aarch64__)
#define FB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef FB_AUDIT_ARCH
static const long denied[] = {
    SYS_acct, SYS_add_key, SYS_bpf, SYS_clock_adjtime, SYS_clock_settime, SYS_delete_module,
    SYS_finit_module, SYS_get_mempolicy, SYS_init_module, SYS_kcmp, SYS_kexec_file_load,
    SYS_kexec_load, SYS_keyctl, SYS_lookup_dcookie, SYS_mbind, SYS_mount, SYS_move_pages,
    SYS_name_to_handle_at, SYS_open_by_handle_at, SYS_perf_event_open, SYS_pivot_root,
    SYS_process_vm_readv, SYS_process_vm_writev, SYS_quotactl, SYS_reboot, SYS_request_key,
    SYS_set_mempolicy, SYS_setns, SYS_settimeofday, SYS_swapon, SYS_swapoff, SYS_umount2,
    SYS_unshare, SYS_userfaultfd, SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig,
    SYS_fsmount, SYS_mount_setattr,
#if defined(__x86_64__)
    SYS_ioperm, SYS_iopl, SYS_create_module, SYS_get_kernel_syms, SYS_nfsservctl,
    SYS_query_module, SYS_sysfs, SYS__sysctl, SYS_uselib, SYS_ustat,
#endif
};
#define N_DENIED (sizeof denied / sizeof denied[0])
#define NS_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
                  CLONE_NEWNET | CLONE_NEWCGROUP)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

int fb_seccomp(struct fb_child *c)
{
    struct sock_filter f[N_DENIED + 24];
    unsigned n = 0;
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FB_AUDIT_ARCH, 1, 0);
    f[n++] = (struct sock_filter)RET(ERRNO(EPERM));
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef FB_X32_BIT
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, FB_X32_BIT, 0, 1);
    f[n++] = (struct sock_filter)RET(ERRNO(EPERM));
#endif
    /* each denied call: if nr == it, jump to the EPERM return after the list */
    for (unsigned i = 0; i < N_DENIED; i++)
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[i],
                                              (unsigned char)(N_DENIED - i + 5), 0);
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    f[n++] = (struct sock_filter)RET(ERRNO(ENOSYS));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 2);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 1, 0);
    f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)RET(ERRNO(EPERM));
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    long r = FB_SYS3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "seccomp", NULL) : 0;
}
#else
int fb_seccomp(struct fb_child *c)
{
    return fb_fail(&c->report->err, ENOSYS, FB_PHASE_IDENTITY, "seccomp: unsupported architecture", NULL);
}
#endif
