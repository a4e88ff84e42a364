/* The verbs that make processes: create (and run), start, exec; with hooks, the console
 * socket, sysctls and oomScoreAdj.
 *
 * create: this process clones the container itself through the core (fb_spawn), so the
 * container's init is the caller's descendant: when we exit it is reparented to the
 * caller's subreaper (containerd's shim, conmon), which the pid file names it to. The
 * init finishes every step up to execve, reports ready, and blocks opening exec.fifo
 * (as runc's init does); `start` opens the fifo and it execs. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "rt.h"

static const char *phase_names[] = {"", "cgroup setup", "clone", "stdio", "cgroup join", "rootfs",
                                    "pivot_root", "mounts", "identity", "exec"};

static __attribute__((noreturn)) void die_report(const struct fb_report *r)
{
    int ph = r->err.phase >= 0 && r->err.phase < FB_PHASE_MAX ? r->err.phase : 0;
    rt_die("container start failed in %s: %s: %s", phase_names[ph], r->err.msg, strerror(r->err.err));
}

/* ------------------------------------------------------------------ hooks */

static void state_for_hook(FILE *f, const struct js *st, const char *status)
{
    fprintf(f, "{\"ociVersion\":\"%s\",\"id\":", RT_OCI_VERSION);
    js_write_str(f, js_str(st, "id", ""));
    fprintf(f, ",\"status\":\"%s\",\"pid\":%lld,\"bundle\":", status, js_int(st, "pid", 0));
    js_write_str(f, js_str(st, "bundle", ""));
    fputs(",\"annotations\":", f);
    if (js_get(st, "annotations"))
        js_dump(f, js_get(st, "annotations"));
    else
        fputs("{}", f);
    fputc('}', f);
}

/* Each hook runs with the state JSON on its stdin, and its timeout (seconds) if set. A
 * failing prestart/createRuntime hook fails the create; poststart and poststop failures
 * are logged (runtime-spec). */
void rt_run_hooks(const struct js *hooks, const char *which, const struct js *st, const char *status)
{
    JS_EACH(h, js_get(hooks, which)) {
        const char *path = js_str(h, "path", NULL);
        if (!path)
            continue;
        char *text;
        size_t len;
        FILE *f = open_memstream(&text, &len);
        state_for_hook(f, st, status);
        fclose(f);
        int in[2];
        if (pipe2(in, O_CLOEXEC) < 0)
            rt_die("%s hook: pipe: %s", which, strerror(errno));
        const char **args = calloc((size_t)(js_get(h, "args") ? js_get(h, "args")->n : 0) + 2, sizeof *args);
        int na = 0;
        JS_EACH(a, js_get(h, "args")) args[na++] = a->str;
        if (!na)
            args[na++] = path;
        const char **env = calloc((size_t)(js_get(h, "env") ? js_get(h, "env")->n : 0) + 1, sizeof *env);
        int ne = 0;
        JS_EACH(e, js_get(h, "env")) env[ne++] = e->str;
        pid_t pid = fork();
        if (pid == 0) {
            dup2(in[0], 0);
            execve(path, (char *const *)args, (char *const *)env);
            _exit(127);
        }
        close(in[0]);
        signal(SIGPIPE, SIG_IGN);
        if (write(in[1], text, len) < 0 && errno != EPIPE)
            rt_warn("%s hook: writing its state: %s", which, strerror(errno));
        close(in[1]);
        long long timeout = js_int(h, "timeout", 0);
        int status_code = 0;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            pid_t r = waitpid(pid, &status_code, timeout > 0 ? WNOHANG : 0);
            if (r == pid)
                break;
            if (r < 0 && errno != EINTR)
                break;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (timeout > 0 && now.tv_sec - t0.tv_sec >= timeout) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                status_code = -1;
                break;
            }
            struct timespec ms = {0, 2000000};
            nanosleep(&ms, NULL);
        }
        if (status_code != 0) {
            int fatal = !strcmp(which, "prestart") || !strcmp(which, "createRuntime") ||
                        !strcmp(which, "createContainer") || !strcmp(which, "startContainer");
            if (fatal)
                rt_die("%s hook %s failed: %s", which, path,
                       status_code < 0 ? "timed out" : "non-zero exit status");
            rt_warn("%s hook %s failed", which, path);
        }
    }
}

