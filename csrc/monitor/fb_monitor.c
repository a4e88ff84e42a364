/* fastbox-monitor: the small per-container process that outlives the CLI (like the
 * containerd shim). It is exec'd by the process that started the container, so the
 * container is its child: it relays the container's stdout/stderr into a JSON-lines log
 * (Docker's json-file format), forwards the signals it gets, records the exit code (and,
 * from the --oom-file it is given, whether the OOM killer struck), removes the container's
 * cgroups, and exits. It links nothing but libc and keeps no heap state
 * beyond two line buffers and an output buffer, so its resident size stays around a
 * megabyte. With --log-max-size the log rotates as Docker's json-file driver does
 * (max-size, max-file), so a container that floods its stdout cannot fill the disk.
 *
 * argv: --pid PID --log FILE --exit FILE [--started FILE] [--stdout FD] [--stderr FD]
 *       [--tty FD] [--log-max-size BYTES --log-max-file N] [--cgroup DIR]... [--oom-file FILE]
 *       [--remove FILE]... [--remove-dir DIR]...
 *       [--lock FILE] [--names DIR --id ID] [--then PATH [--then-arg ARG]...]
 *       [--attach DIR] [--stdin FD] [--client FD]
 * --attach: `fastbox attach` clients connect to DIR/attach.sock (root's 0700 directory):
 * they get the output as it comes, framed as Docker's attach stream (a byte 1 stdout or
 * 2 stderr, three zeros, a big-endian length), and what they send goes to the
 * container's input: the terminal with --tty, else the --stdin pipe (`run -d -i`).
 * With --tty, a client's first frame (stream 1, empty) carries the terminal's master
 * (SCM_RIGHTS), so that it can set the window size. The last frame, before the monitor
 * closes the socket, is stream 4 with the exit code in decimal (a --rm container leaves
 * no record to read it from).
 * --client: a client connected from the start (the foreground `run -it` that started
 * us, so none of the output is missed); the container's output waits for it as a
 * program waits for a slow terminal, where any other client is dropped after a second.
 * --then (a --restart policy): once the exit is recorded, the monitor execs PATH with the
 * --then-args (fastbox.restarter), which decides whether and when to start the
 * container again; it keeps the monitor's pid, so the janitor still sees an owner.
 * --started gets {"pid", "pid_start", "monitor_pid", "monitor_start"} first thing, so the
 * record says running even if the process that started us died before writing it.
 * The --remove lists are for --rm containers: files, then directories, removed at exit,
 * holding the record's --lock (so no writer recreates a file meanwhile), along with every
 * name in --names that still points to --id (a rename may have moved it).
 * The network options release a bridge container's endpoint at exit, as Docker does when
 * a container stops (fastbox/network/endpoints.py made the record): --nft-del
 * SET=HEXKEY[,SET=HEXKEY]... (its port mappings, deleted in one nf_tables batch; given
 * again for each chunk of a long list, as one argument may not pass 128 KiB) and
 * --lease FILE (unlinked under its network's lease lock if it still holds --id: a lease
 * reclaimed and taken by another is theirs), both only while its record --net-record
 * is there (`network disconnect` from the container's first network released them, and
 * they may be another's now), --net-file FILE (its
 * record and /etc files, unlinked), --net-dir DIR (removed), --net-extras DIR (the
 * records of the networks it was connected to: released too). Its veth goes with its
 * network namespace. */
#include <errno.h>
#include <fcntl.h>
#include "../fb_net.h"
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 32
#define LINE_MAX_BYTES 16384 /* longer lines become 16 KiB pieces, as in Docker */
#define READ_BYTES (4 * LINE_MAX_BYTES)
/* One entry at worst: every byte escaped as \u00XX, plus the fields around it. */
#define ENTRY_MAX (LINE_MAX_BYTES * 6 + 128)
#define OUT_BYTES (ENTRY_MAX + READ_BYTES) /* flushes come at least every 64 KiB */

struct stream {
    int fd;
    const char *name;
    char buf[READ_BYTES];
    size_t len;
};

