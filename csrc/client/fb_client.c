/* fastbox: the command users type. Python takes ~15 ms just to start on a small VM, more
 * than a whole container start, so this C client hands the command to the warm engine
 * (`fastbox engine start`, fastbox/engine/server.py) when one listens on
 * $FASTBOX_RUN/engine.sock, and execs the Python CLI (fastbox-py, installed beside this
 * binary) otherwise: no engine, an engine that declines, or `fastbox engine ...` itself.
 *
 * The request is one SOCK_SEQPACKET message, "FBCLI1\0" cwd\0 argc\0 argv...\0 envc\0
 * env...\0, carrying our fds 0-2 (SCM_RIGHTS): the container gets our terminal or pipes
 * themselves. Replies: "F" (run the Python CLI instead; the engine has done nothing),
 * "X<code>" (the command's exit code: a container's own, or Docker's 125/126/127; the
 * engine has already written any error to our stderr), or "S<signo>" (the command died
 * of that signal: so do we). Signals we get go to the command as "K<signo>", as
 * `fastbox run` (and `docker run`) forward them to the container; ones we were told to
 * ignore (nohup) stay ignored. If we die, the engine kills the container, or the command
 * that runs for us.
 *
 * Nothing goes out before we know who listens (SO_PEERCRED): only an engine run by root
 * or by ourselves gets our fds, argv and environment. A socket served by anyone else
 * means someone else can write in FASTBOX_RUN, the directory the Python CLI would use
 * too; so we stop with one line and 125 (as ssh refuses files others could change),
 * rather than fall back quietly and hide it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static int engine = -1;

/* The path of fastbox-py, installed beside this binary, into path. */
static int python_cli_path(char *path, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", path, size - sizeof "/fastbox-py");
    char *slash = n > 0 ? memrchr(path, '/', (size_t)n) : NULL;
    if (!slash)
        return -1;
    strcpy(slash, "/fastbox-py");
    return 0;
}

static void run_python_cli(char **argv)
{
    char path[PATH_MAX];
    if (python_cli_path(path, sizeof path) < 0) {
        fprintf(stderr, "fastbox: cannot find the fastbox-py command beside this one\n");
        exit(125);
    }
    execv(path, argv);
    fprintf(stderr, "fastbox: cannot run %s: %s\n", path, strerror(errno));
    exit(125);
}

/* Exits unless the process that listens on fd is root or runs as our own uid. */
static void check_listener(int fd, const char *path)
{
    struct ucred peer;
    socklen_t len = sizeof peer;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0) {
        fprintf(stderr, "fastbox: cannot tell who serves %s: %s\n", path, strerror(errno));
        exit(125);
    }
    if (peer.uid != 0 && peer.uid != geteuid()) {
        fprintf(stderr, "fastbox: %s is served by uid %u, neither root nor you: not using it\n",
                path, (unsigned)peer.uid);
        exit(125);
    }
}

/* FASTBOX_NO_ENGINE set to anything but "" or "0": never use or start an engine. */
static int engine_refused(void)
{
    const char *no = getenv("FASTBOX_NO_ENGINE");
    return no && *no && strcmp(no, "0") != 0;
}

/* Starts an engine for later commands, in the background, and returns at once: this
 * command runs in the Python CLI as if nothing happened, whatever becomes of the engine.
 * The engine is a grandchild in a session of its own (no terminal, none of our fds: a
 * `$(fastbox ps)` must not wait for it), its output appended to engine.log, and it
 * exits by itself once idle (fastbox/engine/server.py). Not after `fastbox engine stop`
 * (it leaves engine.off), nor for a FASTBOX_RUN we cannot write. */
static void start_engine(const char *run)
{
    char path[PATH_MAX], marker[PATH_MAX], log[PATH_MAX];
    struct stat st;
    if (snprintf(marker, sizeof marker, "%s/engine.off", run) >= (int)sizeof marker ||
        snprintf(log, sizeof log, "%s/engine.log", run) >= (int)sizeof log ||
        python_cli_path(path, sizeof path) < 0)
        return;
    if (access(marker, F_OK) == 0 || access(path, X_OK) < 0)
        return;
    if (mkdir(run, 0700) < 0 && errno != EEXIST)
        return;
    /* Ours, or root's, and nobody else may write in it: else it is not our engine's. */
    if (lstat(run, &st) < 0 || !S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & 022))
        return;
    pid_t child = fork();
    if (child < 0)
        return;
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (setsid() < 0 || fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (null < 0 || out < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 ||
            chdir("/") < 0)
            _exit(0);
        closefrom(3);
        char *args[] = {path, "engine", "serve", "--auto", NULL};
        execv(path, args);
        _exit(0);
    }
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int connect_engine(void)
{
    const char *run = getenv("FASTBOX_RUN");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!run)
        run = "/run/fastbox";
    if (!*run || engine_refused())
        return -1;
    if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/engine.sock", run) >=
        sizeof addr.sun_path)
        return -1;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED)
            start_engine(run);
        close(fd);
        return -1;
    }
    check_listener(fd, addr.sun_path);
    return fd;
}