/* ------------------------------------------------------------------ helpers */

int rt_connect_console(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        rt_die("console socket path %s is too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        rt_die("console socket %s: %s", path, strerror(errno));
    return fd;
}

/* Only namespaced sysctls, as runc allows: those a container's own namespaces hold. */
static int sysctl_ns(const char *key)
{
    if (!strncmp(key, "net.", 4))
        return CLONE_NEWNET;
    if (!strcmp(key, "kernel.msgmax") || !strcmp(key, "kernel.msgmnb") || !strcmp(key, "kernel.msgmni") ||
        !strcmp(key, "kernel.sem") || !strcmp(key, "kernel.shmall") || !strcmp(key, "kernel.shmmax") ||
        !strcmp(key, "kernel.shmmni") || !strcmp(key, "kernel.shm_rmid_forced") || !strncmp(key, "fs.mqueue.", 10))
        return CLONE_NEWIPC;
    if (!strcmp(key, "kernel.domainname") || !strcmp(key, "kernel.hostname"))
        return CLONE_NEWUTS;
    return 0;
}

static int same_ns(pid_t pid, const char *name)
{
    struct stat a, b;
    char *p = rt_fmt("/proc/%d/ns/%s", pid, name);
    return stat(p, &a) == 0 && stat(rt_fmt("/proc/self/ns/%s", name), &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

/* Written from here, after entering the container's net, ipc and uts namespaces: the
 * files under /proc/sys/{net,kernel/shm*...} are those of the writer's namespaces. */
static void apply_sysctls(pid_t pid, const struct js *cfg)
{
    const struct js *sys = js_path(cfg, "linux", "sysctl", NULL);
    const char *domain = js_str(cfg, "domainname", NULL);
    if ((!sys || !sys->n) && !domain)
        return;
    static const struct { const char *name; int flag; } nss[] = {
        {"net", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}};
    int entered = 0;
    JS_EACH(s, sys) {
        int ns = sysctl_ns(s->key);
        if (!ns || strstr(s->key, "..") || strchr(s->key, '/'))
            rt_die("sysctl %s is not allowed: it is not in a namespace of the container's", s->key);
    }
    for (unsigned i = 0; i < 3; i++) {
        if (same_ns(pid, nss[i].name))
            continue; /* shared with the host: nothing of it may be written */
        int fd = open(rt_fmt("/proc/%d/ns/%s", pid, nss[i].name), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, nss[i].flag) < 0)
            rt_die("enter the container's %s namespace: %s", nss[i].name, strerror(errno));
        close(fd);
        entered |= nss[i].flag;
    }
    JS_EACH(s, sys) {
        if (!(entered & sysctl_ns(s->key)))
            rt_die("sysctl %s needs a namespace of the container's own; it shares the host's", s->key);
        char *path = rt_fmt("/proc/sys/%s", s->key);
        for (char *c = path + 10; *c; c++)
            if (*c == '.')
                *c = '/';
        int rc = rt_write_file(path, s->str ? s->str : "");
        if (rc < 0)
            rt_die("sysctl %s=%s: %s", s->key, s->str, strerror(-rc));
    }
    if (domain) {
        if (!(entered & CLONE_NEWUTS))
            rt_die("domainname needs a uts namespace of the container's own");
        if (setdomainname(domain, strlen(domain)) < 0)
            rt_die("domainname %s: %s", domain, strerror(errno));
    }
}

static void join_namespaces(struct rt_build *b)
{
    /* the mount namespace last: the others are opened by fd already */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < b->n_ns_join; i++) {
            if ((b->ns_join_types[i] == CLONE_NEWNS) != pass)
                continue;
            if (setns(b->ns_join_fds[i], b->ns_join_types[i]) < 0)
                rt_die("join namespace (%#x): %s", b->ns_join_types[i], strerror(errno));
            close(b->ns_join_fds[i]);
        }
}

static void write_pid_file(const char *path, pid_t pid)
{
    if (!path)
        return;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d", pid);
    int rc = rt_atomic_write(path, buf, (size_t)n);
    if (rc < 0)
        rt_die("pid file %s: %s", path, strerror(-rc));
}

static void strv_json(FILE *f, char *const *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        js_write_str(f, v[i]);
    }
    fputc(']', f);
}

