/* fastbox-dns: the name server of one user-defined network, as Docker's embedded DNS and
 * podman's aardvark-dns are. It listens on the network's gateway address, port 53 (UDP
 * and TCP), in the namespace that holds the bridge, and answers only the network's
 * members (a query from any other source is dropped: it is no open resolver):
 *   - A, and AAAA on an IPv6 network, for a member's name, --network-alias, short id or
 *     hostname (every member that has it: an alias shared by several is answered with
 *     each), from the network's names directory (FASTBOX_RUN/net/names/<network>/
 *     <container id>: "IPV4\tNAME...\n", then "IPV6\tNAME...\n" on an IPv6 network),
 *     reloaded when inotify says it changed; a container on several networks is also
 *     answered the names of its other networks;
 *   - PTR for a member's address (in-addr.arpa, or ip6.arpa's nibbles); other types of
 *     a member's name: no data;
 *   - anything else is forwarded unchanged to the querying container's --dns servers
 *     (its endpoint record's "dns" lines) or the host's resolvers (/etc/resolv.conf,
 *     read again when it changes), one at a time, 2 s each, then SERVFAIL; a query that
 *     came over TCP goes upstream over TCP (an answer too big for UDP comes back whole,
 *     where over UDP it would come truncated, and the client, already on TCP, would not
 *     retry). On an --internal network nothing is forwarded: SERVFAIL.
 * It reads only fastbox's records, never what a container can write. After binding it
 * drops every capability, sets no_new_privs, and confines itself with Landlock.
 *
 * Lifetime: started by fastbox (fastbox/network/dns.py) when a member joins and none
 * runs, under the network's lease lock. It forks once bound: the child writes --pidfile
 * ("PID START", START field 22 of /proc/PID/stat) and tells the parent, which exits 0
 * (or 1 with one line on stderr). It exits once the names directory has been empty for
 * a second, deciding under the same lock (a joiner holds it while it adds a name and
 * checks that we run), or when the directory goes (network rm), removing its pidfile.
 *
 * argv: --gateway IP --names DIR --lock FILE --pidfile FILE --endpoints DIR
 *       [--resolv FILE] [--internal] [--retry-bind MS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 64
#define MAX_TCP 16
#define MAX_TCP_PER_MEMBER 4 /* so that one member holding connections open starves no other */
#define MAX_UPSTREAMS 3
#define MSG_MAX 4096
#define FORWARD_MS 2000
#define TCP_MS 3000
#define TTL 600
#define LINGER_MS 1000 /* kept with no member (maybe_exit) */

struct member {
    char id[72];
    uint32_t ip; /* network order */
    unsigned char ip6[16];
    int has_ip6;
    char *names; /* space-separated */
};

/* A member's addresses, as an answer needs them (other networks' members are freed) */
struct found {
    uint32_t ip;
    unsigned char ip6[16];
    int has_ip6;
};

struct pending {
    int fd;                 /* a socket connected to the upstream, -1: free */
    struct sockaddr_in client;
    int tcp;                /* index of the TCP client waiting, -1: UDP */
    long long deadline;
    uint32_t up[MAX_UPSTREAMS];
    int n_up, at;
    int stream;             /* the upstream socket is TCP (the client's query came so) */
    size_t sent, got;       /* TCP: bytes of the framed query sent, of the reply read */
    size_t len;
    unsigned char q[MSG_MAX];
    unsigned char r[2 + MSG_MAX]; /* TCP: the reply, framed */
};

struct tcpconn {
    int fd, busy; /* busy: its query is forwarded, its answer to come */
    uint32_t from; /* the member's address */
    long long deadline;
    size_t len;
    unsigned char buf[2 + MSG_MAX];
};

static struct {
    const char *names, *lock, *pidfile, *endpoints, *resolv;
    uint32_t gateway;
    int internal, retry_bind_ms;
} opt = {.resolv = "/etc/resolv.conf"};

static struct member *members;
static int n_members;
static struct pending pend[MAX_PENDING];
static struct tcpconn tcp[MAX_TCP];
static uint32_t host_up[MAX_UPSTREAMS];
static int n_host_up;
static struct timespec resolv_mtime;

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static char *read_file(const char *path, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(max + 1);
    size_t got = 0;
    ssize_t n;
    while (buf && got < max && (n = read(fd, buf + got, max - got)) > 0)
        got += (size_t)n;
    close(fd);
    if (buf)
        buf[got] = '\0';
    return buf;
}

/* The second line of a member's file, "IPV6\tNAME...": 1 with its address in ip6. Its
 * names are the first line's; a line we cannot read leaves the member its IPv4 only. */
