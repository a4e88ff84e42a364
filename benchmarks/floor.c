/* The syscall floor of starting a /bin/true container: only the syscalls any engine must
 * make for fastbox's default run (pid, mount, uts, ipc, net and cgroup namespaces, v1
 * cgroups with limits, a tmpfs-backed overlay root, pivot_root, /proc), timed per run.
 * compare.py divides every contender's median by this one's, measured in the same run.
 *
 *     floor N LOWERDIR SCRATCH PARENT
 *
 * prints one JSON line: the wall seconds of each run. Cgroups are made at the root of each
 * v1 hierarchy (/sys/fs/cgroup/<ctrl>/PARENT/<run>), never under the caller's own cgroup.
 * Exits 77 (skip) when the host lacks those v1 hierarchies (cgroup v2 only), 1 on failure.
 * Every mount happens in the child's private mount namespace and dies with it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define EXIT_SKIP 77
#define N_CTRL 5

static const char *const controllers[N_CTRL] = {"memory", "cpu", "cpuacct", "pids", "devices"};

struct limit {
    const char *ctrl, *file, *value;
};

/* The same limits as the peers and fastbox. cpu.cfs_period_us is left alone: a new v1
 * cgroup already has the 100000 us period. */
static const struct limit limits[] = {
    {"memory", "memory.limit_in_bytes", "256M"},
    {"cpu", "cpu.cfs_quota_us", "100000"},
    {"pids", "pids.max", "1024"},
};
#define N_LIMITS (sizeof limits / sizeof limits[0])

struct floor {
    const char *lower, *scratch, *parent;
    char hier[N_CTRL][64]; /* distinct hierarchies: co-mounted controllers count once */
    int n_hier;
    int made_parent[N_CTRL];
    char dirs[N_CTRL][PATH_MAX];  /* this run's cgroup directories */
    char tasks[N_CTRL][PATH_MAX];
    char limit_files[N_LIMITS][PATH_MAX];
    char upper[PATH_MAX], work[PATH_MAX], merged[PATH_MAX];
    char overlay_opts[3 * PATH_MAX + 64];
    unsigned long rmdir_retries;
};

