/* Raw system calls for the container child.
 *
 * The child shares the parent's memory (CLONE_VM) and its thread pointer, so libc
 * wrappers that set errno would write into the parent thread's errno. Every call made
 * between clone and execve goes through these wrappers instead: they return -errno and
 * touch no global state. */
#ifndef FB_SYS_H
#define FB_SYS_H

#include <errno.h>
#include <sys/syscall.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#if defined(__x86_64__)
static inline long fb_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define FB_HAVE_RAW_SYSCALL 1
#elif defined(__aarch64__)
static inline long fb_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#define FB_HAVE_RAW_SYSCALL 1
#else
/* Other architectures: fb_spawn does not use CLONE_VM there, so libc's errno is the
 * child's own and the libc wrapper is safe. */
#include <errno.h>
#include <unistd.h>
static inline long fb_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long r = syscall(n, a, b, c, d, e, f);
    return r < 0 ? -errno : r;
}
#define FB_HAVE_RAW_SYSCALL 0
#endif

#define FB_SYS0(n) fb_sys6((n), 0, 0, 0, 0, 0, 0)
#define FB_SYS1(n, a) fb_sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define FB_SYS2(n, a, b) fb_sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define FB_SYS3(n, a, b, c) fb_sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define FB_SYS4(n, a, b, c, d) fb_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define FB_SYS5(n, a, b, c, d, e) \
    fb_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)
#define FB_SYS6(n, a, b, c, d, e, f) \
    fb_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

#endif