static void save_state(const char *id, const char *bundle, struct rt_build *b, pid_t pid, const char *created)
{
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    fputs("{\"id\":", f);
    js_write_str(f, id);
    fprintf(f, ",\"pid\":%d,\"start\":%llu,\"bundle\":", pid, pid > 0 ? rt_proc_start(pid) : 0ULL);
    js_write_str(f, bundle);
    fputs(",\"rootfs\":", f);
    js_write_str(f, b->rootfs);
    fputs(",\"created\":", f);
    js_write_str(f, created);
    fputs(",\"annotations\":", f);
    js_dump(f, js_get(b->cfg, "annotations"));
    fputs(",\"cgroups\":", f);
    strv_json(f, b->cg.dirs, b->cg.n);
    fputs(",\"joins\":", f);
    strv_json(f, b->cg.joins, b->cg.n_joins);
    fputs(",\"madeCgroups\":", f);
    strv_json(f, b->cg.made, b->cg.n_made);
    fputs(",\"freezer\":", f);
    js_write_str(f, b->cg.freezer);
    fputs(",\"v2\":", f);
    js_write_str(f, b->cg.v2);
    fputs(",\"procs\":", f);
    js_write_str(f, b->cg.procs);
    /* the namespaces an exec enters: those the init has of its own (cgroup included when
     * the child unshared it itself) */
    int ns = b->plan.ns_flags | (b->plan.unshare_cgroupns ? CLONE_NEWCGROUP : 0);
    for (int i = 0; i < b->n_ns_join; i++)
        ns |= b->ns_join_types[i];
    fprintf(f, ",\"nsFlags\":%d,\"hooks\":", ns);
    js_dump(f, js_get(b->cfg, "hooks"));
    fputc('}', f);
    fclose(f);
    int rc = rt_atomic_write(rt_fmt("%s/%s/state.json", G.root, id), text, len);
    if (rc < 0)
        rt_die("state.json: %s", strerror(-rc));
}

/* ------------------------------------------------------------------ create / run */

/* Undone at exit unless create completes: the child, the cgroups we made, the state. */
static struct {
    const char *dir;
    struct rt_cg *cg;
    pid_t pid;
    int done;
} undo;

static void undo_create(void)
{
    if (undo.done || !undo.dir)
        return;
    if (undo.pid > 0) {
        kill(undo.pid, SIGKILL);
        waitpid(undo.pid, NULL, __WALL);
    }
    for (int i = undo.cg ? undo.cg->n_made - 1 : -1; i >= 0; i--)
        rmdir(undo.cg->made[i]);
    unlink(rt_fmt("%s/exec.fifo", undo.dir));
    unlink(rt_fmt("%s/state.json", undo.dir));
    rmdir(undo.dir);
}