/* The json-file log and its limits. Entries collect in out and are written once per
 * read from the container (one write per 64 KiB at most, not one per line); size counts
 * what the current file holds, written or pending, so no line needs an fstat. */
struct log {
    int fd;
    const char *path;
    long long size, max_size; /* max_size 0: no limit */
    int max_file;
    size_t len;
    char out[OUT_BYTES];
};

struct args {
    pid_t pid;
    const char *log, *exit_file, *started_file, *lock_file, *names_dir, *id, *oom_file;
    int out_fd, err_fd, tty_fd, max_file;
    long long max_size;
    const char *cgroups[MAX_LIST], *remove_files[MAX_LIST], *remove_dirs[MAX_LIST];
    int n_cgroups, n_remove_files, n_remove_dirs;
    const char *nft_del[MAX_LIST], *net_record, *net_files[MAX_LIST], *lease, *net_dir, *net_extras;
    int n_nft_del, n_net_files;
    const char *then[MAX_LIST + 2]; /* PATH, its args, NULL */
    int n_then;
    const char *attach_dir;
    int in_fd, client_fd;
};

static struct log lg = {.fd = -1};

/* RFC 3339 with nanoseconds; the part up to the seconds is formatted once a second. */
static size_t now_rfc3339(char *out)
{
    static time_t cached = (time_t)-1;
    static char secs[32];
    static size_t secs_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        secs_len = strftime(secs, sizeof secs, "%Y-%m-%dT%H:%M:%S.", &tm);
        cached = ts.tv_sec;
    }
    memcpy(out, secs, secs_len);
    long ns = ts.tv_nsec;
    for (int i = 8; i >= 0; i--, ns /= 10)
        out[secs_len + (size_t)i] = (char)('0' + ns % 10);
    out[secs_len + 9] = 'Z';
    return secs_len + 10;
}

/* Length of the UTF-8 sequence that byte c starts: 0 if it cannot start one. */
static size_t utf8_need(unsigned char c)
{
    return c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need = utf8_need(s[0]);
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

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk loses output, never the container */
        p += w;
        n -= (size_t)w;
    }
}

static void log_flush(void)
{
    if (lg.len && lg.fd >= 0)
        write_all(lg.fd, lg.out, lg.len);
    lg.len = 0;
}

static void log_name(char *out, size_t n, int index)
{
    if (index == 0)
        snprintf(out, n, "%s", lg.path);
    else
        snprintf(out, n, "%s.%d", lg.path, index);
}

/* Docker's json-file rotation: LOG.1 becomes LOG.2 and so on, the oldest (LOG.<max-file - 1>)
 * is dropped, LOG becomes LOG.1 and a new LOG starts. With max-file 1 the old LOG is simply
 * replaced. The new file is made first and renamed in last, so LOG always exists, and a
 * reader that holds the old one open (logs -f) can read it to its end. */
static void log_rotate(void)
{
    char tmp[4096], from[4096], to[4096];
    snprintf(tmp, sizeof tmp, "%s.new", lg.path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        /* No new file: empty the old one rather than pass the limit. */
        if (ftruncate(lg.fd, 0) == 0)
            lg.size = 0;
        return;
    }
    /* The oldest goes first, so no rename below replaces a file: ext4 flushes the data of
     * a file renamed over another (auto_da_alloc), which would make every rotation wait. */
    if (lg.max_file >= 2) {
        log_name(to, sizeof to, lg.max_file - 1);
        unlink(to);
    }
    for (int i = lg.max_file - 1; i >= 2; i--) {
        log_name(from, sizeof from, i - 1);
        log_name(to, sizeof to, i);
        rename(from, to);
    }
    if (lg.max_file >= 2) {
        log_name(to, sizeof to, 1);
        if (link(lg.path, to) < 0)
            rename(lg.path, to); /* no hard links here: LOG is missing for a moment */
    }
    rename(tmp, lg.path);
    close(lg.fd);
    lg.fd = fd;
    lg.size = 0;
}