static int parse_ip6(const char *line, unsigned char *ip6)
{
    char addr[INET6_ADDRSTRLEN];
    size_t n = strcspn(line, "\t\n");
    if (n == 0 || n >= sizeof addr)
        return 0;
    memcpy(addr, line, n);
    addr[n] = '\0';
    return inet_pton(AF_INET6, addr, ip6) == 1;
}

/* "IPV4\tNAME NAME...\n", then on an IPv6 network "IPV6\tNAME NAME...\n" */
static int parse_member(const char *dir, const char *id, struct member *m)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, id);
    char *text = read_file(path, 8192);
    if (!text)
        return -1;
    char *tab = strchr(text, '\t');
    if (!tab) {
        free(text);
        return -1;
    }
    *tab = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1) {
        free(text);
        return -1;
    }
    char *nl = strchr(tab + 1, '\n');
    if (nl)
        *nl = '\0';
    snprintf(m->id, sizeof m->id, "%s", id);
    m->ip = a.s_addr;
    memset(m->ip6, 0, sizeof m->ip6);
    m->has_ip6 = nl && parse_ip6(nl + 1, m->ip6);
    m->names = strdup(tab + 1);
    free(text);
    return m->names ? 0 : -1;
}

static void free_members(struct member *ms, int n)
{
    for (int i = 0; i < n; i++)
        free(ms[i].names);
    free(ms);
}

/* Every member of dir; -1 if dir is gone. */
static int load_dir(const char *dir, struct member **out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct member *ms = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct member *grown = realloc(ms, (size_t)cap * sizeof *ms);
            if (!grown)
                break;
            ms = grown;
        }
        if (parse_member(dir, e->d_name, &ms[n]) == 0)
            n++;
    }
    closedir(d);
    *out = ms;
    return n;
}

static int reload(void)
{
    struct member *ms = NULL;
    int n = load_dir(opt.names, &ms);
    if (n < 0)
        return -1;
    free_members(members, n_members);
    members = ms;
    n_members = n;
    return n;
}

static int has_name(const char *names, const char *q)
{
    size_t len = strlen(q);
    for (const char *p = names; *p;) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncasecmp(p, q, n) == 0)
            return 1;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

static struct member *member_at(uint32_t ip)
{
    for (int i = 0; i < n_members; i++)
        if (members[i].ip == ip)
            return &members[i];
    return NULL;
}

static struct member *member_at6(const unsigned char *ip6)
{
    for (int i = 0; i < n_members; i++)
        if (members[i].has_ip6 && !memcmp(members[i].ip6, ip6, 16))
            return &members[i];
    return NULL;
}

static struct found found_of(const struct member *m)
{
    struct found f = {.ip = m->ip, .has_ip6 = m->has_ip6};
    memcpy(f.ip6, m->ip6, sizeof f.ip6);
    return f;
}

/* ------------------------------------------------------------ answers */

struct query {
    char name[256]; /* lower case, no trailing dot */
    uint16_t type, class;
    size_t end;     /* offset just past the question */
};

static int parse_query(const unsigned char *m, size_t len, struct query *q)
{
    if (len < 12 || (m[2] & 0x80) || m[4] != 0 || m[5] != 1)
        return -1; /* a response, or not one question */
    size_t at = 12, out = 0;
    while (at < len && m[at]) {
        unsigned l = m[at++];
        if (l > 63 || at + l > len || out + l + 1 >= sizeof q->name)
            return -1;
        if (out)
            q->name[out++] = '.';
        for (unsigned i = 0; i < l; i++)
            q->name[out++] = (char)tolower(m[at + i]);
        at += l;
    }
    if (at + 5 > len)
        return -1;
    q->name[out] = '\0';
    at++;
    q->type = (uint16_t)(m[at] << 8 | m[at + 1]);
    q->class = (uint16_t)(m[at + 2] << 8 | m[at + 3]);
    q->end = at + 4;
    return 0;
}

/* The header and question of a reply to m: QR, RA, RD as asked, rcode. */
static size_t reply_head(unsigned char *r, const unsigned char *m, const struct query *q, int rcode)
{
    memcpy(r, m, q->end);
    r[2] = (unsigned char)(0x80 | (m[2] & 0x79) | 0x04); /* QR, opcode, AA, RD */
    r[3] = (unsigned char)(0x80 | rcode);                /* RA */
    r[4] = 0, r[5] = 1;
    memset(r + 6, 0, 6);
    return q->end;
}

