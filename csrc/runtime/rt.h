/* fastbox-runtime: an OCI runtime with runc's command line, linked with the fastbox core
 * (csrc/fb_*.c). Every verb is this one native process: no interpreter starts. `create`
 * turns config.json into the core's flat plan and clones the container itself, so the
 * container's process is the caller's descendant (the shim or conmon reaps it). */
#ifndef RT_H
#define RT_H
#include <sys/types.h>
#include "rt_json.h"
#include "../fb_plan.h"

#define RT_VERSION "0.1.0"
#define RT_OCI_VERSION "1.1.0"
#define RT_DEFAULT_ROOT "/run/fastbox-runtime"
#define RT_MAX_CG 24

struct rt_global {
    const char *root;       /* --root: the caller's state directory */
    const char *log;        /* --log FILE */
    int log_json;           /* --log-format json */
    int systemd_cgroup;     /* --systemd-cgroup */
    const char *self;       /* our own executable, resolved */
};
extern struct rt_global G;

/* rt_main.c: an error line in the log (json: {"level":"error","msg":...}) and on stderr,
 * then exit 1. */
__attribute__((noreturn, format(printf, 1, 2))) void rt_die(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void rt_warn(const char *fmt, ...);
char *rt_strdup(const char *s);
char *rt_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int rt_opt(const char *arg, const char *name, const char **inline_val);
void rt_now_rfc3339(char *buf, size_t n);
int rt_write_file(const char *path, const char *value); /* 0 or -errno */
char *rt_read_file(const char *path);                   /* NULL on error */
int rt_atomic_write(const char *path, const char *data, size_t len);
int rt_parse_signal(const char *s);

/* rt_cgroup.c: the container's cgroups, one directory per hierarchy */
struct rt_cg {
    char *dirs[RT_MAX_CG];  /* the container's own directory in each hierarchy */
    const char *ctrls[RT_MAX_CG]; /* v1: that hierarchy's controllers ("cpu,cpuacct") */
    const char *bases[RT_MAX_CG]; /* v1: its mount's directory name under /sys/fs/cgroup */
    int n;
    char *joins[RT_MAX_CG]; /* v1 tasks files */
    int n_joins;
    char *made[128];        /* directories we made, deepest last */
    int n_made;
    char *v2;               /* pure v2: the container's directory */
    char *freezer;          /* v1 freezer directory, or NULL */
    char *procs;            /* a directory whose cgroup.procs lists the container's */
    const char *files[256], *values[256];
    int n_writes;
    int cpuset;             /* joins the v1 cpuset hierarchy */
};
int rt_cg_v2_only(void);
void rt_cg_resolve(struct rt_cg *cg, const char *path, const char *id, int want_cpuset);
void rt_cg_make(struct rt_cg *cg);
void rt_cg_resources(struct rt_cg *cg, const struct js *res);
void rt_cg_devices(struct rt_cg *cg, const struct js *res, struct fb_plan *plan);
void rt_cg_apply_writes(struct rt_cg *cg);
void rt_cg_remove(const struct js *state);
int rt_cg_freeze(const struct js *state, int frozen);
int rt_cg_frozen(const struct js *state);
pid_t *rt_cg_pids(const struct js *state, int *n);

/* rt_state.c */
char *rt_state_dir(const char *id);
void rt_check_id(const char *id);
struct js *rt_state_load(const char *id); /* dies with "does not exist" */
struct js *rt_state_try(const char *id);  /* NULL when missing */
const char *rt_status(const struct js *st, pid_t *pid);
void rt_print_state(FILE *f, const struct js *st);
int rt_pidfd(const struct js *st); /* a pidfd of the init if it is still the one we made, else -1 */
unsigned long long rt_proc_start(pid_t pid);

/* rt_seccomp.c: the OCI seccomp section as classic BPF (cached by content) */
void *rt_seccomp_compile(const struct js *seccomp, int *n_insns);

/* rt_config.c: config.json -> plan */
struct rt_build {
    struct fb_plan plan;
    struct rt_cg cg;
    int ns_join_fds[8];
    int ns_join_types[8];
    int n_ns_join;
    const struct js *cfg;
    const char *rootfs;
    int terminal;
};
void rt_build_plan(struct rt_build *b, const struct js *cfg, const char *bundle, const char *id);
void rt_build_process(struct fb_plan *plan, const struct js *process, const struct js *cfg, int *terminal);
void rt_apply_rlimits(const struct js *process);
int rt_ns_flags(const struct js *cfg);

/* rt_create.c: the verbs that make processes */
int rt_create(int argc, char **argv, int run);
int rt_start(int argc, char **argv);
int rt_exec(int argc, char **argv);
void rt_run_hooks(const struct js *hooks, const char *which, const struct js *st, const char *status);
int rt_connect_console(const char *path);
#endif
