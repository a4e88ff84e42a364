/* fastbox-monitor: the small per-container process that outlives the CLI (like the
 * containerd shim). It is exec'd by the process that started the container, so the
 * container is its child: it relays the container's stdout/stderr into a JSON-lines log
 * (Docker's json-file format), forwards the signals it gets, records the exit code, removes
 * the container's cgroups, and exits. It links nothing but libc and keeps no heap state
 * beyond two line buffers, so its resident size stays around a megabyte.
 *
 * argv: --pid PID --log FILE --exit FILE [--started FILE] [--stdout FD] [--stderr FD]
 *       [--tty FD] [--cgroup DIR]... [--remove FILE]... [--remove-dir DIR]...
 *       [--lock FILE] [--names DIR --id ID]
 * --started gets {"pid", "pid_start", "monitor_pid", "monitor_start"} first thing, so the
 * record says running even if the process that started us died before writing it.
 * The --remove lists are for --rm containers: files, then directories, removed at exit,
 * holding the record's --lock (so no writer recreates a file meanwhile), along with every
 * name in --names that still points to --id (a rename may have moved it). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 32
#define LINE_MAX_BYTES 16384 /* Docker splits longer lines too */

struct stream {
    int fd;
    const char *name;
    char buf[LINE_MAX_BYTES];
    size_t len;
};

struct args {
    pid_t pid;
    const char *log, *exit_file, *started_file, *lock_file, *names_dir, *id;
    int out_fd, err_fd, tty_fd;
    const char *cgroups[MAX_LIST], *remove_files[MAX_LIST], *remove_dirs[MAX_LIST];
    int n_cgroups, n_remove_files, n_remove_dirs;
};

static int log_fd = -1;

