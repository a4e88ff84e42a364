/* The OCI seccomp section compiled to classic BPF by libseccomp, as fastbox's own
 * run does (fastbox/runtime/seccomp.py); the core installs the program with one
 * syscall, last before execve when noNewPrivileges is set.
 *
 * libseccomp is opened with dlopen only when a compile is needed (no header or static
 * library is needed to build, and a config without seccomp never loads it). Programs
 * are cached by content under <root>/.seccomp (root's alone, written by rename): each
 * container of a client reuses the one compile its profile needed. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "rt.h"

struct scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a, datum_b;
};

struct lib {
    void *(*init)(uint32_t);
    int (*attr_set)(void *, int, uint32_t);
    uint32_t (*arch_resolve)(const char *);
    int (*arch_add)(void *, uint32_t);
    int (*syscall_resolve)(const char *);
    int (*rule_add_array)(void *, uint32_t, int, unsigned, const struct scmp_arg_cmp *);
    int (*export_bpf)(void *, int);
    void (*release)(void *);
};

static void load(struct lib *l)
{
    void *h = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        rt_die("linux.seccomp needs libseccomp (libseccomp.so.2): %s", dlerror());
#define SYM(field, name) if (!(*(void **)&l->field = dlsym(h, name))) rt_die("libseccomp: no %s", name)
    SYM(init, "seccomp_init");
    SYM(attr_set, "seccomp_attr_set");
    SYM(arch_resolve, "seccomp_arch_resolve_name");
    SYM(arch_add, "seccomp_arch_add");
    SYM(syscall_resolve, "seccomp_syscall_resolve_name");
    SYM(rule_add_array, "seccomp_rule_add_array");
    SYM(export_bpf, "seccomp_export_bpf");
    SYM(release, "seccomp_release");
#undef SYM
}

static uint32_t action(const char *name, long long errno_ret, int has_errno)
{
    if (!strcmp(name, "SCMP_ACT_ALLOW")) return 0x7fff0000U;
    if (!strcmp(name, "SCMP_ACT_ERRNO")) return 0x00050000U | (uint32_t)((has_errno ? errno_ret : EPERM) & 0xffff);
    if (!strcmp(name, "SCMP_ACT_KILL") || !strcmp(name, "SCMP_ACT_KILL_THREAD")) return 0;
    if (!strcmp(name, "SCMP_ACT_KILL_PROCESS")) return 0x80000000U;
    if (!strcmp(name, "SCMP_ACT_TRAP")) return 0x00030000U;
    if (!strcmp(name, "SCMP_ACT_LOG")) return 0x7ffc0000U;
    if (!strcmp(name, "SCMP_ACT_TRACE")) return 0x7ff00000U | (uint32_t)((has_errno ? errno_ret : EPERM) & 0xffff);
    rt_die("linux.seccomp: action %s is not supported", name);
}

static int op(const char *name)
{
    static const char *const ops[] = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                      "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ", NULL};
    for (int i = 0; ops[i]; i++)
        if (!strcmp(name, ops[i]))
            return i + 1;
    rt_die("linux.seccomp: operator %s is not supported", name);
}

static void check(int rc, const char *what, const char *arg)
{
    if (rc < 0)
        rt_die("linux.seccomp: %s %s: %s", what, arg ? arg : "", strerror(-rc));
}

static void *compile(const struct js *sc, int *n)
{
    struct lib l;
    load(&l);
    uint32_t def = action(js_str(sc, "defaultAction", "SCMP_ACT_ALLOW"), js_int(sc, "defaultErrnoRet", 1),
                          js_has(sc, "defaultErrnoRet"));
    void *ctx = l.init(def);
    if (!ctx)
        rt_die("linux.seccomp: libseccomp refused the default action");
    check(l.attr_set(ctx, 2, def), "bad-architecture action", NULL); /* SCMP_FLTATR_ACT_BADARCH */
    l.attr_set(ctx, 8, 2);                                            /* binary tree (2.5.4+) */
    JS_EACH(a, js_get(sc, "architectures")) {
        const char *name = a->str ? a->str : "";
        if (!strncmp(name, "SCMP_ARCH_", 10))
            name += 10;
        char lower[32];
        size_t k = 0;
        for (; name[k] && k < sizeof lower - 1; k++)
            lower[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
        lower[k] = '\0';
        uint32_t token = l.arch_resolve(lower);
        if (!token)
            rt_die("linux.seccomp: unknown architecture %s", a->str);
        int rc = l.arch_add(ctx, token);
        if (rc < 0 && rc != -EEXIST)
            check(rc, "architecture", a->str);
    }
    JS_EACH(rule, js_get(sc, "syscalls")) {
        uint32_t act = action(js_str(rule, "action", ""), js_int(rule, "errnoRet", 1), js_has(rule, "errnoRet"));
        if (act == def)
            continue; /* libseccomp refuses a rule that repeats the default */
        const struct js *args = js_get(rule, "args");
        struct scmp_arg_cmp cmp[6];
        int nc = 0, same_index = 0;
        JS_EACH(a, args) {
            if (nc >= 6)
                rt_die("linux.seccomp: more than 6 argument conditions");
            cmp[nc].arg = (unsigned)js_int(a, "index", 0);
            cmp[nc].op = op(js_str(a, "op", ""));
            cmp[nc].datum_a = (uint64_t)js_int(a, "value", 0);
            cmp[nc].datum_b = (uint64_t)js_int(a, "valueTwo", 0);
            for (int j = 0; j < nc; j++)
                same_index |= cmp[j].arg == cmp[nc].arg;
            nc++;
        }
        JS_EACH(name, js_get(rule, "names")) {
            int nr = l.syscall_resolve(name->str ? name->str : "");
            if (nr == -1)
                continue; /* unknown to this libseccomp: skipped, as runc does */
            if (!same_index) {
                check(l.rule_add_array(ctx, act, nr, (unsigned)nc, cmp), "rule for", name->str);
                continue;
            }
            /* conditions on one argument are alternatives: one rule each (runc) */
            for (int j = 0; j < nc; j++)
                check(l.rule_add_array(ctx, act, nr, 1, &cmp[j]), "rule for", name->str);
        }
    }
    int fd = memfd_create("seccomp", MFD_CLOEXEC);
    check(fd < 0 ? -errno : l.export_bpf(ctx, fd), "export", NULL);
    l.release(ctx);
    off_t size = lseek(fd, 0, SEEK_END);
    void *prog = malloc((size_t)size);
    if (pread(fd, prog, (size_t)size, 0) != size)
        rt_die("linux.seccomp: reading the program: %s", strerror(errno));
    close(fd);
    *n = (int)(size / 8);
    return prog;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

void *rt_seccomp_compile(const struct js *sc, int *n)
{
    if (js_get(sc, "listenerPath") || (js_get(sc, "flags") && js_get(sc, "flags")->n))
        rt_warn("linux.seccomp: flags and listenerPath are ignored");
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    js_dump(f, sc);
    fclose(f);
    struct utsname u;
    uname(&u);
    uint64_t h = fnv(0xcbf29ce484222325ULL, text, len);
    h = fnv(h, u.release, strlen(u.release));
    h = fnv(h, u.machine, strlen(u.machine));
    h = fnv(h, "fastbox-runtime-seccomp-1", 25);
    char *dir = rt_fmt("%s/.seccomp", G.root);
    char *path = rt_fmt("%s/%016llx", dir, (unsigned long long)h);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
        !(st.st_mode & 077) && st.st_size > 0 && st.st_size % 8 == 0 && st.st_size <= 8 * 4096) {
        void *prog = malloc((size_t)st.st_size);
        if (read(fd, prog, (size_t)st.st_size) == st.st_size) {
            close(fd);
            *n = (int)(st.st_size / 8);
            return prog;
        }
    }
    if (fd >= 0)
        close(fd);
    void *prog = compile(sc, n);
    if ((mkdir(dir, 0700) == 0 || errno == EEXIST) && lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
        st.st_uid == geteuid() && !(st.st_mode & 077)) {
        char *tmp = rt_fmt("%s.%d", path, getpid());
        int w = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (w >= 0 && write(w, prog, (size_t)*n * 8) == (ssize_t)*n * 8 && close(w) == 0)
            rename(tmp, path);
        else
            unlink(tmp);
    }
    return prog;
}
