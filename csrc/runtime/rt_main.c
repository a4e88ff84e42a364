/* fastbox-runtime's command line (runc's), its logging, and the verbs that only read or
 * signal: state, kill, delete, ps, pause, resume, list, update, events, features, spec. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "rt.h"

struct rt_global G = {.root = RT_DEFAULT_ROOT};

/* ------------------------------------------------------------------ small helpers */

char *rt_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        _exit(1);
    return d;
}

char *rt_fmt(const char *fmt, ...)
{
    va_list ap;
    char *out;
    va_start(ap, fmt);
    if (vasprintf(&out, fmt, ap) < 0)
        _exit(1);
    va_end(ap);
    return out;
}

void rt_now_rfc3339(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static void log_line(const char *level, const char *msg)
{
    if (!G.log)
        return;
    FILE *f = fopen(G.log, "ae");
    if (!f)
        return;
    char when[64];
    rt_now_rfc3339(when, sizeof when);
    if (G.log_json) {
        fprintf(f, "{\"level\":\"%s\",\"msg\":", level);
        js_write_str(f, msg);
        fprintf(f, ",\"time\":\"%s\"}\n", when);
    } else {
        fprintf(f, "time=\"%s\" level=%s msg=", when, level);
        js_write_str(f, msg);
        fputc('\n', f);
    }
    fclose(f);
}

void rt_die(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_line("error", msg);
    fprintf(stderr, "fastbox-runtime: %s\n", msg);
    exit(1);
}

void rt_warn(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_line("warning", msg);
}

/* "--name", "-name", "--name=value" (value in *inline_val) */
int rt_opt(const char *arg, const char *name, const char **inline_val)
{
    if (arg[0] != '-')
        return 0;
    arg += arg[1] == '-' ? 2 : 1;
    size_t n = strlen(name);
    if (strncmp(arg, name, n))
        return 0;
    if (arg[n] == '=') {
        if (inline_val)
            *inline_val = arg + n + 1;
        return 1;
    }
    if (arg[n])
        return 0;
    if (inline_val)
        *inline_val = NULL;
    return 1;
}

int rt_write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int err = n < 0 ? errno : 0;
    close(fd);
    return -err;
}

char *rt_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
        if (!buf)
            _exit(1);
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

int rt_atomic_write(const char *path, const char *data, size_t len)
{
    char *tmp = rt_fmt("%s.tmp%d", path, getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, data, len);
    int err = n != (ssize_t)len ? (n < 0 ? errno : EIO) : 0;
    close(fd);
    if (!err && rename(tmp, path) < 0)
        err = errno;
    if (err)
        unlink(tmp);
    free(tmp);
    return -err;
}

static const struct { const char *name; int sig; } signals[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL}, {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"IOT", SIGIOT}, {"BUS", SIGBUS}, {"FPE", SIGFPE}, {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},
    {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},
    {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"POLL", SIGPOLL}, {"PWR", SIGPWR}, {"SYS", SIGSYS},
};

int rt_parse_signal(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (*s && !*end)
        return n > 0 && n < 65 ? (int)n : -1;
    if (!strncasecmp(s, "SIG", 3))
        s += 3;
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (!strcasecmp(s, signals[i].name))
            return signals[i].sig;
    if (!strncasecmp(s, "RTMIN", 5) || !strncasecmp(s, "RTMAX", 5)) {
        long off = s[5] ? strtol(s + 5, NULL, 10) : 0;
        return !strncasecmp(s, "RTMIN", 5) ? SIGRTMIN + (int)off : SIGRTMAX + (int)off;
    }
    return -1;
}

/* ------------------------------------------------------------------ simple verbs */

/* the one positional argument (the container id) after the verb's options; options
 * that take a value are listed in with_value */