static int wait_exit(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 255;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int do_start(const char *id, const struct js *st);

int rt_create(int argc, char **argv, int run)
{
    const char *bundle = ".", *pid_file = NULL, *console = NULL, *id = NULL;
    int detach = 0, keep = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
#define VAL (v ? v : (i + 1 < argc ? argv[++i] : ""))
        if (rt_opt(a, "bundle", &v) || rt_opt(a, "b", &v)) bundle = VAL;
        else if (rt_opt(a, "pid-file", &v)) pid_file = VAL;
        else if (rt_opt(a, "console-socket", &v)) console = VAL;
        else if (rt_opt(a, "preserve-fds", &v)) {
            const char *n = VAL;
            if (strcmp(n, "0"))
                rt_die("--preserve-fds is not supported");
        } else if (rt_opt(a, "detach", NULL) || rt_opt(a, "d", NULL)) detach = 1;
        else if (rt_opt(a, "keep", NULL)) keep = 1;
        else if (rt_opt(a, "no-pivot", NULL) || rt_opt(a, "no-new-keyring", NULL) ||
                 rt_opt(a, "no-subreaper", NULL)) ;
        else if (a[0] == '-' && a[1]) rt_die("%s: unknown option %s", argv[0], a);
        else if (!id) id = a;
        else rt_die("%s: unexpected argument %s", argv[0], a);
#undef VAL
    }
    if (!id)
        rt_die("%s: a container id is required", argv[0]);
    rt_check_id(id);
    char real[PATH_MAX];
    if (!realpath(bundle, real))
        rt_die("bundle %s: %s", bundle, strerror(errno));
    bundle = rt_strdup(real);
    char err[512];
    struct js *cfg = js_parse_file(rt_fmt("%s/config.json", bundle), err, sizeof err);
    if (!cfg)
        rt_die("config.json: %s", err);
    for (char *s = rt_strdup(G.root), *c = s + 1;; c++) { /* mkdir -p, as runc */
        if (*c && *c != '/')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(s, 0711) < 0 && errno != EEXIST)
            rt_die("state root %s: %s", s, strerror(errno));
        if (!(*c = saved))
            break;
    }
    char *dir = rt_state_dir(id);
    if (mkdir(dir, 0711) < 0)
        rt_die(errno == EEXIST ? "container with id exists: %s" : "state directory %s: %s", errno == EEXIST ? id : dir,
               strerror(errno));
    static struct rt_build b;
    undo.dir = dir;
    undo.cg = &b.cg;
    atexit(undo_create);
    rt_build_plan(&b, cfg, bundle, id);
    struct fb_plan *p = &b.plan;
    if (b.terminal) {
        if (!console && (!run || detach))
            rt_die("cannot allocate tty if the runtime will detach without setting console socket");
        if (console)
            p->console_fd = rt_connect_console(console);
        else
            b.terminal = 0; /* run in the foreground: the caller's own terminal is stdio */
    } else if (console) {
        rt_die("--console-socket given but process.terminal is false");
    }
    char *fifo = rt_fmt("%s/exec.fifo", dir);
    if (mkfifo(fifo, 0622) < 0)
        rt_die("exec.fifo: %s", strerror(errno));
    p->wait_fifo = 1;
    p->wait_fifo_fd = open(fifo, O_PATH | O_CLOEXEC);
    if (p->wait_fifo_fd < 0)
        rt_die("exec.fifo: %s", strerror(errno));
    p->detached = !run || detach;
    rt_cg_make(&b.cg);
    /* a first state (no init yet: "stopped"), so that a create killed from here on leaves
     * what `delete --force` needs to remove its cgroups */
    char created[64];
    rt_now_rfc3339(created, sizeof created);
    save_state(id, bundle, &b, 0, created);
    rt_apply_rlimits(js_get(cfg, "process"));
    join_namespaces(&b);
    static struct fb_report rep;
    if (fb_spawn(p, &rep) < 0)
        die_report(&rep);
    pid_t pid = rep.pid;
    undo.pid = pid;
    if (rep.pidfd >= 0)
        close(rep.pidfd);
    if (p->console_fd >= 0)
        close(p->console_fd);
    long long oom = js_int(js_get(cfg, "process"), "oomScoreAdj", LLONG_MIN);
    if (oom != LLONG_MIN) {
        int rc = rt_write_file(rt_fmt("/proc/%d/oom_score_adj", pid), rt_fmt("%lld", oom));
        if (rc < 0)
            rt_die("oomScoreAdj %lld: %s", oom, strerror(-rc));
    }
    save_state(id, bundle, &b, pid, created);
    struct js *st = rt_state_load(id);
    rt_run_hooks(js_get(cfg, "hooks"), "prestart", st, "created");
    rt_run_hooks(js_get(cfg, "hooks"), "createRuntime", st, "created");
    /* last: sysctls enter the container's namespaces, which nothing after needs to leave */
    apply_sysctls(pid, cfg);
    write_pid_file(pid_file, pid);
    undo.done = 1;
    if (!run)
        return 0;
    if (do_start(id, st) != 0)
        return 1;
    if (detach)
        return 0;
    int code = wait_exit(pid);
    if (!keep) {
        /* as runc run: the container is deleted once it exits */
        rt_cg_remove(st);
        rt_run_hooks(js_get(st, "hooks"), "poststop", st, "stopped");
        unlink(rt_fmt("%s/state.json", dir));
        rmdir(dir);
    }
    return code;
}