static size_t add_rr(unsigned char *r, size_t at, uint16_t type, const void *data, size_t n)
{
    if (at + 12 + n > 512)
        return at;
    unsigned char *p = r + at;
    p[0] = 0xc0, p[1] = 12; /* the question's name */
    p[2] = (unsigned char)(type >> 8), p[3] = (unsigned char)type;
    p[4] = 0, p[5] = 1;
    p[6] = 0, p[7] = 0, p[8] = TTL >> 8, p[9] = TTL & 0xff;
    p[10] = (unsigned char)(n >> 8), p[11] = (unsigned char)n;
    memcpy(p + 12, data, n);
    unsigned ancount = (unsigned)(r[6] << 8 | r[7]) + 1;
    r[6] = (unsigned char)(ancount >> 8), r[7] = (unsigned char)ancount;
    return at + 12 + n;
}

/* Members of the other networks the asking container is on. */
static int other_networks(const char *asker, const char *name, struct found *found, int max)
{
    char top[4096];
    snprintf(top, sizeof top, "%s", opt.names);
    char *slash = strrchr(top, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    DIR *d = opendir(top);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char dir[4096 + 256], own[8192];
        if (e->d_name[0] == '.' || !strcmp(e->d_name, slash + 1))
            continue;
        snprintf(dir, sizeof dir, "%s/%s", top, e->d_name);
        snprintf(own, sizeof own, "%s/%s", dir, asker);
        if (access(own, F_OK) != 0)
            continue;
        struct member *ms = NULL;
        int k = load_dir(dir, &ms);
        for (int i = 0; i < k && n < max; i++)
            if (has_name(ms[i].names, name))
                found[n++] = found_of(&ms[i]);
        if (k > 0)
            free_members(ms, k);
        else
            free(ms);
    }
    closedir(d);
    return n;
}

/* The answer to a PTR query for a member's address: its first name; 0 (forward the
 * query) when the address is no member's. */
static size_t ptr_reply(const unsigned char *m, const struct query *q, const struct member *member,
                        unsigned char *r)
{
    if (!member)
        return 0;
    unsigned char name[256];
    size_t len = 0;
    const char *first = member->names, *end = strchr(first, ' ');
    size_t fl = end ? (size_t)(end - first) : strlen(first);
    if (fl == 0 || fl > 63)
        return 0;
    name[len++] = (unsigned char)fl;
    memcpy(name + len, first, fl);
    len += fl;
    name[len++] = 0;
    size_t at = reply_head(r, m, q, 0);
    return add_rr(r, at, 12, name, len);
}

/* "b.a.9.8. ... .ip6.arpa" (lower case, as parse_query leaves it): 0 with the address
 * in ip6; -1 if name is not exactly 32 one-hex-digit labels, then ip6.arpa. */