static const char *one_id(int argc, char **argv, const char *const *with_value)
{
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            for (const char *const *w = with_value; w && *w; w++) {
                const char *v;
                if (rt_opt(argv[i], *w, &v) && !v)
                    i++;
            }
            continue;
        }
        if (!id)
            id = argv[i];
    }
    if (!id)
        rt_die("%s: a container id is required", argv[0]);
    rt_check_id(id);
    return id;
}

static int has_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (rt_opt(argv[i], name, NULL))
            return 1;
    return 0;
}

static int cmd_state(int argc, char **argv)
{
    struct js *st = rt_state_load(one_id(argc, argv, NULL));
    rt_print_state(stdout, st);
    fputc('\n', stdout);
    return 0;
}

static int send_signal(const struct js *st, int sig, int all)
{
    if (all) {
        int n;
        pid_t *pids = rt_cg_pids(st, &n);
        if (sig == SIGKILL || sig == SIGTERM)
            rt_cg_freeze(st, 0); /* a frozen task never dies of it */
        for (int i = 0; i < n; i++)
            kill(pids[i], sig);
        return 0;
    }
    int fd = rt_pidfd(st);
    if (fd < 0 || syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) < 0)
        return -1;
    close(fd);
    return 0;
}

static int cmd_kill(int argc, char **argv)
{
    const char *id = NULL, *sigs = "SIGTERM";
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (rt_opt(argv[i], "all", NULL) || rt_opt(argv[i], "a", NULL))
            all = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            continue;
        else if (!id)
            id = argv[i];
        else
            sigs = argv[i];
    }
    if (!id)
        rt_die("kill: a container id is required");
    rt_check_id(id);
    int sig = rt_parse_signal(sigs);
    if (sig < 0)
        rt_die("invalid signal %s", sigs);
    struct js *st = rt_state_load(id);
    const char *status = rt_status(st, NULL);
    /* --all reaches what is left in the cgroup after the init died (a container without
     * its own pid namespace), as runc's does */
    if (!strcmp(status, "stopped") && !all)
        rt_die("container not running");
    if (send_signal(st, sig, all) < 0)
        rt_die("container not running");
    return 0;
}

static void remove_state(const char *id)
{
    char *dir = rt_state_dir(id);
    char *f = rt_fmt("%s/exec.fifo", dir);
    unlink(f);
    f = rt_fmt("%s/state.json", dir);
    unlink(f);
    if (rmdir(dir) < 0 && errno != ENOENT)
        rt_die("remove %s: %s", dir, strerror(errno));
}

/* SIGKILL everything in the container and wait (bounded) for its init to be gone. */
static void kill_all_and_wait(const struct js *st)
{
    int fd = rt_pidfd(st);
    send_signal(st, SIGKILL, 1);
    if (fd >= 0) {
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 10000);
        close(fd);
    }
}

static int cmd_delete(int argc, char **argv)
{
    const char *id = one_id(argc, argv, NULL);
    int force = has_flag(argc, argv, "force") || has_flag(argc, argv, "f");
    struct js *st = rt_state_try(id);
    if (!st) {
        if (force) { /* a create killed before its first state: only the directory */
            remove_state(id);
            return 0;
        }
        rt_die("container \"%s\" does not exist", id);
    }
    const char *status = rt_status(st, NULL);
    if (strcmp(status, "stopped") && strcmp(status, "created") && !force)
        rt_die("cannot delete container %s that is not stopped: %s", id, status);
    if (strcmp(status, "stopped"))
        kill_all_and_wait(st);
    rt_cg_remove(st);
    rt_run_hooks(js_get(st, "hooks"), "poststop", st, "stopped");
    remove_state(id);
    return 0;
}

static int cmd_ps(int argc, char **argv)
{
    const char *fmt = "table";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (rt_opt(argv[i], "format", &v) || rt_opt(argv[i], "f", &v))
            fmt = v ? v : (i + 1 < argc ? argv[++i] : "table");
    }
    const char *const wv[] = {"format", "f", NULL};
    struct js *st = rt_state_load(one_id(argc, argv, wv));
    int n;
    pid_t *pids = rt_cg_pids(st, &n);
    if (!strcmp(fmt, "json")) {
        putchar('[');
        for (int i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", pids[i]);
        puts("]");
        return 0;
    }
    puts("PID");
    for (int i = 0; i < n; i++)
        printf("%d\n", pids[i]);
    return 0;
}