/* ------------------------------------------------------------------ start */

static int do_start(const char *id, const struct js *st)
{
    const char *status = rt_status(st, NULL);
    if (!strcmp(status, "stopped"))
        rt_die("cannot start a container that has stopped");
    if (strcmp(status, "created"))
        rt_die("cannot start an already running container");
    char *fifo = rt_fmt("%s/%s/exec.fifo", G.root, id);
    int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        rt_die("exec.fifo: %s", strerror(errno));
    int pidfd = rt_pidfd(st);
    struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
    for (;;) {
        int n = poll(pf, pidfd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (pf[0].revents & (POLLIN | POLLHUP))
            break;
        if (pidfd < 0 || (pf[1].revents & POLLIN))
            rt_die("container's init exited before it was started");
    }
    char c;
    if (read(fd, &c, 1) != 1)
        rt_die("container's init exited before it was started");
    close(fd);
    unlink(fifo);
    if (pidfd >= 0)
        close(pidfd);
    rt_run_hooks(js_get(st, "hooks"), "poststart", st, "running");
    return 0;
}

int rt_start(int argc, char **argv)
{
    const char *id = NULL;
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-' && !id)
            id = argv[i];
    if (!id)
        rt_die("start: a container id is required");
    rt_check_id(id);
    return do_start(id, rt_state_load(id));
}

/* ------------------------------------------------------------------ exec */

/* the exec helper, installed in fastbox/libexec beside us, or found from bin/ */
static const char *enter_helper(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        rt_die("readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    char *near = rt_fmt("%s/fastbox-enter", self);
    if (access(near, X_OK) == 0)
        return near;
    glob_t g;
    if (glob(rt_fmt("%s/../lib/python3*/site-packages/fastbox/libexec/fastbox-enter", self), 0, NULL, &g) == 0 &&
        g.gl_pathc)
        return rt_strdup(g.gl_pathv[0]);
    rt_die("the exec helper fastbox-enter was not found beside %s", self);
}

int rt_exec(int argc, char **argv)
{
    const char *process = NULL, *pid_file = NULL, *console = NULL, *id = NULL, *cwd = NULL, *user = NULL;
    int detach = 0, tty = 0, args_at = -1;
    const char *envs[64];
    int n_env = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
#define VAL (v ? v : (i + 1 < argc ? argv[++i] : ""))
        if (id) { args_at = i; break; }
        if (rt_opt(a, "process", &v) || rt_opt(a, "p", &v)) process = VAL;
        else if (rt_opt(a, "pid-file", &v)) pid_file = VAL;
        else if (rt_opt(a, "console-socket", &v)) console = VAL;
        else if (rt_opt(a, "cwd", &v)) cwd = VAL;
        else if (rt_opt(a, "user", &v) || rt_opt(a, "u", &v)) user = VAL;
        else if (rt_opt(a, "env", &v) || rt_opt(a, "e", &v)) { const char *e = VAL; if (n_env < 64) envs[n_env++] = e; }
        else if (rt_opt(a, "detach", NULL) || rt_opt(a, "d", NULL)) detach = 1;
        else if (rt_opt(a, "tty", NULL) || rt_opt(a, "t", NULL)) tty = 1;
        else if (rt_opt(a, "preserve-fds", &v)) { if (strcmp(VAL, "0")) rt_die("--preserve-fds is not supported"); }
        else if (rt_opt(a, "process-label", &v) || rt_opt(a, "apparmor", &v) || rt_opt(a, "cap", &v)) (void)VAL;
        else if (rt_opt(a, "no-new-privs", NULL)) ;
        else if (a[0] == '-' && a[1]) rt_die("exec: unknown option %s", a);
        else id = a;
#undef VAL
    }
    if (!id)
        rt_die("exec: a container id is required");
    rt_check_id(id);
    struct js *st = rt_state_load(id);
    const char *status = rt_status(st, NULL);
    if (!strcmp(status, "stopped"))
        rt_die("cannot exec in a stopped container");
    if (!strcmp(status, "paused"))
        rt_die("cannot exec in a paused container");
    char err[512];
    struct js *cfg = js_parse_file(rt_fmt("%s/config.json", js_str(st, "bundle", "")), err, sizeof err);
    if (!cfg)
        rt_die("config.json: %s", err);
    struct js *proc;
    if (process) {
        proc = js_parse_file(process, err, sizeof err);
        if (!proc)
            rt_die("process: %s", err);
    } else {
        /* the container's own process, with the command line's args and options */
        proc = js_get(cfg, "process");
        if (args_at < 0)
            rt_die("exec: a command is required (or --process)");
        struct js *args = calloc(1, sizeof *args), **tail = &args->child;
        args->type = JS_ARR;
        args->key = "args";
        for (int i = args_at; i < argc; i++) {
            struct js *s = calloc(1, sizeof *s);
            s->type = JS_STR;
            s->str = argv[i];
            *tail = s;
            tail = &s->next;
            args->n++;
        }
        for (struct js *m = proc->child; m; m = m->next)
            if (!strcmp(m->key, "args")) {
                m->child = args->child;
                m->n = args->n;
            } else if (!strcmp(m->key, "terminal")) {
                m->boolean = tty;
            } else if (!strcmp(m->key, "cwd") && cwd) {
                m->str = cwd;
            } else if (!strcmp(m->key, "env")) {
                for (int k = 0; k < n_env; k++) {
                    struct js *s = calloc(1, sizeof *s);
                    s->type = JS_STR;
                    s->str = envs[k];
                    s->next = m->child;
                    m->child = s;
                    m->n++;
                }
            } else if (!strcmp(m->key, "user") && user) {
                struct js *u = js_get(m, "uid"), *g = js_get(m, "gid");
                if (u) u->num = strtoll(user, NULL, 10);
                if (g && strchr(user, ':')) g->num = strtoll(strchr(user, ':') + 1, NULL, 10);
            }
    }
    static struct fb_plan p;
    memset(&p, 0, sizeof p);
    p.join_netns_fd = -1;
    p.dev_prog_fd = -1;
    p.console_fd = -1;
    p.init_fd = -1;
    for (int i = 0; i < 3; i++)
        p.stdio[i] = -1;
    int terminal = 0;
    rt_build_process(&p, proc, cfg, &terminal);
    p.join_pidfd = rt_pidfd(st);
    if (p.join_pidfd < 0)
        rt_die("container not running");
    p.join_ns_flags = (int)(js_int(st, "nsFlags", 0) & (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET |
                                                         CLONE_NEWCGROUP));
    p.enter_helper = enter_helper();
    int nj = 0;
    const struct js *joins = js_get(st, "joins");
    const char **jv = calloc((size_t)(joins ? joins->n : 0) + 1, sizeof *jv);
    JS_EACH(j, joins) jv[nj++] = j->str;
    p.cg_join = jv;
    p.n_cg_join = nj;
    const char *v2 = js_str(st, "v2", "");
    p.cg_into = *v2 ? v2 : NULL;
    p.detached = detach;
    if (terminal) {
        if (!console)
            rt_die("cannot allocate tty if the runtime will detach without setting console socket");
        p.console_fd = rt_connect_console(console);
    }
    rt_apply_rlimits(proc);
    static struct fb_report rep;
    if (fb_spawn(&p, &rep) < 0)
        die_report(&rep);
    if (p.console_fd >= 0)
        close(p.console_fd);
    write_pid_file(pid_file, rep.pid);
    if (detach)
        return 0;
    return wait_exit(rep.pid);
}