/* Appends s and its NUL; returns the new end. */
static char *put(char *p, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(p, s, n);
    return p + n;
}

static char *request(int argc, char **argv, size_t *len)
{
    char cwd[PATH_MAX], num[24];
    size_t size = sizeof "FBCLI1" + 2 * sizeof num + sizeof cwd;
    int envc = 0;
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = '\0'; /* a deleted cwd: relative --env-file paths will fail */
    for (int i = 0; i < argc; i++)
        size += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++, envc++)
        size += strlen(*e) + 1;
    char *buf = malloc(size), *p = buf;
    if (!buf)
        return NULL;
    p = put(p, "FBCLI1");
    p = put(p, cwd);
    snprintf(num, sizeof num, "%d", argc);
    p = put(p, num);
    for (int i = 0; i < argc; i++)
        p = put(p, argv[i]);
    snprintf(num, sizeof num, "%d", envc);
    p = put(p, num);
    for (char **e = environ; *e; e++)
        p = put(p, *e);
    *len = (size_t)(p - buf);
    return buf;
}

/* Sends the request with our fds 0-2. */
static int send_request(int argc, char **argv)
{
    size_t len;
    char *buf = request(argc, argv, &len);
    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)] = {0};
    if (!buf)
        return -1;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t sent = sendmsg(engine, &msg, MSG_NOSIGNAL); /* EMSGSIZE: a huge environment */
    free(buf);
    return sent == (ssize_t)len ? 0 : -1;
}

static void forward(int sig)
{
    char msg[8] = "K";
    int n = 1, saved = errno;
    if (sig >= 10)
        msg[n++] = (char)('0' + sig / 10);
    msg[n++] = (char)('0' + sig % 10);
    send(engine, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    errno = saved;
}

static struct sigaction saved[NFORWARDED];

static void forward_signals(void)
{
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFORWARDED; i++) {
        sigaction(forwarded[i], &sa, &saved[i]);
        if (saved[i].sa_handler == SIG_IGN)
            sigaction(forwarded[i], &saved[i], NULL);
    }
}

/* The command died of sig: the shell must see us die of it too. */
static void die_of(int sig)
{
    sigset_t set;
    signal(sig, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    exit(128 + sig);
}

/* The Python CLI must inherit what we were given (say, SIGHUP ignored under nohup). */
static void restore_signals(void)
{
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &saved[i], NULL);
}

/* Waits for the engine's answer; exits with the container's code, or returns if the
 * Python CLI must run the command instead. */
static void await_reply(void)
{
    char reply[32];
    for (;;) {
        ssize_t n = recv(engine, reply, sizeof reply - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "fastbox: lost the connection to the engine%s%s\n",
                    n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            exit(125);
        }
        reply[n] = '\0';
        if (reply[0] == 'F')
            return;
        if (reply[0] == 'X')
            exit(atoi(reply + 1));
        if (reply[0] == 'S')
            die_of(atoi(reply + 1));
    }
}

/* A closed fd 0, 1 or 2 becomes /dev/null, before any fd of ours could take its number
 * (and be handed to a container as its stdio). */
static void open_stdio(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            exit(125);
}

int main(int argc, char **argv)
{
    open_stdio();
    if (argc < 2 || strcmp(argv[1], "engine") == 0 || (engine = connect_engine()) < 0)
        run_python_cli(argv);
    /* Handlers go in with the signals blocked until the request is out, so a "K" can
     * never reach the engine before the request it belongs to. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    forward_signals();
    int sent = send_request(argc, argv);
    if (sent == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        await_reply();
        sigprocmask(SIG_BLOCK, &all, NULL);
    }
    restore_signals();
    close(engine);
    sigprocmask(SIG_SETMASK, &old, NULL);
    run_python_cli(argv);
}