/* --rm: the files rotation made, which the --remove list does not name. */
static void log_remove_rotated(void)
{
    char name[4096];
    for (int i = 1; i < lg.max_file; i++) {
        log_name(name, sizeof name, i);
        unlink(name);
    }
    snprintf(name, sizeof name, "%s.new", lg.path);
    unlink(name);
}

static const char HEX[] = "0123456789abcdef";

/* One JSON line, {"log":"...","stream":"stdout","time":"..."}, escaped as JSON requires and
 * appended to the pending output; bytes that are not UTF-8 become U+FFFD, as in Docker's
 * json-file logs. If the entry would take the file past max-size, what is pending goes to
 * the current file, the files rotate, and the entry starts the new one. */
static void write_entry(const char *stream, const char *data, size_t len)
{
    if (lg.len + ENTRY_MAX > sizeof lg.out)
        log_flush();
    char *out = lg.out + lg.len;
    size_t k = 0;
    memcpy(out, "{\"log\":\"", 8);
    k = 8;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
            out[k++] = (char)ch;
        } else if (ch >= 0x80) {
            size_t u = utf8_len((const unsigned char *)data + i, len - i);
            if (u == 0) {
                memcpy(out + k, "\xef\xbf\xbd", 3);
                k += 3;
            } else {
                memcpy(out + k, data + i, u);
                k += u;
                i += u - 1;
            }
        } else if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\t' || ch == '\r') {
            out[k++] = '\\';
            out[k++] = ch == '\n' ? 'n' : ch == '\t' ? 't' : ch == '\r' ? 'r' : (char)ch;
        } else {
            memcpy(out + k, "\\u00", 4);
            out[k + 4] = HEX[ch >> 4];
            out[k + 5] = HEX[ch & 15];
            k += 6;
        }
    }
    memcpy(out + k, "\",\"stream\":\"", 12);
    k += 12;
    size_t sl = strlen(stream);
    memcpy(out + k, stream, sl);
    k += sl;
    memcpy(out + k, "\",\"time\":\"", 10);
    k += 10;
    k += now_rfc3339(out + k);
    memcpy(out + k, "\"}\n", 3);
    k += 3;
    if (lg.max_size > 0 && lg.size > 0 && lg.size + (long long)k > lg.max_size) {
        size_t pending = lg.len;
        lg.len = 0;
        if (pending && lg.fd >= 0)
            write_all(lg.fd, lg.out, pending);
        if (lg.fd >= 0)
            log_rotate();
        memmove(lg.out, lg.out + pending, k);
    }
    lg.len += k;
    lg.size += (long long)k;
}

/* Where to cut a full line: at most LINE_MAX_BYTES, and not inside a UTF-8 sequence
 * (which would turn both halves into U+FFFD). */
static size_t cut_point(const char *s)
{
    for (size_t back = 1; back <= 3; back++) {
        unsigned char c = (unsigned char)s[LINE_MAX_BYTES - back];
        if ((c & 0xC0) != 0x80) /* the start of the last sequence */
            return utf8_need(c) > back ? LINE_MAX_BYTES - back : LINE_MAX_BYTES;
    }
    return LINE_MAX_BYTES;
}

/* Each line becomes an entry; a line longer than LINE_MAX_BYTES becomes pieces without a
 * newline (Docker's "partial" messages: readers join them). A short unfinished line waits
 * for more, unless final. */
