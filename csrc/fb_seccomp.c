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
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define MAX_INSNS (3 * N_DENIED + 32)
#define TO_DENY 1  /* fix-up marks: where a jump must land once the program is laid out */
#define TO_ALLOW 2

/* The filter under construction, with a fix-up mark per instruction. */
struct prog {
    struct sock_filter f[MAX_INSNS];
    unsigned char mark[MAX_INSNS];
    unsigned n;
};

static void emit(struct prog *p, struct sock_filter insn, unsigned char mark)
{
    p->mark[p->n] = mark;
    p->f[p->n++] = insn;
}

/* A binary search over the sorted numbers: a filter's cost (the kernel emulates it for
 * every syscall number to build its cache, then JIT-compiles it) grows with the path
 * length, so a tree over ~50 numbers installs ~4x faster than a list. */
static void search(struct prog *p, const unsigned *nums, int lo, int hi)
{
    if (hi - lo <= 3) {
        for (int i = lo; i < hi; i++)
            emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nums[i], 0, 0), TO_DENY);
        emit(p, (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 0), TO_ALLOW);
        return;
    }
    int mid = (lo + hi) / 2;
    unsigned at = p->n;
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, nums[mid], 0, 0), 0);
    search(p, nums, lo, mid);
    p->f[at].jt = (unsigned char)(p->n - at - 1);
    search(p, nums, mid, hi);
}

static void sort_denied(unsigned *nums)
{
    for (unsigned i = 0; i < N_DENIED; i++) {
        unsigned v = (unsigned)denied[i], j = i;
        for (; j > 0 && nums[j - 1] > v; j--)
            nums[j] = nums[j - 1];
        nums[j] = v;
    }
}

/* Resolve the TO_DENY / TO_ALLOW jumps to the two returns at the end. */
static void link_returns(struct prog *p)
{
    unsigned allow = p->n, deny = p->n + 1;
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), 0);
    emit(p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ERRNO(EPERM)), 0);
    for (unsigned i = 0; i < allow; i++) {
        if (p->mark[i] == TO_DENY)
            p->f[i].jt = (unsigned char)(deny - i - 1);
        else if (p->mark[i] == TO_ALLOW)
            p->f[i].k = allow - i - 1;
    }
}

int fb_seccomp(struct fb_child *c)
{
    struct prog p;
    unsigned nums[N_DENIED];
    p.n = 0;
    sort_denied(nums);
    emit(&p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)), 0);
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FB_AUDIT_ARCH, 0, 0), 0);
    p.f[p.n - 1].jf = 0, p.mark[p.n - 1] = 0;
    /* a foreign ABI: refused outright */
    unsigned foreign = p.n - 1;
    emit(&p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)), 0);
#ifdef FB_X32_BIT
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, FB_X32_BIT, 0, 0), TO_DENY);
#endif
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1), 0);
    emit(&p, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ERRNO(ENOSYS)), 0);
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3), 0);
    emit(&p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])), 0);
    emit(&p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 0), TO_DENY);
    emit(&p, (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, 0), TO_ALLOW);
    search(&p, nums, 0, (int)N_DENIED);
    link_returns(&p);
    /* arch mismatch: jf to the EPERM return (the last instruction) */
    p.f[foreign].jf = (unsigned char)(p.n - 1 - foreign - 1);
    struct sock_fprog prog = {.len = (unsigned short)p.n, .filter = p.f};
    long r = FB_SYS3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return r < 0 ? fb_fail(&c->report->err, r, FB_PHASE_IDENTITY, "seccomp", NULL) : 0;
}
#else
int fb_seccomp(struct fb_child *c)
{
    return fb_fail(&c->report->err, ENOSYS, FB_PHASE_IDENTITY, "seccomp: unsupported architecture", NULL);
}
#endif
