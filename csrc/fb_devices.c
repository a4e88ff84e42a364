/* The cgroup v2 device controller: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE,
 * written out instruction by instruction from a flat allow list and loaded with the raw
 * bpf(2) system call (no libbpf), then attached to a container's cgroup.
 *
 * The kernel runs the program on every mknod and every open of a device node by a task
 * of that cgroup (or of a cgroup below it); the access is refused with EPERM unless the
 * program returns 1. The context it gets (struct bpf_cgroup_dev_ctx) is three u32:
 *   access_type  (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
 *   major, minor
 * and one open may ask for several accesses at once (read and write for O_RDWR).
 *
 * The program, with rules tried in order and the first that matches allowing:
 *     r2 = ctx->access_type & 0xffff      device type
 *     r3 = ctx->access_type >> 16         accesses asked for
 *     r4 = ctx->major;  r5 = ctx->minor
 *   for each rule (checks left out where the rule has a wildcard):
 *     if r2 != type goto next
 *     r1 = r3 & access; if r1 != r3 goto next    every access asked for is allowed
 *     if r4 != major goto next
 *     if r5 != minor goto next
 *     r0 = 1; exit
 *   next: ...
 *     r0 = 0; exit                         nothing matched: denied
 * runc (libcontainer/cgroups/devices/ebpf) and crun (src/libcrun/ebpf.c) build the same
 * shape. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "fb_devices.h"

#ifndef SYS_bpf
#define SYS_bpf 321
#endif

/* bpf(2) commands, types and flags (linux/bpf.h), spelled out so the build does not
 * depend on which kernel headers are installed. */
#define FB_BPF_PROG_LOAD 5
#define FB_BPF_PROG_ATTACH 8
#define FB_BPF_PROG_TYPE_CGROUP_DEVICE 15
#define FB_BPF_CGROUP_DEVICE 6
#define FB_BPF_F_ALLOW_MULTI 2

/* Instruction classes and operations (linux/bpf_common.h, linux/bpf.h). */
#define FB_BPF_LDX 0x01
#define FB_BPF_ALU 0x04   /* 32-bit */
#define FB_BPF_JMP 0x05
#define FB_BPF_ALU64 0x07
#define FB_BPF_W 0x00
#define FB_BPF_MEM 0x60
#define FB_BPF_K 0x00
#define FB_BPF_X 0x08
#define FB_BPF_AND 0x50
#define FB_BPF_RSH 0x70
#define FB_BPF_MOV 0xb0
#define FB_BPF_JNE 0x50
#define FB_BPF_EXIT 0x90

struct fb_bpf_insn {
    uint8_t code;
    uint8_t dst_reg : 4;
    uint8_t src_reg : 4;
    int16_t off;
    int32_t imm;
};
_Static_assert(sizeof(struct fb_bpf_insn) == 8, "struct bpf_insn is 8 bytes");

/* The leading fields of union bpf_attr for the two commands; the rest stays zero. */
struct fb_bpf_load_attr {
    uint32_t prog_type, insn_cnt;
    uint64_t insns, license;
    uint32_t log_level, log_size;
    uint64_t log_buf;
    uint32_t kern_version, prog_flags;
    char prog_name[16];
    uint32_t prog_ifindex, expected_attach_type;
};

struct fb_bpf_attach_attr {
    uint32_t target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd;
    uint32_t pad[3];
};