static int parse_ip6_arpa(const char *name, unsigned char *ip6)
{
    if (strlen(name) != 32 * 2 + strlen("ip6.arpa") || strcmp(name + 32 * 2, "ip6.arpa"))
        return -1;
    memset(ip6, 0, 16);
    for (int i = 0; i < 32; i++) {
        char h = name[2 * i];
        unsigned v;
        if (name[2 * i + 1] != '.')
            return -1;
        if (h >= '0' && h <= '9')
            v = (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            v = (unsigned)(h - 'a' + 10);
        else
            return -1;
        /* the first label is the lowest nibble of the last byte */
        ip6[15 - i / 2] |= (unsigned char)(i % 2 ? v << 4 : v);
    }
    return 0;
}

/* A reply from our records in r, its length; 0: not ours (forward it). */
static size_t answer(const unsigned char *m, const struct query *q, const struct member *asker,
                     unsigned char *r)
{
    if (q->class != 1 || q->end > 512)
        return 0;
    struct found found[32];
    int n = 0;
    for (int i = 0; i < n_members && n < 32; i++)
        if (has_name(members[i].names, q->name))
            found[n++] = found_of(&members[i]);
    if (n == 0)
        n = other_networks(asker->id, q->name, found, 32);
    if (n > 0) { /* the name is ours: a type we lack (AAAA of a member without IPv6) is no data */
        size_t at = reply_head(r, m, q, 0);
        if (q->type == 1 || q->type == 255)
            for (int i = 0; i < n; i++)
                at = add_rr(r, at, 1, &found[i].ip, 4);
        if (q->type == 28 || q->type == 255)
            for (int i = 0; i < n; i++)
                if (found[i].has_ip6)
                    at = add_rr(r, at, 28, found[i].ip6, 16);
        return at;
    }
    if (q->type != 12)
        return 0;
    /* PTR of a member's address: d.c.b.a.in-addr.arpa */
    unsigned a, b, c, d;
    char tail[32];
    if (sscanf(q->name, "%u.%u.%u.%u.%31s", &d, &c, &b, &a, tail) == 5 &&
        !strcmp(tail, "in-addr.arpa") && a < 256 && b < 256 && c < 256 && d < 256)
        return ptr_reply(m, q, member_at(htonl(a << 24 | b << 16 | c << 8 | d)), r);
    /* or of its IPv6 address: its 32 nibbles, last first, then ip6.arpa */
    unsigned char ip6[16];
    if (parse_ip6_arpa(q->name, ip6) == 0)
        return ptr_reply(m, q, member_at6(ip6), r);
    return 0;
}

static size_t servfail(const unsigned char *m, size_t len, unsigned char *r)
{
    struct query q;
    if (parse_query(m, len, &q) < 0 || q.end > MSG_MAX)
        return 0;
    return reply_head(r, m, &q, 2);
}

/* ------------------------------------------------------------ forwarding */

static void parse_servers(const char *text, const char *key, uint32_t *out, int *n)
{
    *n = 0;
    for (const char *line = text; line && *line && *n < MAX_UPSTREAMS;) {
        size_t kl = strlen(key);
        if (!strncmp(line, key, kl) && (line[kl] == ' ' || line[kl] == '\t')) {
            char addr[64];
            struct in_addr a;
            if (sscanf(line + kl, " %63s", addr) == 1 && inet_pton(AF_INET, addr, &a) == 1 &&
                a.s_addr != opt.gateway)
                out[(*n)++] = a.s_addr;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
}

static void host_resolvers(void)
{
    struct stat st;
    if (stat(opt.resolv, &st) != 0) {
        n_host_up = 0;
        return;
    }
    if (st.st_mtim.tv_sec == resolv_mtime.tv_sec && st.st_mtim.tv_nsec == resolv_mtime.tv_nsec)
        return;
    resolv_mtime = st.st_mtim;
    char *text = read_file(opt.resolv, 65536);
    parse_servers(text ? text : "", "nameserver", host_up, &n_host_up);
    free(text);
}

/* The asker's --dns servers (its endpoint record, which it cannot write), else the host's. */
static int upstreams(const struct member *asker, uint32_t *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", opt.endpoints, asker->id);
    char *text = read_file(path, 16384);
    int n = 0;
    if (text)
        parse_servers(text, "dns", out, &n);
    free(text);
    if (n)
        return n;
    host_resolvers();
    memcpy(out, host_up, sizeof host_up);
    return n_host_up;
}

/* To the next upstream: 0 once the query is on its way (UDP: sent; TCP: connecting,
 * sent when writable, stream_out), -1 when none is left. */
static int send_upstream(struct pending *p)
{
    while (p->at < p->n_up) {
        if (p->fd >= 0)
            close(p->fd);
        p->stream = p->tcp >= 0;
        p->sent = p->got = 0;
        p->fd = socket(AF_INET, (p->stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53),
                                 .sin_addr.s_addr = p->up[p->at++]};
        int rc = p->fd >= 0 ? connect(p->fd, (struct sockaddr *)&to, sizeof to) : -1;
        if (p->stream ? rc == 0 || errno == EINPROGRESS
                      : rc == 0 && send(p->fd, p->q, p->len, 0) == (ssize_t)p->len) {
            p->deadline = now_ms() + FORWARD_MS;
            return 0;
        }
    }
    return -1;
}

/* TCP upstream, writable: the query, framed with its length (connect's result first). */
static int stream_out(struct pending *p)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (p->sent == 0 && (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err))
        return -1;
    unsigned char frame[2 + MSG_MAX];
    frame[0] = (unsigned char)(p->len >> 8), frame[1] = (unsigned char)p->len;
    memcpy(frame + 2, p->q, p->len);
    ssize_t n = send(p->fd, frame + p->sent, p->len + 2 - p->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    p->sent += (size_t)n;
    return 0;
}

/* TCP upstream, readable: 1 once the whole reply is in p->r, 0 for more, -1 failed. */
static int stream_in(struct pending *p)
{
    ssize_t n = recv(p->fd, p->r + p->got, sizeof p->r - p->got, 0);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    if (n == 0)
        return -1; /* closed before the whole reply */
    p->got += (size_t)n;
    if (p->got < 2)
        return 0;
    size_t want = (size_t)(p->r[0] << 8 | p->r[1]);
    if (want < 12 || want > MSG_MAX)
        return -1;
    return p->got >= 2 + want ? 1 : 0;
}

static void reply_tcp(int i, const unsigned char *r, size_t n);
static int udp_fd = -1, tcp_listen_fd = -1;
static long long empty_since; /* now_ms() when the network was last seen empty; 0: members */

#define GONE (-2) /* a pending query whose TCP client went */

static void deliver(struct pending *p, const unsigned char *r, size_t n)
{
    if (p->tcp >= 0)
        reply_tcp(p->tcp, r, n);
    else if (p->tcp != GONE)
        sendto(udp_fd, r, n, MSG_DONTWAIT, (struct sockaddr *)&p->client, sizeof p->client);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void fail_pending(struct pending *p)
{
    unsigned char r[MSG_MAX];
    size_t n = servfail(p->q, p->len, r);
    if (n)
        deliver(p, r, n);
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void forward(const unsigned char *m, size_t len, const struct member *asker,
                    const struct sockaddr_in *client, int tcp_i)
{
    struct pending *p = NULL;
    for (int i = 0; i < MAX_PENDING && !p; i++)
        if (pend[i].fd < 0 && pend[i].len == 0)
            p = &pend[i];
    unsigned char r[MSG_MAX];
    if (!p || opt.internal || len > MSG_MAX) {
        size_t n = servfail(m, len, r);
        struct pending tmp = {.fd = -1, .tcp = tcp_i};
        if (client)
            tmp.client = *client;
        if (n)
            deliver(&tmp, r, n);
        return;
    }
    memset(p, 0, offsetof(struct pending, q));
    p->fd = -1;
    p->tcp = tcp_i;
    if (client)
        p->client = *client;
    memcpy(p->q, m, len);
    p->len = len;
    p->n_up = upstreams(asker, p->up);
    if (send_upstream(p) < 0) {
        fail_pending(p);
        p->len = 0;
    }
}

static void upstream_stream(struct pending *p, short revents)
{
    int rc = 0;
    if (p->sent < p->len + 2 && (revents & (POLLOUT | POLLERR | POLLHUP)))
        rc = stream_out(p);
    else if (revents & (POLLIN | POLLERR | POLLHUP))
        rc = stream_in(p);
    if (rc == 1 && p->r[2] == p->q[0] && p->r[3] == p->q[1]) {
        deliver(p, p->r + 2, (size_t)(p->r[0] << 8 | p->r[1]));
        p->len = 0;
    } else if (rc != 0 && send_upstream(p) < 0) {
        fail_pending(p); /* refused, cut short or not ours: the next one, or SERVFAIL */
        p->len = 0;
    }
}

static void upstream_reply(struct pending *p, short revents)
{
    if (p->stream) {
        upstream_stream(p, revents);
        return;
    }
    unsigned char r[MSG_MAX];
    ssize_t n = recv(p->fd, r, sizeof r, 0);
    if (n < 12 || r[0] != p->q[0] || r[1] != p->q[1]) {
        if (n < 0 && errno != EAGAIN && send_upstream(p) < 0) {
            fail_pending(p); /* refused: the next one, or SERVFAIL */
            p->len = 0;
        }
        return;
    }
    deliver(p, r, (size_t)n);
    p->len = 0;
}

/* ------------------------------------------------------------ serving */

static void handle(const unsigned char *m, size_t len, const struct sockaddr_in *client, int tcp_i)
{
    struct member *asker = member_at(client->sin_addr.s_addr);
    if (!asker)
        return; /* not a member of this network: no answer at all */
    struct query q;
    if (parse_query(m, len, &q) < 0)
        return;
    unsigned char r[512];
    size_t n = answer(m, &q, asker, r);
    if (n) {
        struct pending tmp = {.fd = -1, .tcp = tcp_i, .client = *client};
        deliver(&tmp, r, n);
        return;
    }
    forward(m, len, asker, client, tcp_i);
}

static void reply_tcp(int i, const unsigned char *r, size_t n)
{
    if (i < 0 || tcp[i].fd < 0)
        return;
    unsigned char out[2 + MSG_MAX];
    out[0] = (unsigned char)(n >> 8), out[1] = (unsigned char)n;
    memcpy(out + 2, r, n);
    send(tcp[i].fd, out, n + 2, MSG_DONTWAIT | MSG_NOSIGNAL);
    close(tcp[i].fd);
    tcp[i].fd = -1;
}

static void tcp_accept(int lfd)
{
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    int fd = accept4(lfd, (struct sockaddr *)&from, &fl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int held = 0;
    for (int i = 0; i < MAX_TCP; i++)
        held += tcp[i].fd >= 0 && tcp[i].from == from.sin_addr.s_addr;
    if (!member_at(from.sin_addr.s_addr) || held >= MAX_TCP_PER_MEMBER) {
        close(fd);
        return;
    }
    for (int i = 0; i < MAX_TCP; i++)
        if (tcp[i].fd < 0) {
            tcp[i].fd = fd;
            tcp[i].from = from.sin_addr.s_addr;
            tcp[i].len = 0;
            tcp[i].busy = 0;
            tcp[i].deadline = now_ms() + TCP_MS;
            return;
        }
    close(fd);
}

static void tcp_read(int i)
{
    struct tcpconn *c = &tcp[i];
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN) {
            close(c->fd);
            c->fd = -1;
        }
        return;
    }
    c->len += (size_t)n;
    if (c->len < 2)
        return;
    size_t want = (size_t)(c->buf[0] << 8 | c->buf[1]);
    if (want > MSG_MAX) {
        close(c->fd);
        c->fd = -1;
        return;
    }
    if (c->len < 2 + want)
        return;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    getpeername(c->fd, (struct sockaddr *)&from, &fl);
    c->deadline = now_ms() + FORWARD_MS * MAX_UPSTREAMS + 500;
    handle(c->buf + 2, want, &from, i);
    /* answered (closed), or a forward that replies later: no more reading */
    if (c->fd >= 0)
        c->busy = 1;
}

/* Exit if the network has no member left: decided under its lease lock. */
/* Exits once the network has had no member for LINGER_MS: back-to-back `run --rm`
 * members each leave the network empty, and without it every start spawned a new
 * server (+2 ms a start on a user network, in-process A/B). */
static void maybe_exit(void)
{
    if (n_members > 0) {
        empty_since = 0;
        return;
    }
    long long now = now_ms();
    if (!empty_since)
        empty_since = now;
    if (now - empty_since < LINGER_MS)
        return;
    int lock = open(opt.lock, O_RDONLY | O_CLOEXEC);
    if (lock >= 0)
        flock(lock, LOCK_EX);
    if (reload() <= 0) {
        /* Port 53 let go before the lock: the next joiner, which takes the lock the
         * moment we are gone, finds no pidfile and starts our successor at once. Left to
         * _exit, the sockets went after the lock (an exiting task's files are released
         * last first), and the successor's bind failed with EADDRINUSE: 6 back-to-back
         * `run --rm` members in 10 had no name server. */
        close(udp_fd);
        close(tcp_listen_fd);
        unlink(opt.pidfile);
        _exit(0);
    }
    empty_since = 0; /* a member came meanwhile */
    if (lock >= 0)
        close(lock);
}

static int drop_privileges(void)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_capset, &h, d);
}

/* Landlock (best effort; a kernel without it leaves us with the above): from here on we
 * may only read FASTBOX_RUN/net (names, records, the lease lock) and the host's
 * resolv.conf, remove our pid file, bind no TCP port and connect to none but 53 (the
 * upstream name servers), and signal no process outside ourselves. uid 0 without capabilities could still write root's files or kill
 * root's processes: this is what keeps a bug here from becoming a way out. The header
 * of this build may predate the newer rights: their values are the kernel's ABI. */
struct ll_ruleset { uint64_t fs, net, scoped; };
struct ll_beneath { uint64_t allowed; int32_t fd; } __attribute__((packed));
struct ll_port { uint64_t allowed, port; };
#define LL_FS_V1 0x1fffULL          /* execute .. make_sym */
#define LL_FS_REFER (1ULL << 13)    /* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define LL_NET_TCP 3ULL             /* bind, connect: ABI 4 */
#define LL_SCOPE_ALL 3ULL           /* abstract unix sockets, signals: ABI 6 */

static void ll_allow(int ruleset, const char *path, uint64_t rights)
{
    struct ll_beneath b = {rights, open(path, O_PATH | O_CLOEXEC)};
    if (b.fd < 0)
        return;
    syscall(SYS_landlock_add_rule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &b, 0);
    close(b.fd);
}

static void confine(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, 1U /* VERSION */);
    if (abi < 1)
        return;
    struct ll_ruleset r = {LL_FS_V1, 0, 0};
    size_t size = sizeof r.fs;
    if (abi >= 2)
        r.fs |= LL_FS_REFER;
    if (abi >= 3)
        r.fs |= LL_FS_TRUNCATE;
    if (abi >= 5)
        r.fs |= LL_FS_IOCTL_DEV;
    if (abi >= 4)
        r.net = LL_NET_TCP, size = 2 * sizeof r.fs;
    if (abi >= 6)
        r.scoped = LL_SCOPE_ALL, size = sizeof r;
    int fd = (int)syscall(SYS_landlock_create_ruleset, &r, size, 0);
    if (fd < 0)
        return;
    char net[4096], dns[4096];
    snprintf(net, sizeof net, "%s", opt.names);
    for (int up = 0; up < 2; up++) { /* FASTBOX_RUN/net/names/<network> -> FASTBOX_RUN/net */
        char *slash = strrchr(net, '/');
        if (slash)
            *slash = '\0';
    }
    snprintf(dns, sizeof dns, "%s", opt.pidfile);
    char *slash = strrchr(dns, '/');
    if (slash)
        *slash = '\0';
    uint64_t read = (1ULL << 2) | (1ULL << 3); /* read_file, read_dir */
    ll_allow(fd, net, read);
    ll_allow(fd, dns, read | (1ULL << 5));     /* remove_file: our pid file */
    ll_allow(fd, opt.resolv, 1ULL << 2);
    if (abi >= 4) {
        struct ll_port dns53 = {1ULL << 1 /* connect_tcp */, 53};
        syscall(SYS_landlock_add_rule, fd, 2 /* LANDLOCK_RULE_NET_PORT */, &dns53, 0);
    }
    syscall(SYS_landlock_restrict_self, fd, 0);
    close(fd);
}

static long long start_time_of_self(void)
{
    char *stat = read_file("/proc/self/stat", 4096);
    long long t = 0;
    char *p = stat ? strrchr(stat, ')') : NULL;
    /* fields after ")": state is 3, starttime is 22 */
    for (int field = 2; p && *p; p++)
        if (*p == ' ' && ++field == 22) {
            t = atoll(p + 1);
            break;
        }
    free(stat);
    return t;
}

static int write_pidfile(void)
{
    char tmp[4200], text[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", opt.pidfile);
    int n = snprintf(text, sizeof text, "%d %lld\n", getpid(), start_time_of_self());
    /* locked for as long as we live (the fd stays open): fastbox asks whether we run
     * with one flock, and the kernel drops it however we die */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0 || write(fd, text, (size_t)n) != n) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return rename(tmp, opt.pidfile);
}

static int bind_sockets(int *u, int *t)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = opt.gateway};
    int one = 1;
    *u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    *t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*u < 0 || *t < 0)
        return -1;
    setsockopt(*t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(*u, (struct sockaddr *)&a, sizeof a) < 0 || bind(*t, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(*t, 16) < 0)
        return -1;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--internal")) {
            opt.internal = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        struct in_addr ad;
        if (!strcmp(k, "--gateway") && inet_pton(AF_INET, v, &ad) == 1)
            opt.gateway = ad.s_addr;
        else if (!strcmp(k, "--names"))
            opt.names = v;
        else if (!strcmp(k, "--lock"))
            opt.lock = v;
        else if (!strcmp(k, "--pidfile"))
            opt.pidfile = v;
        else if (!strcmp(k, "--endpoints"))
            opt.endpoints = v;
        else if (!strcmp(k, "--resolv"))
            opt.resolv = v;
        else if (!strcmp(k, "--retry-bind"))
            opt.retry_bind_ms = atoi(v);
        else
            return -1;
    }
    return opt.gateway && opt.names && opt.lock && opt.pidfile && opt.endpoints ? 0 : -1;
}