static int cmd_pause(int argc, char **argv, int frozen)
{
    struct js *st = rt_state_load(one_id(argc, argv, NULL));
    const char *status = rt_status(st, NULL);
    if (frozen && strcmp(status, "running"))
        rt_die("container not running");
    if (!frozen && strcmp(status, "paused"))
        rt_die("container not paused");
    if (rt_cg_freeze(st, frozen) < 0)
        rt_die("%s: %s", frozen ? "pause" : "resume", strerror(errno));
    return 0;
}

static int cmd_list(int argc, char **argv)
{
    int json = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (rt_opt(argv[i], "format", &v) || rt_opt(argv[i], "f", &v))
            json = !strcmp(v ? v : (i + 1 < argc ? argv[++i] : ""), "json");
        if (rt_opt(argv[i], "quiet", NULL) || rt_opt(argv[i], "q", NULL))
            quiet = 1;
    }
    DIR *d = opendir(G.root);
    if (json)
        putchar('[');
    else if (!quiet)
        printf("%-20s %-8s %-10s %-40s %-30s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER");
    int first = 1;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        struct js *st = rt_state_try(e->d_name);
        if (!st)
            continue;
        pid_t pid;
        const char *status = rt_status(st, &pid);
        if (json) {
            printf("%s{\"ociVersion\":\"%s\",\"id\":", first ? "" : ",", RT_OCI_VERSION);
            js_write_str(stdout, e->d_name);
            printf(",\"pid\":%d,\"status\":\"%s\",\"bundle\":", pid, status);
            js_write_str(stdout, js_str(st, "bundle", ""));
            fputs(",\"rootfs\":", stdout);
            js_write_str(stdout, js_str(st, "rootfs", ""));
            fputs(",\"created\":", stdout);
            js_write_str(stdout, js_str(st, "created", ""));
            fputs(",\"owner\":\"root\"}", stdout);
        } else if (quiet) {
            puts(e->d_name);
        } else {
            printf("%-20s %-8d %-10s %-40s %-30s root\n", e->d_name, pid, status,
                   js_str(st, "bundle", ""), js_str(st, "created", ""));
        }
        first = 0;
    }
    if (json)
        puts("]");
    if (d)
        closedir(d);
    return 0;
}

static int cmd_update(int argc, char **argv)
{
    const char *res_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (rt_opt(argv[i], "resources", &v) || rt_opt(argv[i], "r", &v))
            res_path = v ? v : (i + 1 < argc ? argv[++i] : NULL);
        else if (argv[i][0] == '-' && argv[i][1])
            rt_die("update: option %s is not supported; use --resources", argv[i]);
    }
    const char *const wv[] = {"resources", "r", NULL};
    const char *id = one_id(argc, argv, wv);
    struct js *st = rt_state_load(id);
    if (!res_path)
        rt_die("update: --resources is required");
    char err[256];
    struct js *res;
    if (!strcmp(res_path, "-")) {
        char *text = rt_read_file("/dev/stdin");
        res = text ? js_parse(text, err, sizeof err) : NULL;
        if (!text)
            snprintf(err, sizeof err, "cannot read stdin");
    } else {
        res = js_parse_file(res_path, err, sizeof err);
    }
    if (!res)
        rt_die("update: resources: %s", err);
    struct rt_cg cg;
    memset(&cg, 0, sizeof cg);
    int i = 0;
    JS_EACH(d, js_get(st, "cgroups")) if (i < RT_MAX_CG) cg.dirs[i++] = (char *)d->str;
    cg.n = i;
    const char *v2 = js_str(st, "v2", "");
    cg.v2 = *v2 ? (char *)v2 : NULL;
    rt_cg_resources(&cg, res);
    rt_cg_apply_writes(&cg);
    return 0;
}

