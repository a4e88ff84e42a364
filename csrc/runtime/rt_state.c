/* A container's state under the caller's --root: <root>/<id>/state.json (written by
 * rename) and exec.fifo while it waits for `start`. The status is derived, never
 * stored: the init alive (and the same process: its start time matches) with the fifo
 * present is "created", without it "running" or "paused", and gone is "stopped". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "rt.h"

char *rt_state_dir(const char *id)
{
    return rt_fmt("%s/%s", G.root, id);
}

/* runc's rule: letters, digits, and _ + - . (no path separator, not . or ..) */
void rt_check_id(const char *id)
{
    int ok = *id && strcmp(id, ".") && strcmp(id, "..") && strlen(id) < 1024;
    for (const char *p = id; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
             *p == '_' || *p == '+' || *p == '-' || *p == '.';
    if (!ok)
        rt_die("invalid container id format: %s", id);
}

struct js *rt_state_try(const char *id)
{
    char err[512];
    char *path = rt_fmt("%s/%s/state.json", G.root, id);
    struct js *st = js_parse_file(path, err, sizeof err);
    free(path);
    return st;
}

struct js *rt_state_load(const char *id)
{
    struct js *st = rt_state_try(id);
    if (!st)
        rt_die("container \"%s\" does not exist", id);
    return st;
}

/* field 22 of /proc/PID/stat (start time in clock ticks); 0 when gone or a zombie */
unsigned long long rt_proc_start(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces and parens */
    if (!p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0;
    p += 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

static int alive(const struct js *st)
{
    pid_t pid = (pid_t)js_int(st, "pid", 0);
    unsigned long long start = (unsigned long long)js_int(st, "start", 0);
    return pid > 0 && rt_proc_start(pid) == start && start != 0;
}

int rt_pidfd(const struct js *st)
{
    pid_t pid = (pid_t)js_int(st, "pid", 0);
    if (pid <= 0)
        return -1;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    /* checked after the open: a pidfd made before the check names the right process */
    if (fd >= 0 && !alive(st)) {
        close(fd);
        return -1;
    }
    return fd;
}

const char *rt_status(const struct js *st, pid_t *pid)
{
    int up = alive(st);
    if (pid)
        *pid = up ? (pid_t)js_int(st, "pid", 0) : 0;
    if (!up)
        return "stopped";
    char *fifo = rt_fmt("%s/%s/exec.fifo", G.root, js_str(st, "id", ""));
    int created = access(fifo, F_OK) == 0;
    free(fifo);
    if (created)
        return "created";
    return rt_cg_frozen(st) ? "paused" : "running";
}

void rt_print_state(FILE *f, const struct js *st)
{
    pid_t pid;
    const char *status = rt_status(st, &pid);
    fprintf(f, "{\n  \"ociVersion\": \"%s\",\n  \"id\": ", RT_OCI_VERSION);
    js_write_str(f, js_str(st, "id", ""));
    fprintf(f, ",\n  \"pid\": %d,\n  \"status\": \"%s\",\n  \"bundle\": ", pid, status);
    js_write_str(f, js_str(st, "bundle", ""));
    fputs(",\n  \"rootfs\": ", f);
    js_write_str(f, js_str(st, "rootfs", ""));
    fputs(",\n  \"created\": ", f);
    js_write_str(f, js_str(st, "created", ""));
    fputs(",\n  \"owner\": \"root\",\n  \"annotations\": ", f);
    struct js *a = js_get(st, "annotations");
    if (a)
        js_dump(f, a);
    else
        fputs("{}", f);
    fputs("\n}", f);
}