/* The child runs on this stack; without CLONE_VM it is the child's own copy. */
static char child_stack[64 * 1024] __attribute__((aligned(16)));

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *arg)
{
    fprintf(stderr, "floor: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
    _exit(125);
}

static int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    int err = errno;
    close(fd);
    errno = err;
    return n < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------- the container child */

static int child_main(void *arg)
{
    struct floor *f = arg;
    for (int i = 0; i < f->n_hier; i++)
        if (write_file(f->tasks[i], "0") < 0)
            die("join cgroup", f->tasks[i]);
    if (unshare(CLONE_NEWCGROUP) < 0)
        die("unshare", "CLONE_NEWCGROUP");
    /* Private first, so no mount below can propagate to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        die("make private", "/");
    if (mount("tmpfs", f->scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") < 0)
        die("mount tmpfs on", f->scratch);
    const char *dirs[] = {f->upper, f->work, f->merged};
    for (int i = 0; i < 3; i++)
        if (mkdir(dirs[i], 0755) < 0)
            die("mkdir", dirs[i]);
    if (mount("overlay", f->merged, "overlay", 0, f->overlay_opts) < 0)
        die("mount overlay on", f->merged);
    if (chdir(f->merged) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0)
        die("pivot_root to", f->merged);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount", "/proc");
    char *const argv[] = {"/bin/true", NULL};
    char *const envp[] = {"PATH=/bin", NULL};
    execve(argv[0], argv, envp);
    die("execve", argv[0]);
    return 125;
}

/* ---------------------------------------------------------------- one timed run */

static void format_run_paths(struct floor *f, long run)
{
    for (int i = 0; i < f->n_hier; i++) {
        snprintf(f->dirs[i], PATH_MAX, "%s/%s/%ld", f->hier[i], f->parent, run);
        snprintf(f->tasks[i], PATH_MAX, "%s/tasks", f->dirs[i]);
    }
    for (size_t i = 0; i < N_LIMITS; i++)
        snprintf(f->limit_files[i], PATH_MAX, "%s/%s/%s/%ld/%s", CGROUP_ROOT, limits[i].ctrl,
                 f->parent, run, limits[i].file);
}

/* v1 may still count the exited task for a moment after waitpid. */
static int rmdir_retry(struct floor *f, const char *dir)
{
    for (int tries = 0; rmdir(dir) < 0; tries++) {
        if (errno != EBUSY || tries == 10000)
            return -1;
        f->rmdir_retries++;
        sched_yield();
    }
    return 0;
}

static int remove_run_cgroups(struct floor *f)
{
    int rc = 0;
    for (int i = 0; i < f->n_hier; i++)
        if (rmdir_retry(f, f->dirs[i]) < 0 && errno != ENOENT) {
            fprintf(stderr, "floor: rmdir %s: %s\n", f->dirs[i], strerror(errno));
            rc = -1;
        }
    return rc;
}

static int make_run_cgroups(struct floor *f)
{
    for (int i = 0; i < f->n_hier; i++)
        if (mkdir(f->dirs[i], 0755) < 0) {
            fprintf(stderr, "floor: mkdir %s: %s\n", f->dirs[i], strerror(errno));
            return -1;
        }
    for (size_t i = 0; i < N_LIMITS; i++)
        if (write_file(f->limit_files[i], limits[i].value) < 0) {
            fprintf(stderr, "floor: write %s: %s\n", f->limit_files[i], strerror(errno));
            return -1;
        }
    return 0;
}

static int spawn_and_wait(struct floor *f)
{
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
    pid_t pid = clone(child_main, child_stack + sizeof child_stack, flags | SIGCHLD, f);
    if (pid < 0) {
        perror("floor: clone");
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("floor: waitpid");
            return -1;
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "floor: container exited with status 0x%x\n", status);
        return -1;
    }
    return 0;
}

/* Wall seconds of one container, cgroup mkdir to rmdir; < 0 on failure. */
static double run_once(struct floor *f, long run)
{
    format_run_paths(f, run);
    double t0 = now();
    int rc = make_run_cgroups(f);
    if (rc == 0)
        rc = spawn_and_wait(f);
    if (remove_run_cgroups(f) < 0 || rc < 0)
        return -1;
    return now() - t0;
}

/* ---------------------------------------------------------------- setup and teardown */

/* Each controller's v1 hierarchy, once per superblock; 0, or EXIT_SKIP when one is missing. */
static int find_hierarchies(struct floor *f)
{
    dev_t seen[N_CTRL];
    for (int i = 0; i < N_CTRL; i++) {
        char path[64];
        struct statfs sfs;
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", CGROUP_ROOT, controllers[i]);
        if (statfs(path, &sfs) < 0 || sfs.f_type != CGROUP_SUPER_MAGIC || stat(path, &st) < 0) {
            fprintf(stderr, "floor: skipped: no cgroup v1 %s hierarchy at %s (cgroup v2 only?)\n",
                    controllers[i], path);
            return EXIT_SKIP;
        }
        int dup = 0;
        for (int j = 0; j < f->n_hier; j++)
            dup |= seen[j] == st.st_dev;
        if (dup)
            continue;
        seen[f->n_hier] = st.st_dev;
        snprintf(f->hier[f->n_hier++], sizeof f->hier[0], "%s", path);
    }
    return 0;
}

static int make_parents(struct floor *f)
{
    for (int i = 0; i < f->n_hier; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", f->hier[i], f->parent);
        if (mkdir(path, 0755) == 0)
            f->made_parent[i] = 1;
        else if (errno != EEXIST) {
            fprintf(stderr, "floor: mkdir %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Only the parents this process made: another run's parent of the same name stays. */
static int remove_parents(struct floor *f)
{
    int rc = 0;
    for (int i = 0; i < f->n_hier; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", f->hier[i], f->parent);
        if (f->made_parent[i] && rmdir(path) < 0) {
            fprintf(stderr, "floor: rmdir %s: %s\n", path, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* The parent is one path component named like every benchmark cgroup, so the rmdirs
 * above can never reach a cgroup this program did not make. */
static int valid_parent(const char *p)
{
    return strncmp(p, "fastbox-", 8) == 0 && !strchr(p, '/') && strlen(p) < 200;
}

static int setup(struct floor *f, char **argv)
{
    f->lower = argv[2];
    f->scratch = argv[3];
    f->parent = argv[4];
    if (!valid_parent(f->parent)) {
        fprintf(stderr, "floor: cgroup parent must be one component named fastbox-*: %s\n", f->parent);
        return 1;
    }
    snprintf(f->upper, PATH_MAX, "%s/upper", f->scratch);
    snprintf(f->work, PATH_MAX, "%s/work", f->scratch);
    snprintf(f->merged, PATH_MAX, "%s/merged", f->scratch);
    snprintf(f->overlay_opts, sizeof f->overlay_opts, "lowerdir=%s,upperdir=%s,workdir=%s",
             f->lower, f->upper, f->work);
    int rc = find_hierarchies(f);
    if (rc == 0 && make_parents(f) < 0)
        rc = 1;
    return rc;
}

int main(int argc, char **argv)
{
    static struct floor f;
    if (argc != 5) {
        fprintf(stderr, "usage: %s N LOWERDIR SCRATCH CGROUP_PARENT\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    int rc = setup(&f, argv);
    if (rc != 0) {
        remove_parents(&f);
        return rc;
    }
    double *times = calloc(n > 0 ? n : 1, sizeof *times);
    if (!times)
        rc = 1;
    for (long i = 0; i < n && rc == 0; i++)
        if ((times[i] = run_once(&f, i)) < 0)
            rc = 1;
    if (remove_parents(&f) < 0)
        rc = 1;
    if (rc != 0)
        return rc;
    if (f.rmdir_retries)
        fprintf(stderr, "floor: %lu rmdir retries (EBUSY)\n", f.rmdir_retries);
    putchar('[');
    for (long i = 0; i < n; i++)
        printf("%s%.9f", i ? ", " : "", times[i]);
    puts("]");
    return 0;
}
