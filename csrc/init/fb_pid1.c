/* fastbox-init: the container's PID 1 under `run --init` (what tini is to Docker).
 *
 * A process that is PID 1 of a pid namespace gets no signal it has not installed a
 * handler for, and inherits every orphan of the namespace: a program that never expected
 * that (a shell, httpd) then ignores `stop`'s SIGTERM and leaves zombies. This init runs
 * the program as its child, forwards every signal it gets to it, reaps every process that
 * ends, and exits with the program's status (128+N if a signal N ended it).
 *
 * It is exec'd by the core from a sealed memfd (fastbox/runtime/init_binary.py), never
 * from a path in the container or the host: its /proc/1/exe is that read-only copy.
 * Static, so that it needs nothing from the container's filesystem. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "--") == 0)
        first = 2;
    if (first >= argc) {
        fprintf(stderr, "fastbox-init: usage: fastbox-init -- PROGRAM [ARG...]\n");
        return 125;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);

    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "fastbox-init: fork: %s\n", strerror(errno));
        return 125;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[first], argv + first);
        int err = errno;
        fprintf(stderr, "fastbox-init: exec %s: %s\n", argv[first], strerror(err));
        _exit(err == ENOENT ? 127 : 126);
    }

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            /* forwarded to the program; a stop signal too, so that ^Z stops it, not us */
            kill(child, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t done = waitpid(-1, &status, WNOHANG);
            if (done <= 0)
                break;
            if (done == child)
                return status_code(status);
        }
    }
}