static long long read_num(const char *path)
{
    char *s = rt_read_file(path);
    long long v = s ? strtoll(s, NULL, 10) : 0;
    free(s);
    return v;
}

static const char *dir_of(const struct js *st, const char *ctrl)
{
    JS_EACH(d, js_get(st, "cgroups")) {
        char *file = rt_fmt("%s/%s", d->str, ctrl);
        int ok = access(file, F_OK) == 0;
        free(file);
        if (ok)
            return d->str;
    }
    return NULL;
}

static int cmd_events(int argc, char **argv)
{
    const char *const wv[] = {"interval", NULL};
    struct js *st = rt_state_load(one_id(argc, argv, wv));
    if (!has_flag(argc, argv, "stats"))
        rt_die("events: only --stats is supported");
    const char *v2 = js_str(st, "v2", "");
    const char *mem = *v2 ? v2 : dir_of(st, "memory.usage_in_bytes");
    const char *cpu = *v2 ? v2 : dir_of(st, "cpuacct.usage");
    const char *pids = *v2 ? v2 : dir_of(st, "pids.current");
    long long cpu_total = 0;
    if (*v2) {
        char *s = rt_read_file(rt_fmt("%s/cpu.stat", v2));
        char *u = s ? strstr(s, "usage_usec ") : NULL;
        cpu_total = u ? strtoll(u + 11, NULL, 10) * 1000 : 0;
    } else if (cpu) {
        cpu_total = read_num(rt_fmt("%s/cpuacct.usage", cpu));
    }
    long long usage = mem ? read_num(rt_fmt(*v2 ? "%s/memory.current" : "%s/memory.usage_in_bytes", mem)) : 0;
    long long limit = mem ? read_num(rt_fmt(*v2 ? "%s/memory.max" : "%s/memory.limit_in_bytes", mem)) : 0;
    long long npids = pids ? read_num(rt_fmt("%s/pids.current", pids)) : 0;
    printf("{\"type\":\"stats\",\"id\":");
    js_write_str(stdout, js_str(st, "id", ""));
    printf(",\"data\":{\"cpu\":{\"usage\":{\"total\":%lld}},\"memory\":{\"usage\":{\"usage\":%lld,"
           "\"limit\":%lld}},\"pids\":{\"current\":%lld}}}\n", cpu_total, usage, limit, npids);
    return 0;
}

static int cmd_features(void)
{
    fputs("{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"" RT_OCI_VERSION "\","
          "\"hooks\":[\"prestart\",\"createRuntime\",\"poststart\",\"poststop\"],"
          "\"mountOptions\":[\"ro\",\"rro\",\"rw\",\"bind\",\"rbind\",\"private\",\"rprivate\","
          "\"nosuid\",\"nodev\",\"noexec\",\"strictatime\",\"size\",\"mode\"],"
          "\"linux\":{\"namespaces\":[\"cgroup\",\"ipc\",\"mount\",\"network\",\"pid\",\"uts\"],"
          "\"capabilities\":[", stdout);
    static const char *const caps[] = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
        "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"};
    for (unsigned i = 0; i < sizeof caps / sizeof caps[0]; i++)
        printf("%s\"%s\"", i ? "," : "", caps[i]);
    printf("],\"cgroup\":{\"v1\":true,\"v2\":true,\"systemd\":false,\"systemdUser\":false},"
           "\"seccomp\":{\"enabled\":true,\"actions\":[\"SCMP_ACT_ALLOW\",\"SCMP_ACT_ERRNO\","
           "\"SCMP_ACT_KILL\",\"SCMP_ACT_KILL_PROCESS\",\"SCMP_ACT_KILL_THREAD\",\"SCMP_ACT_TRAP\","
           "\"SCMP_ACT_LOG\"],\"operators\":[\"SCMP_CMP_NE\",\"SCMP_CMP_LT\",\"SCMP_CMP_LE\","
           "\"SCMP_CMP_EQ\",\"SCMP_CMP_GE\",\"SCMP_CMP_GT\",\"SCMP_CMP_MASKED_EQ\"]},"
           "\"apparmor\":{\"enabled\":false},\"selinux\":{\"enabled\":false}},"
           "\"annotations\":{\"org.opencontainers.runc.version\":\"fastbox-runtime " RT_VERSION "\"}}\n");
    return 0;
}