static void flush_lines(struct stream *s, int final)
{
    size_t start = 0;
    while (start < s->len) {
        size_t left = s->len - start;
        const char *nl = memchr(s->buf + start, '\n', left < LINE_MAX_BYTES ? left : LINE_MAX_BYTES);
        size_t n;
        if (nl)
            n = (size_t)(nl - (s->buf + start)) + 1;
        else if (left >= LINE_MAX_BYTES)
            n = cut_point(s->buf + start);
        else if (final)
            n = left;
        else
            break;
        write_entry(s->name, s->buf + start, n);
        start += n;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* Attached clients (`fastbox attach`): at most MAX_CLIENTS; one that cannot take a
 * frame within a second is dropped, so a stalled client cannot stall the log. */
#define MAX_CLIENTS 4
static int clients[MAX_CLIENTS] = {-1, -1, -1, -1};
static int listen_fd = -1, attach_dirfd = -1, term_fd = -1, primary_fd = -1;

static void drop_client(int i)
{
    if (clients[i] == primary_fd)
        primary_fd = -1;
    close(clients[i]);
    clients[i] = -1;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_clients(int stream, const char *data, size_t n)
{
    unsigned char h[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24),
                          (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i] >= 0 && (send_all(clients[i], h, 8) < 0 || send_all(clients[i], data, n) < 0))
            drop_client(i);
}

/* The first frame to a client of a terminal: empty, with the master attached. */
static int send_master(int c)
{
    unsigned char h[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    struct iovec iov = {h, sizeof h};
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (term_fd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &term_fd, sizeof(int));
    }
    return term_fd < 0 || sendmsg(c, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof h ? 0 : -1;
}

static void add_client(int c)
{
    struct timeval t = {1, 0};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof t);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i] < 0) {
            if (send_master(c) < 0)
                break;
            clients[i] = c;
            return;
        }
    close(c);
}

/* The container's output waits while the --client cannot take more (it reads as fast
 * as its terminal shows): 1 if so. */
static int primary_full(void)
{
    struct pollfd q = {primary_fd, POLLOUT, 0};
    return primary_fd >= 0 && poll(&q, 1, 0) == 0;
}

static void send_exit(int code)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d", code);
    send_clients(4, text, (size_t)n);
}

static void attach_listen(const struct args *a)
{
    char path[64];
    if (!a->attach_dir)
        return;
    attach_dirfd = open(a->attach_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (attach_dirfd < 0)
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(path, sizeof path, "/proc/self/fd/%d/attach.sock", attach_dirfd);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    unlinkat(attach_dirfd, "attach.sock", 0);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd >= 0 && (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(listen_fd, 4) < 0)) {
        close(listen_fd);
        listen_fd = -1;
    }
}

static void attach_accept(void)
{
    int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0)
        add_client(c);
}

/* What clients send for the container's input, not yet taken by it. The input is
 * non-blocking: a container that does not read its terminal (or stdin pipe) must not
 * stop this process, which would stop its output, its signals and its exit (the
 * clients then wait on us forever). While some is pending no client is read, so a
 * client waits (as a writer to a full pipe does) and nothing is lost. */
static char in_buf[4096];
static size_t in_len, in_off;

static void flush_input(int in_fd)
{
    while (in_off < in_len) {
        ssize_t w = write(in_fd, in_buf + in_off, in_len - in_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return;
        if (w <= 0)
            break; /* the container's end is gone: its input goes nowhere */
        in_off += (size_t)w;
    }
    in_len = in_off = 0;
}

/* What a client sends goes to the container's input; EOF or an error drops it. */
static void attach_input(int i, int in_fd)
{
    ssize_t n = read(clients[i], in_buf, sizeof in_buf);
    if (n <= 0) {
        drop_client(i);
        return;
    }
    if (in_fd >= 0) {
        in_len = (size_t)n;
        in_off = 0;
        flush_input(in_fd);
    }
}

static void attach_close(void)
{
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i] >= 0)
            drop_client(i);
    if (listen_fd >= 0) {
        close(listen_fd);
        unlinkat(attach_dirfd, "attach.sock", 0);
    }
    if (attach_dirfd >= 0)
        close(attach_dirfd);
}

/* Returns 0 at EOF. */
static int pump(struct stream *s)
{
    ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n > 0)
        send_clients(s->name[3] == 'o' ? 1 : 2, s->buf + s->len, (size_t)n);
    if (n <= 0) {
        flush_lines(s, 1);
        log_flush();
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    s->len += (size_t)n;
    flush_lines(s, 0);
    log_flush(); /* a reader following the log sees each read at once */
    return 1;
}