static void serve(int ino)
{
    struct pollfd p[3 + MAX_TCP + MAX_PENDING];
    for (;;) {
        long long now = now_ms(), next = now + 60000;
        for (int i = 0; i < MAX_PENDING; i++)
            if (pend[i].fd >= 0) {
                if (pend[i].deadline <= now && send_upstream(&pend[i]) < 0) {
                    fail_pending(&pend[i]);
                    pend[i].len = 0;
                } else if (pend[i].deadline < next) {
                    next = pend[i].deadline;
                }
            }
        for (int i = 0; i < MAX_TCP; i++)
            if (tcp[i].fd >= 0 && tcp[i].deadline <= now) {
                close(tcp[i].fd);
                tcp[i].fd = -1;
                for (int j = 0; j < MAX_PENDING; j++)
                    if (pend[j].tcp == i)
                        pend[j].tcp = GONE;
            }
        int n = 0;
        p[n++] = (struct pollfd){ino, POLLIN, 0};
        p[n++] = (struct pollfd){udp_fd, POLLIN, 0};
        int tcp_l = n;
        p[n++] = (struct pollfd){tcp_listen_fd, POLLIN, 0};
        for (int i = 0; i < MAX_TCP; i++)
            p[n++] = (struct pollfd){tcp[i].busy ? -1 : tcp[i].fd, POLLIN, 0};
        for (int i = 0; i < MAX_PENDING; i++)
            p[n++] = (struct pollfd){pend[i].fd,
                                     pend[i].stream && pend[i].sent < pend[i].len + 2 ? POLLOUT : POLLIN, 0};
        if (empty_since && empty_since + LINGER_MS < next)
            next = empty_since + LINGER_MS;
        int wait = (int)(next - now);
        if (wait > 1000)
            wait = 1000;
        if (poll(p, (nfds_t)n, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
            return;
        if (p[0].revents) {
            char buf[4096];
            int gone = 0;
            ssize_t got = read(ino, buf, sizeof buf);
            for (char *e = buf; got > 0 && e < buf + got;) {
                struct inotify_event *ev = (struct inotify_event *)e;
                if (ev->mask & (IN_DELETE_SELF | IN_IGNORED | IN_MOVE_SELF))
                    gone = 1;
                e += sizeof *ev + ev->len;
            }
            if (gone || reload() < 0) {
                unlink(opt.pidfile);
                _exit(0);
            }
            maybe_exit();
        } else if (empty_since) {
            maybe_exit(); /* its linger may be over */
        }
        if (p[1].revents) {
            unsigned char m[MSG_MAX];
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t got = recvfrom(udp_fd, m, sizeof m, 0, (struct sockaddr *)&from, &fl);
            if (got > 0)
                handle(m, (size_t)got, &from, -1);
        }
        if (p[tcp_l].revents)
            tcp_accept(tcp_listen_fd);
        for (int i = 0; i < MAX_TCP; i++)
            if (tcp[i].fd >= 0 && !tcp[i].busy && p[3 + i].revents)
                tcp_read(i);
        for (int i = 0; i < MAX_PENDING; i++)
            if (pend[i].fd >= 0 && p[3 + MAX_TCP + i].revents)
                upstream_reply(&pend[i], p[3 + MAX_TCP + i].revents);
    }
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        fprintf(stderr, "fastbox-dns: usage: --gateway IP --names DIR --lock FILE --pidfile FILE "
                        "--endpoints DIR [--resolv FILE] [--internal]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_PENDING; i++)
        pend[i].fd = -1;
    for (int i = 0; i < MAX_TCP; i++)
        tcp[i].fd = -1;
    char gw[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &opt.gateway, gw, sizeof gw);
    /* --retry-bind: our predecessor just died; the kernel may release its flock before
     * its sockets, so the port can still be taken for a moment */
    long long give_up = now_ms() + opt.retry_bind_ms;
    int rc;
    while ((rc = bind_sockets(&udp_fd, &tcp_listen_fd)) < 0 && errno == EADDRINUSE &&
           now_ms() < give_up) {
        int err = errno;
        close(udp_fd), close(tcp_listen_fd);
        usleep(5000);
        errno = err;
    }
    if (rc < 0) {
        fprintf(stderr, "fastbox-dns: cannot listen on %s port 53: %s\n", gw, strerror(errno));
        return 1;
    }
    int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ino < 0 || inotify_add_watch(ino, opt.names, IN_CREATE | IN_DELETE | IN_MODIFY |
                                     IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
                                     IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        fprintf(stderr, "fastbox-dns: cannot watch %s: %s\n", opt.names, strerror(errno));
        return 1;
    }
    if (drop_privileges() < 0) {
        fprintf(stderr, "fastbox-dns: cannot drop capabilities: %s\n", strerror(errno));
        return 1;
    }
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return 1;
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "fastbox-dns: fork: %s\n", strerror(errno));
        return 1;
    }
    if (child > 0) { /* the parent reports, then goes: the child has no parent to wait on it */
        close(ready[1]);
        char ok = 0;
        if (read(ready[0], &ok, 1) != 1 || ok != 'k') {
            fprintf(stderr, "fastbox-dns: the responder did not start\n");
            return 1;
        }
        return 0;
    }
    close(ready[0]);
    setsid();
    reload();
    if (write_pidfile() < 0)
        _exit(1);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        if (null > 2)
            close(null);
    }
    confine();
    if (write(ready[1], "k", 1) != 1)
        _exit(1);
    close(ready[1]);
    maybe_exit();
    serve(ino);
    unlink(opt.pidfile);
    return 0;
}