static int cmd_spec(int argc, char **argv)
{
    const char *bundle = ".";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (rt_opt(argv[i], "bundle", &v) || rt_opt(argv[i], "b", &v))
            bundle = v ? v : (i + 1 < argc ? argv[++i] : ".");
    }
    char *path = rt_fmt("%s/config.json", bundle);
    if (access(path, F_OK) == 0)
        rt_die("File %s exists. Remove it first", path);
    static const char spec[] =
        "{\n\t\"ociVersion\": \"" RT_OCI_VERSION "\",\n"
        "\t\"process\": {\n\t\t\"terminal\": true,\n\t\t\"user\": {\"uid\": 0, \"gid\": 0},\n"
        "\t\t\"args\": [\"sh\"],\n"
        "\t\t\"env\": [\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", \"TERM=xterm\"],\n"
        "\t\t\"cwd\": \"/\",\n"
        "\t\t\"capabilities\": {\n"
        "\t\t\t\"bounding\": [\"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\"],\n"
        "\t\t\t\"effective\": [\"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\"],\n"
        "\t\t\t\"permitted\": [\"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\"]\n\t\t},\n"
        "\t\t\"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"hard\": 1024, \"soft\": 1024}],\n"
        "\t\t\"noNewPrivileges\": true\n\t},\n"
        "\t\"root\": {\"path\": \"rootfs\", \"readonly\": true},\n"
        "\t\"hostname\": \"fastbox\",\n"
        "\t\"mounts\": [\n"
        "\t\t{\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"},\n"
        "\t\t{\"destination\": \"/dev\", \"type\": \"tmpfs\", \"source\": \"tmpfs\", \"options\": [\"nosuid\", \"strictatime\", \"mode=755\", \"size=65536k\"]},\n"
        "\t\t{\"destination\": \"/dev/pts\", \"type\": \"devpts\", \"source\": \"devpts\", \"options\": [\"nosuid\", \"noexec\", \"newinstance\", \"ptmxmode=0666\", \"mode=0620\", \"gid=5\"]},\n"
        "\t\t{\"destination\": \"/dev/shm\", \"type\": \"tmpfs\", \"source\": \"shm\", \"options\": [\"nosuid\", \"noexec\", \"nodev\", \"mode=1777\", \"size=65536k\"]},\n"
        "\t\t{\"destination\": \"/dev/mqueue\", \"type\": \"mqueue\", \"source\": \"mqueue\", \"options\": [\"nosuid\", \"noexec\", \"nodev\"]},\n"
        "\t\t{\"destination\": \"/sys\", \"type\": \"sysfs\", \"source\": \"sysfs\", \"options\": [\"nosuid\", \"noexec\", \"nodev\", \"ro\"]},\n"
        "\t\t{\"destination\": \"/sys/fs/cgroup\", \"type\": \"cgroup\", \"source\": \"cgroup\", \"options\": [\"nosuid\", \"noexec\", \"nodev\", \"relatime\", \"ro\"]}\n"
        "\t],\n"
        "\t\"linux\": {\n"
        "\t\t\"resources\": {\"devices\": [{\"allow\": false, \"access\": \"rwm\"}]},\n"
        "\t\t\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"network\"}, {\"type\": \"ipc\"}, {\"type\": \"uts\"}, {\"type\": \"mount\"}, {\"type\": \"cgroup\"}],\n"
        "\t\t\"maskedPaths\": [\"/proc/acpi\", \"/proc/asound\", \"/proc/kcore\", \"/proc/keys\", \"/proc/latency_stats\", \"/proc/timer_list\", \"/proc/timer_stats\", \"/proc/sched_debug\", \"/sys/firmware\", \"/proc/scsi\"],\n"
        "\t\t\"readonlyPaths\": [\"/proc/bus\", \"/proc/fs\", \"/proc/irq\", \"/proc/sys\", \"/proc/sysrq-trigger\"]\n"
        "\t}\n}\n";
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, spec, sizeof spec - 1) != (ssize_t)(sizeof spec - 1))
        rt_die("write %s: %s", path, strerror(errno));
    close(fd);
    return 0;
}