/* The log exists before the container writes (logs -f waits for it), root's alone; a
 * restarted container's run continues it, so its size counts toward the limit. */
static void log_open(const struct args *a)
{
    struct stat st;
    lg.path = a->log;
    lg.max_size = a->max_size;
    lg.max_file = a->max_file > 0 ? a->max_file : 1;
    lg.fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (lg.fd >= 0 && fstat(lg.fd, &st) == 0) {
        lg.size = (long long)st.st_size;
        if (st.st_mode & 077)
            fchmod(lg.fd, 0600); /* a log from before logs were root's alone */
    }
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

static void write_exit(const char *path, int code, int oom)
{
    char when[48], body[192];
    when[now_rfc3339(when)] = '\0';
    int n = snprintf(body, sizeof body,
                     "{\"exit_code\": %d, \"oom_killed\": %s, \"finished_at\": \"%s\"}\n", code,
                     oom ? "true" : "false", when);
    write_record(path, body, n);
}

/* The "oom_kill N" line of memory.events (v2) or memory.oom_control (v1): 1 if N > 0.
 * Read before the cgroup is removed; a missing file or line reads as 0. */
static int oom_killed(const char *path)
{
    char buf[1024];
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    for (char *line = buf; line;) {
        if (!strncmp(line, "oom_kill ", 9))
            return atoll(line + 9) > 0;
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return 0;
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

/* The starter may write the same record (fastbox.state.store.write_started, through its
 * own temp file) and answer its caller first; the two differ at most in started_at. */
static void write_started(const char *path, pid_t pid)
{
    char body[320], when[48];
    long long ps = start_time(pid), ms = start_time(getpid());
    when[now_rfc3339(when)] = '\0';
    int n = snprintf(body, sizeof body,
                     "{\"pid\": %d, \"pid_start\": %lld, \"monitor_pid\": %d, \"monitor_start\": %lld, "
                     "\"started_at\": \"%s\"}\n",
                     (int)pid, ps, (int)getpid(), ms, when);
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

static int unhex(const char *s, unsigned char *out, int max)
{
    int n = 0;
    for (; s[0] && s[1] && n < max; s += 2) {
        int hi = s[0] <= '9' ? s[0] - '0' : (s[0] | 32) - 'a' + 10;
        int lo = s[1] <= '9' ? s[1] - '0' : (s[1] | 32) - 'a' + 10;
        out[n++] = (unsigned char)(hi << 4 | lo);
    }
    return n;
}

/* The container's network endpoint, from the host's side alone: its port mappings
 * parsed from --nft-del (SET=HEXKEY,...), then the release shared with the engine's
 * teardown (csrc/fb_net_release.c). */
static void release_endpoint(const struct args *a)
{
    int n = 0;
    for (int i = 0; i < a->n_nft_del; i++)
        for (const char *p = a->nft_del[i]; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
            n++;
    unsigned char (*keys)[16] = n ? calloc((size_t)n, sizeof *keys) : NULL;
    char (*sets)[16] = n ? calloc((size_t)n, sizeof *sets) : NULL;
    struct fb_nft_elem *el = n ? calloc((size_t)n, sizeof *el) : NULL;
    int got = 0;
    for (int i = 0; i < a->n_nft_del; i++)
        for (const char *list = a->nft_del[i]; el && keys && sets && *list && got < n;) {
            const char *eq = strchr(list, '='), *end = strchr(list, ',');
            if (!end)
                end = list + strlen(list);
            size_t len = eq && eq < end ? (size_t)(eq - list) : 0;
            if (!len || len >= sizeof sets[0])
                break;
            memcpy(sets[got], list, len);
            char hex[40] = "";
            size_t hl = (size_t)(end - eq - 1) < sizeof hex - 1 ? (size_t)(end - eq - 1) : sizeof hex - 1;
            memcpy(hex, eq + 1, hl);
            el[got] = (struct fb_nft_elem){.set = sets[got], .key = keys[got],
                                           .key_len = unhex(hex, keys[got], 16)};
            got++;
            list = *end ? end + 1 : end;
        }
    struct fb_net_endpoint ep = {.id = a->id, .record = a->net_record, .ports = el, .n_ports = got,
                                 .lease = a->id ? a->lease : NULL, .files = a->net_files,
                                 .n_files = a->n_net_files, .dir = a->net_dir};
    fb_net_release(&ep);
    free(keys);
    free(sets);
    free(el);
}

/* The networks `fastbox network connect` added (records DIR/<id>+<network>, written by
 * fastbox/network/connect.py): each one's lease if it still holds the record's name, its
 * name in the network, its record. Their veths go with the network namespace. */
static void release_extras(const struct args *a)
{
    DIR *d = opendir(a->net_extras);
    if (!d)
        return;
    char net[4096];
    snprintf(net, sizeof net, "%s", a->net_extras);
    char *slash = strrchr(net, '/');
    if (slash)
        *slash = '\0'; /* FASTBOX_RUN/net */
    size_t idlen = strlen(a->id);
    struct dirent *e;
    while (slash && (e = readdir(d))) {
        if (strncmp(e->d_name, a->id, idlen) || e->d_name[idlen] != '+' || strchr(e->d_name, '.'))
            continue;
        char path[8192], text[4096], ip[64] = "", nid[80] = "";
        snprintf(path, sizeof path, "%s/%s", a->net_extras, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
        if (fd >= 0)
            close(fd);
        text[n > 0 ? n : 0] = '\0';
        for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            if (!strncmp(line, "ip ", 3))
                sscanf(line + 3, "%63s", ip);
            else if (!strncmp(line, "network_id ", 11))
                sscanf(line + 11, "%79s", nid);
        }
        if (ip[0] && strlen(nid) >= 12) {
            char lease[8192], held[128] = "";
            snprintf(lease, sizeof lease, "%s/leases/%.12s/%s", net, nid, ip);
            int lf = open(lease, O_RDONLY | O_CLOEXEC);
            if (lf >= 0) {
                ssize_t r = read(lf, held, sizeof held - 1);
                held[r > 0 ? r : 0] = '\0';
                close(lf);
                if (!strcmp(held, e->d_name))
                    unlink(lease);
            }
            snprintf(lease, sizeof lease, "%s/names/%.12s/%s", net, nid, a->id);
            unlink(lease);
        }
        unlink(path);
    }
    closedir(d);
}

static void release_network(const struct args *a)
{
    if (a->net_extras && a->id)
        release_extras(a);
    release_endpoint(a);
}

static void remove_leftovers(const struct args *a)
{
    int lock = a->lock_file ? open(a->lock_file, O_RDWR | O_CLOEXEC) : -1;
    if (lock >= 0)
        flock(lock, LOCK_EX);
    remove_names(a);
    for (int i = 0; i < a->n_remove_files; i++)
        unlink(a->remove_files[i]);
    log_remove_rotated();
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
    a->out_fd = a->err_fd = a->tty_fd = a->in_fd = a->client_fd = -1;
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
        else if (!strcmp(k, "--attach"))
            a->attach_dir = v;
        else if (!strcmp(k, "--stdin"))
            a->in_fd = atoi(v);
        else if (!strcmp(k, "--client"))
            a->client_fd = atoi(v);
        else if (!strcmp(k, "--tty"))
            a->tty_fd = atoi(v);
        else if (!strcmp(k, "--log-max-size"))
            a->max_size = atoll(v);
        else if (!strcmp(k, "--log-max-file"))
            a->max_file = atoi(v);
        else if (!strcmp(k, "--oom-file"))
            a->oom_file = v;
        else if (!strcmp(k, "--cgroup") && a->n_cgroups < MAX_LIST)
            a->cgroups[a->n_cgroups++] = v;
        else if (!strcmp(k, "--nft-del") && a->n_nft_del < MAX_LIST)
            a->nft_del[a->n_nft_del++] = v;
        else if (!strcmp(k, "--net-record"))
            a->net_record = v;
        else if (!strcmp(k, "--net-file") && a->n_net_files < MAX_LIST)
            a->net_files[a->n_net_files++] = v;
        else if (!strcmp(k, "--lease"))
            a->lease = v;
        else if (!strcmp(k, "--net-dir"))
            a->net_dir = v;
        else if (!strcmp(k, "--net-extras"))
            a->net_extras = v;
        else if (!strcmp(k, "--remove") && a->n_remove_files < MAX_LIST)
            a->remove_files[a->n_remove_files++] = v;
        else if (!strcmp(k, "--remove-dir") && a->n_remove_dirs < MAX_LIST)
            a->remove_dirs[a->n_remove_dirs++] = v;
        else if ((!strcmp(k, "--then") ? a->n_then == 0 : !strcmp(k, "--then-arg") && a->n_then > 0)
                 && a->n_then < MAX_LIST)
            a->then[a->n_then++] = v;
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
    log_open(&a);
    static struct stream out = {.name = "stdout"}, err = {.name = "stderr"};
    out.fd = a.tty_fd >= 0 ? a.tty_fd : a.out_fd;
    err.fd = a.tty_fd >= 0 ? -1 : a.err_fd;
    int exited = 0, code = 255;
    term_fd = a.tty_fd;
    attach_listen(&a);
    if (a.client_fd >= 0) {
        fcntl(a.client_fd, F_SETFD, FD_CLOEXEC);
        primary_fd = a.client_fd;
        add_client(a.client_fd);
    }
    int in_fd = a.tty_fd >= 0 ? a.tty_fd : a.in_fd;
    if (in_fd >= 0) /* the master's reads already take EAGAIN (pump) */
        fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
    /* The container may already be gone (a short program): reap before waiting. */
    if (reap(a.pid, &code))
        exited = 1;
    while (!exited || out.fd >= 0 || err.fd >= 0) {
        int held = !exited && primary_full();
        int stuck = in_len > 0 && !exited; /* input the container has not taken yet */
        struct pollfd p[6 + MAX_CLIENTS] = {{sfd, POLLIN, 0}, {held ? -1 : out.fd, POLLIN, 0},
                                            {held ? -1 : err.fd, POLLIN, 0},
                                            {exited ? -1 : listen_fd, POLLIN, 0},
                                            {held ? primary_fd : -1, POLLOUT, 0},
                                            {stuck ? in_fd : -1, POLLOUT, 0}};
        for (int i = 0; i < MAX_CLIENTS; i++) /* a hang-up is still seen while stuck */
            p[6 + i] = (struct pollfd){exited ? -1 : clients[i], stuck ? 0 : POLLIN, 0};
        /* Once the container is gone, drain what is buffered without waiting: a tty
         * master, or a pipe a leftover process still holds, must not keep us here. */
        int timeout = exited ? 0 : -1;
        int n = poll(p, 6 + MAX_CLIENTS, timeout);
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
        if (p[3].revents)
            attach_accept();
        if (p[5].revents)
            flush_input(in_fd);
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i] < 0 || !p[6 + i].revents)
                continue;
            if (!stuck)
                attach_input(i, in_fd);
            else if (p[6 + i].revents & (POLLHUP | POLLERR))
                drop_client(i); /* gone: what it sent last goes nowhere */
        }
    }
    if (a.in_fd >= 0)
        close(a.in_fd);
    if (out.fd >= 0)
        flush_lines(&out, 1);
    if (err.fd >= 0)
        flush_lines(&err, 1);
    log_flush();
    send_exit(code);
    attach_close(); /* an attached client sees EOF, then waits for this process to go */
    int oom = oom_killed(a.oom_file);
    remove_cgroups(&a);
    release_network(&a);
    if (a.n_remove_files || a.n_remove_dirs)
        remove_leftovers(&a);
    else
        write_exit(a.exit_file, code, oom);
    if (a.n_then > 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(a.then[0], (char *const *)a.then);
        return 0; /* no restarter: the container stays exited */
    }
    return 0;
}