#define INSN(c, d, s, o, i) \
    ((struct fb_bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(dst, src, off) INSN(FB_BPF_LDX | FB_BPF_W | FB_BPF_MEM, dst, src, off, 0)
#define ALU32_K(op, dst, imm) INSN(FB_BPF_ALU | (op) | FB_BPF_K, dst, 0, 0, imm)
#define MOV32_X(dst, src) INSN(FB_BPF_ALU | FB_BPF_MOV | FB_BPF_X, dst, src, 0, 0)
#define MOV64_K(dst, imm) INSN(FB_BPF_ALU64 | FB_BPF_MOV | FB_BPF_K, dst, 0, 0, imm)
#define JNE_K(dst, imm, off) INSN(FB_BPF_JMP | FB_BPF_JNE | FB_BPF_K, dst, 0, off, imm)
#define JNE_X(dst, src, off) INSN(FB_BPF_JMP | FB_BPF_JNE | FB_BPF_X, dst, src, off, 0)
#define EXIT() INSN(FB_BPF_JMP | FB_BPF_EXIT, 0, 0, 0, 0)

#define ALL_ACCESS (FB_DEV_MKNOD | FB_DEV_READ | FB_DEV_WRITE)
#define PROLOGUE_LEN 6
#define RULE_MAX_LEN 8 /* type 1, access 3, major 1, minor 1; r0 = 1; exit */

static int rule_valid(const struct fb_dev_rule *r)
{
    return (r->type == FB_DEV_ANY || r->type == FB_DEV_BLOCK || r->type == FB_DEV_CHAR) &&
           (r->major >= 0 || r->major == FB_DEV_WILDCARD) &&
           (r->minor >= 0 || r->minor == FB_DEV_WILDCARD) && r->access > 0 &&
           (r->access & ~ALL_ACCESS) == 0;
}

/* Appends one rule's block at p; returns the number of instructions written. */
static int emit_rule(struct fb_bpf_insn *p, const struct fb_dev_rule *r)
{
    int n_checks = (r->type != FB_DEV_ANY) + 3 * (r->access != ALL_ACCESS) +
                   (r->major != FB_DEV_WILDCARD) + (r->minor != FB_DEV_WILDCARD);
    int len = n_checks + 2, i = 0;
    /* A failed check jumps past this block: its offset counts from the next insn. */
#define TO_NEXT (len - i - 1)
    if (r->type != FB_DEV_ANY) {
        p[i] = JNE_K(2, r->type, TO_NEXT);
        i++;
    }
    if (r->access != ALL_ACCESS) {
        p[i] = MOV32_X(1, 3); /* w1 = w3 */
        i++;
        p[i] = ALU32_K(FB_BPF_AND, 1, r->access);
        i++;
        p[i] = JNE_X(1, 3, TO_NEXT);
        i++;
    }
    if (r->major != FB_DEV_WILDCARD) {
        p[i] = JNE_K(4, r->major, TO_NEXT);
        i++;
    }
    if (r->minor != FB_DEV_WILDCARD) {
        p[i] = JNE_K(5, r->minor, TO_NEXT);
        i++;
    }
#undef TO_NEXT
    p[i++] = MOV64_K(0, 1);
    p[i++] = EXIT();
    return i;
}

int fb_devices_load(const struct fb_dev_rule *rules, int n, struct fb_error *e)
{
    if (n < 0 || n > FB_DEV_MAX_RULES)
        return fb_fail(e, E2BIG, FB_PHASE_CGROUP_SETUP, "device program: too many rules", NULL);
    for (int i = 0; i < n; i++)
        if (!rule_valid(&rules[i]))
            return fb_fail(e, EINVAL, FB_PHASE_CGROUP_SETUP, "device program: invalid rule", NULL);
    size_t cap = PROLOGUE_LEN + (size_t)n * RULE_MAX_LEN + 2;
    struct fb_bpf_insn *prog = calloc(cap, sizeof *prog);
    if (!prog)
        return fb_fail(e, ENOMEM, FB_PHASE_CGROUP_SETUP, "device program", NULL);
    int len = 0;
    prog[len++] = LDX_W(2, 1, 0);               /* r2 = access_type */
    prog[len++] = ALU32_K(FB_BPF_AND, 2, 0xffff); /* w2 &= 0xffff: the device type */
    prog[len++] = LDX_W(3, 1, 0);               /* r3 = access_type */
    prog[len++] = ALU32_K(FB_BPF_RSH, 3, 16);   /* w3 >>= 16: the accesses */
    prog[len++] = LDX_W(4, 1, 4);               /* r4 = major */
    prog[len++] = LDX_W(5, 1, 8);               /* r5 = minor */
    int all = 0; /* a rule that allows everything ends the program: the verifier refuses
                    instructions no path reaches */
    for (int i = 0; i < n && !all; i++) {
        len += emit_rule(prog + len, &rules[i]);
        all = rules[i].type == FB_DEV_ANY && rules[i].major == FB_DEV_WILDCARD &&
              rules[i].minor == FB_DEV_WILDCARD && rules[i].access == ALL_ACCESS;
    }
    if (!all) {
        prog[len++] = MOV64_K(0, 0);
        prog[len++] = EXIT();
    }

    static const char license[] = "Apache-2.0";
    struct fb_bpf_load_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = FB_BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insn_cnt = (uint32_t)len;
    attr.insns = (uint64_t)(uintptr_t)prog;
    attr.license = (uint64_t)(uintptr_t)license;
    memcpy(attr.prog_name, "fastbox_devices", sizeof "fastbox_devices");
    long fd = syscall(SYS_bpf, FB_BPF_PROG_LOAD, &attr, sizeof attr);
    int err = errno;
    free(prog);
    if (fd < 0)
        return fb_fail(e, err, FB_PHASE_CGROUP_SETUP, "bpf(BPF_PROG_LOAD) of the device program", NULL);
    return (int)fd; /* the kernel makes every bpf fd close-on-exec */
}

int fb_devices_attach(int cgroup_fd, int prog_fd, const char *where, struct fb_error *e)
{
    /* BPF_F_ALLOW_MULTI: whatever is attached later below this cgroup, or to it, runs in
     * addition to this program (every one must allow), never instead of it, and it cannot
     * be detached without this program's fd. Programs an ancestor attached with MULTI
     * (systemd's DeviceAllow=) keep applying too. */
    struct fb_bpf_attach_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = FB_BPF_CGROUP_DEVICE;
    attr.attach_flags = FB_BPF_F_ALLOW_MULTI;
    if (syscall(SYS_bpf, FB_BPF_PROG_ATTACH, &attr, sizeof attr) < 0)
        return fb_fail(e, errno, FB_PHASE_CGROUP_SETUP, "attach the device program to", where);
    return 0;
}

int fb_devices_attach_path(const char *dir, int prog_fd, struct fb_error *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fb_fail(e, errno, FB_PHASE_CGROUP_SETUP, "open", dir);
    int rc = fb_devices_attach(fd, prog_fd, dir, e);
    close(fd);
    return rc;
}