static void usage(void)
{
    puts("usage: fastbox-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...\n"
         "commands: create start run state kill delete exec ps pause resume update list events features spec\n"
         "An OCI runtime with runc's command line, built on the fastbox core.");
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *v;
        if (rt_opt(argv[i], "root", &v))
            G.root = v ? v : (i + 1 < argc ? argv[++i] : G.root);
        else if (rt_opt(argv[i], "log", &v))
            G.log = v ? v : (i + 1 < argc ? argv[++i] : NULL);
        else if (rt_opt(argv[i], "log-format", &v))
            G.log_json = !strcmp(v ? v : (i + 1 < argc ? argv[++i] : ""), "json");
        else if (rt_opt(argv[i], "systemd-cgroup", NULL))
            G.systemd_cgroup = 1;
        else if (rt_opt(argv[i], "version", NULL) || rt_opt(argv[i], "v", NULL)) {
            /* runc's three lines, which containerd and podman parse */
            printf("runc version 1.1.0+fastbox-runtime." RT_VERSION "\ncommit: fastbox-runtime-" RT_VERSION
                   "\nspec: " RT_OCI_VERSION "\n");
            return 0;
        } else if (rt_opt(argv[i], "help", NULL) || rt_opt(argv[i], "h", NULL)) {
            usage();
            return 0;
        } else if (rt_opt(argv[i], "debug", NULL) || rt_opt(argv[i], "rootless", &v)) {
            /* --debug adds nothing; --rootless=auto|false: we run as root only */
        } else if (rt_opt(argv[i], "criu", &v)) {
            if (!v)
                i++;
        } else {
            rt_die("unknown global option %s", argv[i]);
        }
    }
    if (i >= argc) {
        usage();
        return 1;
    }
    char **av = argv + i;
    int ac = argc - i;
    const char *verb = av[0];
    if (!strcmp(verb, "create")) return rt_create(ac, av, 0);
    if (!strcmp(verb, "run")) return rt_create(ac, av, 1);
    if (!strcmp(verb, "start")) return rt_start(ac, av);
    if (!strcmp(verb, "exec")) return rt_exec(ac, av);
    if (!strcmp(verb, "state")) return cmd_state(ac, av);
    if (!strcmp(verb, "kill")) return cmd_kill(ac, av);
    if (!strcmp(verb, "delete")) return cmd_delete(ac, av);
    if (!strcmp(verb, "ps")) return cmd_ps(ac, av);
    if (!strcmp(verb, "pause")) return cmd_pause(ac, av, 1);
    if (!strcmp(verb, "resume")) return cmd_pause(ac, av, 0);
    if (!strcmp(verb, "list")) return cmd_list(ac, av);
    if (!strcmp(verb, "update")) return cmd_update(ac, av);
    if (!strcmp(verb, "events")) return cmd_events(ac, av);
    if (!strcmp(verb, "features")) return cmd_features();
    if (!strcmp(verb, "spec")) return cmd_spec(ac, av);
    if (!strcmp(verb, "help")) { usage(); return 0; }
    rt_die("unknown command %s", verb);
}