static void now_rfc3339(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%09ldZ", ts.tv_nsec);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
                : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || need > n || (need == 2 && s[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (need == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (need == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || s[0] > 0xF4 || (s[0] == 0xF4 && s[1] >= 0x90)))
        return 0;
    return need;
}

/* One JSON line: {"log":"...","stream":"stdout","time":"..."}, escaped as JSON requires;
 * bytes that are not UTF-8 become U+FFFD, as in Docker's json-file logs. */
static void write_entry(const char *stream, const char *data, size_t len)
{
    static char out[LINE_MAX_BYTES * 6 + 128];
    char when[48];
    size_t k = 0;
    now_rfc3339(when, sizeof when);
    k += (size_t)snprintf(out, sizeof out, "{\"log\":\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch >= 0x80) {
            size_t u = utf8_len((const unsigned char *)data + i, len - i);
            if (u == 0) {
                memcpy(out + k, "\xef\xbf\xbd", 3);
                k += 3;
            } else {
                memcpy(out + k, data + i, u);
                k += u;
                i += u - 1;
            }
        } else if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (ch < 0x20) {
            k += (size_t)snprintf(out + k, sizeof out - k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    k += (size_t)snprintf(out + k, sizeof out - k, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n", stream, when);
    for (size_t off = 0; off < k;) {
        ssize_t w = write(log_fd, out + off, k - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void flush_lines(struct stream *s, int final)
{
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            write_entry(s->name, s->buf + start, i + 1 - start);
            start = i + 1;
        }
    }
    if (start < s->len && (final || s->len == sizeof s->buf)) {
        write_entry(s->name, s->buf + start, s->len - start);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* Returns 0 at EOF. */
static int pump(struct stream *s)
{
    ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0) {
        flush_lines(s, 1);
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    s->len += (size_t)n;
    flush_lines(s, 0);
    return 1;
}

static int exit_code_of(int status)
{
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Readers see the whole record or none: write a temp file, rename it in. */
static void write_record(const char *path, const char *body, int n)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    int ok = write(fd, body, (size_t)n) == n;
    close(fd);
    if (ok)
        rename(tmp, path);
}

static void write_exit(const char *path, int code)
{
    char when[48], body[160];
    now_rfc3339(when, sizeof when);
    int n = snprintf(body, sizeof body, "{\"exit_code\": %d, \"finished_at\": \"%s\"}\n", code, when);
    write_record(path, body, n);
}

/* Field 22 of /proc/<pid>/stat: with the pid, it names one process for good. */
static long long start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? atoll(p + 1) : -1;
}

static void write_started(const char *path, pid_t pid)
{
    char body[256];
    long long ps = start_time(pid), ms = start_time(getpid());
    int n = snprintf(body, sizeof body,
                     "{\"pid\": %d, \"pid_start\": %lld, \"monitor_pid\": %d, \"monitor_start\": %lld}\n",
                     (int)pid, ps, (int)getpid(), ms);
    write_record(path, body, n);
}

static void remove_cgroups(const struct args *a)
{
    for (int i = 0; i < a->n_cgroups; i++)
        for (int tries = 0; tries < 200 && rmdir(a->cgroups[i]) < 0 && errno == EBUSY; tries++)
            usleep(5000);
}

/* Names are files holding "<id> <pid>": drop those that still name this container. */
static void remove_names(const struct args *a)
{
    DIR *d = a->names_dir && a->id ? opendir(a->names_dir) : NULL;
    struct dirent *e;
    size_t idlen = a->id ? strlen(a->id) : 0;
    while (d && (e = readdir(d)) != NULL) {
        char buf[160];
        if (e->d_name[0] == '.')
            continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
            close(fd);
        if (n >= (ssize_t)idlen && !strncmp(buf, a->id, idlen) && (n == (ssize_t)idlen || buf[idlen] == ' '))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
}

static void remove_leftovers(const struct args *a)
{
    int lock = a->lock_file ? open(a->lock_file, O_RDWR | O_CLOEXEC) : -1;
    if (lock >= 0)
        flock(lock, LOCK_EX);
    remove_names(a);
    for (int i = 0; i < a->n_remove_files; i++)
        unlink(a->remove_files[i]);
    if (a->lock_file)
        unlink(a->lock_file);
    for (int i = 0; i < a->n_remove_dirs; i++)
        rmdir(a->remove_dirs[i]);
    if (lock >= 0)
        close(lock);
}

static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->out_fd = a->err_fd = a->tty_fd = -1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--pid"))
            a->pid = atoi(v);
        else if (!strcmp(k, "--log"))
            a->log = v;
        else if (!strcmp(k, "--exit"))
            a->exit_file = v;
        else if (!strcmp(k, "--started"))
            a->started_file = v;
        else if (!strcmp(k, "--lock"))
            a->lock_file = v;
        else if (!strcmp(k, "--names"))
            a->names_dir = v;
        else if (!strcmp(k, "--id"))
            a->id = v;
        else if (!strcmp(k, "--stdout"))
            a->out_fd = atoi(v);
        else if (!strcmp(k, "--stderr"))
            a->err_fd = atoi(v);
        else if (!strcmp(k, "--tty"))
            a->tty_fd = atoi(v);
        else if (!strcmp(k, "--cgroup") && a->n_cgroups < MAX_LIST)
            a->cgroups[a->n_cgroups++] = v;
        else if (!strcmp(k, "--remove") && a->n_remove_files < MAX_LIST)
            a->remove_files[a->n_remove_files++] = v;
        else if (!strcmp(k, "--remove-dir") && a->n_remove_dirs < MAX_LIST)
            a->remove_dirs[a->n_remove_dirs++] = v;
        else
            return -1;
    }
    return a->pid > 0 && a->log && a->exit_file ? 0 : -1;
}

/* Signals a user sends the monitor go to the container, as the shim does. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

static int open_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (unsigned i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&set, forwarded[i]);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Reap every child (orphans reparented to us as subreaper included); returns 1 once
 * the container itself has exited, with its code in *code. */
static int reap(pid_t pid, int *code)
{
    int status, done = 0;
    pid_t p;
    while ((p = waitpid(-1, &status, WNOHANG)) > 0)
        if (p == pid) {
            *code = exit_code_of(status);
            done = 1;
        }
    return done;
}

static void handle_signal(int sfd, pid_t pid, int *exited, int *code)
{
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si)
        return;
    if (si.ssi_signo == SIGCHLD) {
        if (reap(pid, code))
            *exited = 1;
    } else if (!*exited) {
        kill(pid, (int)si.ssi_signo);
    }
}

int main(int argc, char **argv)
{
    struct args a;
    if (parse_args(argc, argv, &a) < 0) {
        fprintf(stderr, "usage: fastbox-monitor --pid PID --log FILE --exit FILE [...]\n");
        return 2;
    }
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_NAME, "fastbox-monitor");
    int sfd = open_signalfd();
    if (a.started_file)
        write_started(a.started_file, a.pid);
    log_fd = open(a.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    static struct stream out = {.name = "stdout"}, err = {.name = "stderr"};
    out.fd = a.tty_fd >= 0 ? a.tty_fd : a.out_fd;
    err.fd = a.tty_fd >= 0 ? -1 : a.err_fd;
    int exited = 0, code = 255;
    /* The container may already be gone (a short program): reap before waiting. */
    if (reap(a.pid, &code))
        exited = 1;
    while (!exited || out.fd >= 0 || err.fd >= 0) {
        struct pollfd p[3] = {{sfd, POLLIN, 0}, {out.fd, POLLIN, 0}, {err.fd, POLLIN, 0}};
        /* Once the container is gone, drain what is buffered without waiting: a tty
         * master, or a pipe a leftover process still holds, must not keep us here. */
        int timeout = exited ? 0 : -1;
        int n = poll(p, 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (n == 0 && exited)
            break;
        if (p[0].revents)
            handle_signal(sfd, a.pid, &exited, &code);
        if (out.fd >= 0 && p[1].revents)
            pump(&out);
        if (err.fd >= 0 && p[2].revents)
            pump(&err);
    }
    if (out.fd >= 0)
        flush_lines(&out, 1);
    if (err.fd >= 0)
        flush_lines(&err, 1);
    remove_cgroups(&a);
    if (a.n_remove_files || a.n_remove_dirs)
        remove_leftovers(&a);
    else
        write_exit(a.exit_file, code);
    return 0;
}
