/* A container's network on a bridge, in raw netlink (no library, nothing parsed): the
 * veth pair is made with its container end created directly inside the container's
 * network namespace (IFLA_NET_NS_FD in the peer's attributes), so no device is ever moved
 * between namespaces (a move waits for an RCU grace period under the rtnl lock). Both
 * ends come up at creation, the host end already enslaved to the bridge. The address and
 * the default route are then added from a netlink socket opened inside the namespace by a
 * short-lived thread, so that no thread of the caller ever leaves its own namespace.
 *
 * Port mappings are elements of nf_tables maps (fastbox's own table, made once from
 * Python with nft): each container's elements go in one nfnetlink batch, one transaction.
 * Every value here was chosen in Python (fastbox/network). */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include "fb_net.h"

#define BUF_SIZE 4096

struct nlbuf {
    char small[BUF_SIZE];
    char *data;     /* small, or on the heap once a growable buffer outgrows it */
    size_t cap;     /* 0: small's size, fixed */
    size_t len;     /* bytes used */
    size_t msg;     /* offset of the current message */
    size_t nest[4]; /* offsets of open nested attributes */
    int depth, n_msgs, overflow;
};

/* Fixed at BUF_SIZE, or growable (on the heap past it; buf_free then). Only the
 * header is cleared: put() clears what it hands out. */
static void buf_init(struct nlbuf *b, int growable)
{
    memset(&b->data, 0, sizeof *b - offsetof(struct nlbuf, data));
    b->data = b->small;
    b->cap = growable ? BUF_SIZE : 0;
}

/* Only the nft batch grows (a large port range): never in a container's child. */
static int grow(struct nlbuf *b, size_t need)
{
    size_t cap = b->cap * 2;
    while (cap < need)
        cap *= 2;
    char *big = b->data == b->small ? malloc(cap) : realloc(b->data, cap);
    if (!big)
        return -1;
    if (b->data == b->small)
        memcpy(big, b->small, b->len);
    b->data = big;
    b->cap = cap;
    return 0;
}

static void buf_free(struct nlbuf *b)
{
    if (b->data != b->small)
        free(b->data);
    b->data = b->small;
}

static void *put(struct nlbuf *b, size_t n)
{
    size_t aligned = NLMSG_ALIGN(n);
    if (b->len + aligned > (b->cap ? b->cap : BUF_SIZE) &&
        (!b->cap || grow(b, b->len + aligned) < 0)) {
        b->overflow = 1;
        return NULL;
    }
    void *p = b->data + b->len;
    memset(p, 0, aligned);
    b->len += aligned;
    return p;
}

static void *msg_begin(struct nlbuf *b, int type, int flags, size_t hdr)
{
    b->msg = b->len;
    struct nlmsghdr *h = put(b, NLMSG_HDRLEN);
    if (!h)
        return NULL;
    h->nlmsg_type = (uint16_t)type;
    h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    h->nlmsg_seq = (uint32_t)++b->n_msgs;
    return hdr ? put(b, hdr) : NULL;
}

static void msg_end(struct nlbuf *b)
{
    if (!b->overflow)
        ((struct nlmsghdr *)(b->data + b->msg))->nlmsg_len = (uint32_t)(b->len - b->msg);
}

static void attr(struct nlbuf *b, int type, const void *v, size_t n)
{
    struct nlattr *a = put(b, NLA_HDRLEN + n);
    if (!a)
        return;
    a->nla_type = (uint16_t)type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + n);
    if (n)
        memcpy((char *)a + NLA_HDRLEN, v, n);
}

static void attr_u32(struct nlbuf *b, int type, uint32_t v) { attr(b, type, &v, sizeof v); }
static void attr_str(struct nlbuf *b, int type, const char *s) { attr(b, type, s, strlen(s) + 1); }

static void nest_begin(struct nlbuf *b, int type)
{
    size_t at = b->len;
    struct nlattr *a = put(b, NLA_HDRLEN);
    if (!a || b->depth >= 4) {
        b->overflow = 1;
        return;
    }
    a->nla_type = (uint16_t)(type | NLA_F_NESTED);
    b->nest[b->depth++] = at;
}

static void nest_end(struct nlbuf *b)
{
    if (b->overflow || b->depth == 0)
        return;
    size_t at = b->nest[--b->depth];
    ((struct nlattr *)(b->data + at))->nla_len = (uint16_t)(b->len - at);
}

static int nl_open(int proto)
{
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
    if (s < 0)
        return -1;
    int one = 1; /* acks without a copy of the request */
    setsockopt(s, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int err = errno;
        close(s);
        errno = err;
        return -1;
    }
    return s;
}

#define IGNORE_MISSING 1 /* ENOENT, ENODEV */
#define IGNORE_NO_IPV6 2 /* EAFNOSUPPORT: only no_ipv6_addrs's message gets it (IPv6 off) */

/* Sends every message of b and collects their acks: 0, or the first error as -errno
 * (those of `ignore` left out). The kernel handles a netlink request
 * inside sendto(), so every ack is queued by the time it returns: reading until the
 * queue is empty never waits on a message that will not come. */
static int nl_talk(int s, struct nlbuf *b, int ignore)
{
    if (b->overflow)
        return -EMSGSIZE;
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    if (sendto(s, b->data, b->len, 0, (struct sockaddr *)&to, sizeof to) < 0)
        return -errno;
    int first = 0;
    char rbuf[8192];
    for (;;) {
        ssize_t n = recv(s, rbuf, sizeof rbuf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return first;
            return -errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != NLMSG_ERROR)
                continue;
            int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
            if ((ignore & IGNORE_MISSING) && (err == -ENOENT || err == -ENODEV))
                err = 0;
            if ((ignore & IGNORE_NO_IPV6) && err == -EAFNOSUPPORT)
                err = 0;
            if (err && !first)
                first = err;
        }
    }
}

/* ---------------------------------------------------------------- links */

/* A setlink message: no IPv6 address is made for the link (IN6_ADDR_GEN_MODE_NONE).
 * The networks are IPv4-only (Docker likewise disables IPv6 on a container's interfaces
 * on such networks); without it each start paid for link-local addresses on both ends,
 * their duplicate detection, MLD reports and router solicitations crossing the bridge,
 * and each teardown for undoing them (~4% of the CPU samples of a loop of bridge starts,
 * perf).
 * It must reach a link before its carrier comes up: that is when addrconf runs. */
static void no_ipv6_addrs(struct nlbuf *b, int index, const char *name)
{
    struct ifinfomsg *ifi = msg_begin(b, RTM_NEWLINK, NLM_F_ACK, sizeof *ifi);
    if (ifi) {
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_index = index;
    }
    if (name)
        attr_str(b, IFLA_IFNAME, name);
    nest_begin(b, IFLA_AF_SPEC);
    nest_begin(b, AF_INET6);
    uint8_t mode = IN6_ADDR_GEN_MODE_NONE;
    attr(b, IFLA_INET6_ADDR_GEN_MODE, &mode, 1);
    nest_end(b);
    nest_end(b);
    msg_end(b);
}

/* A default route through gw (4 or 16 bytes, as family) out of link idx. */
static void default_route(struct nlbuf *b, int family, const void *gw, size_t len, int idx,
                          unsigned flags)
{
    struct rtmsg *rt = msg_begin(b, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, sizeof *rt);
    if (rt) {
        rt->rtm_family = (unsigned char)family;
        rt->rtm_table = RT_TABLE_MAIN;
        rt->rtm_protocol = RTPROT_BOOT;
        rt->rtm_scope = RT_SCOPE_UNIVERSE;
        rt->rtm_type = RTN_UNICAST;
        rt->rtm_flags = flags;
    }
    attr(b, RTA_GATEWAY, gw, len);
    attr_u32(b, RTA_OIF, (uint32_t)idx);
    msg_end(b);
}

/* An --ipv6 network's address and default route. NODAD: the address is usable at once
 * (duplicate detection would hold it "tentative" for a second, and IPAM already made it
 * unique). The link keeps no link-local address (no_ipv6_addrs): neighbour discovery
 * goes from this global address, and the gateway is reached on its prefix's route. */
static void ipv6_address(struct nlbuf *b, int idx, const struct fb_net_link *l)
{
    struct ifaddrmsg *ifa = msg_begin(b, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                                      sizeof *ifa);
    if (ifa) {
        ifa->ifa_family = AF_INET6;
        ifa->ifa_prefixlen = (unsigned char)l->prefix6;
        ifa->ifa_flags = IFA_F_NODAD;
        ifa->ifa_index = (unsigned)idx;
    }
    attr(b, IFA_LOCAL, l->addr6, 16);
    attr(b, IFA_ADDRESS, l->addr6, 16);
    attr_u32(b, IFA_FLAGS, IFA_F_NODAD);
    msg_end(b);
    static const unsigned char zero[16];
    if (memcmp(l->gateway6, zero, 16))
        default_route(b, AF_INET6, l->gateway6, 16, idx, 0);
}

int fb_net_socket(void)
{
    return nl_open(NETLINK_ROUTE);
}

/* Its end up, its address, then the default route, over a socket in the container's
 * namespace. SIOCGIFINDEX on a netlink socket asks the socket's own namespace. */
int fb_net_configure(int sock, const struct fb_net_link *l, struct fb_error *e)
{
    struct nlbuf b;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, l->peer_if, IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFINDEX, &ifr) < 0)
        return fb_fail(e, errno, FB_PHASE_NETWORK, "find the container's interface", l->peer_if);
    int idx = ifr.ifr_ifindex;
    buf_init(&b, 0);
    no_ipv6_addrs(&b, idx, NULL);
    struct ifinfomsg *ifi = msg_begin(&b, RTM_NEWLINK, NLM_F_ACK, sizeof *ifi);
    if (ifi) {
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_index = idx;
        ifi->ifi_flags = ifi->ifi_change = IFF_UP;
    }
    /* The MAC address follows from the IPv4 address, as Docker's (02:42 and its four
     * bytes): the host's neighbour entry for an address that a container held a moment
     * ago stays right for the next container given it. With a random MAC that entry
     * (REACHABLE for up to ~45 s while other ports keep the bridge up) sent the new
     * container's traffic to the old MAC, into nothing. Set while the link is down. */
    static const unsigned char none[6];
    unsigned char mac[6] = {0x02, 0x42};
    if (memcmp(l->mac, none, sizeof none) != 0)
        memcpy(mac, l->mac, sizeof mac); /* --mac-address */
    else
        memcpy(mac + 2, &l->addr, 4);
    attr(&b, IFLA_ADDRESS, mac, sizeof mac);
    msg_end(&b);
    struct ifaddrmsg *ifa = msg_begin(&b, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                                      sizeof *ifa);
    if (ifa) {
        ifa->ifa_family = AF_INET;
        ifa->ifa_prefixlen = (unsigned char)l->prefix;
        ifa->ifa_index = (unsigned)idx;
    }
    attr(&b, IFA_LOCAL, &l->addr, 4);
    attr(&b, IFA_ADDRESS, &l->addr, 4);
    uint32_t bcast = l->prefix < 31 ? (l->addr | htonl(l->prefix ? 0xffffffffu >> l->prefix : ~0u)) : 0;
    if (bcast)
        attr(&b, IFA_BROADCAST, &bcast, 4);
    msg_end(&b);
    if (l->gateway)
        default_route(&b, AF_INET, &l->gateway, 4, idx, RTNH_F_ONLINK);
    if (l->prefix6)
        ipv6_address(&b, idx, l);
    int rc = nl_talk(sock, &b, l->prefix6 ? 0 : IGNORE_NO_IPV6);
    return rc < 0 ? fb_fail(e, -rc, FB_PHASE_NETWORK, "configure the container's interface", NULL) : 0;
}

struct inside_job {
    const struct fb_net_link *l;
    struct fb_error *e;
    int rc;
};

/* On a short-lived thread: into the container's namespace, a socket there, configure. */
static void *inside(void *arg)
{
    struct inside_job *job = arg;
    if (setns(job->l->netns_fd, CLONE_NEWNET) < 0) {
        job->rc = fb_fail(job->e, errno, FB_PHASE_NETWORK, "enter the container's network namespace", NULL);
        return NULL;
    }
    int s = nl_open(NETLINK_ROUTE);
    if (s < 0) {
        job->rc = fb_fail(job->e, errno, FB_PHASE_NETWORK, "netlink socket", NULL);
        return NULL;
    }
    job->rc = fb_net_configure(s, job->l, job->e);
    close(s);
    return NULL;
}

/* One rx and one tx queue per end. veth's default is one of each per possible CPU, and
 * every queue is a sysfs directory of its own, made with the device and removed with it:
 * on a 64-CPU host that is 256 kobjects per pair. A container's veth gains nothing from
 * more queues than one (they serve XDP and multi-queue GRO, which fastbox does not use). */
static void one_queue(struct nlbuf *b)
{
    attr_u32(b, IFLA_NUM_TX_QUEUES, 1);
    attr_u32(b, IFLA_NUM_RX_QUEUES, 1);
}

int fb_net_veth(const struct fb_net_link *l, struct fb_error *e)
{
    struct nlbuf b;
    buf_init(&b, 0);
    struct ifinfomsg *ifi = msg_begin(&b, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                                      sizeof *ifi);
    if (ifi) {
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_flags = ifi->ifi_change = IFF_UP;
    }
    attr_str(&b, IFLA_IFNAME, l->host_if);
    if (l->mtu)
        attr_u32(&b, IFLA_MTU, (uint32_t)l->mtu);
    attr_u32(&b, IFLA_MASTER, (uint32_t)l->bridge_index);
    one_queue(&b);
    nest_begin(&b, IFLA_LINKINFO);
    attr_str(&b, IFLA_INFO_KIND, "veth");
    nest_begin(&b, IFLA_INFO_DATA);
    nest_begin(&b, VETH_INFO_PEER);
    struct ifinfomsg *peer = put(&b, sizeof *peer);
    if (peer) /* up only later, inside: veth opens a device only once it has a peer */
        peer->ifi_family = AF_UNSPEC;
    attr_str(&b, IFLA_IFNAME, l->peer_if);
    if (l->mtu)
        attr_u32(&b, IFLA_MTU, (uint32_t)l->mtu);
    attr_u32(&b, IFLA_NET_NS_FD, (uint32_t)l->netns_fd);
    one_queue(&b);
    nest_end(&b);
    nest_end(&b);
    nest_end(&b);
    msg_end(&b);
    /* the host end is up, but has no carrier until its peer is up, inside */
    no_ipv6_addrs(&b, 0, l->host_if);
    int s = nl_open(NETLINK_ROUTE);
    if (s < 0)
        return fb_fail(e, errno, FB_PHASE_NETWORK, "netlink socket", NULL);
    int rc = nl_talk(s, &b, IGNORE_NO_IPV6);
    close(s);
    return rc < 0 ? fb_fail(e, -rc, FB_PHASE_NETWORK, "create veth", l->host_if) : 0;
}

int fb_net_attach(const struct fb_net_link *l, int inner_sock, struct fb_error *e)
{
    int rc = fb_net_veth(l, e);
    if (rc < 0)
        return rc;
    if (inner_sock >= 0) {
        rc = fb_net_configure(inner_sock, l, e);
    } else {
        struct inside_job job = {l, e, 0};
        pthread_t t;
        int err = pthread_create(&t, NULL, inside, &job);
        if (err != 0) {
            rc = fb_fail(e, err, FB_PHASE_NETWORK, "thread for the container's network", NULL);
        } else {
            pthread_join(t, NULL);
            rc = job.rc;
        }
    }
    if (rc < 0) {
        struct fb_error ignored;
        fb_net_link_del(l->host_if, &ignored);
    }
    return rc;
}

int fb_net_link_del(const char *name, struct fb_error *e)
{
    struct nlbuf b;
    buf_init(&b, 0);
    struct ifinfomsg *ifi = msg_begin(&b, RTM_DELLINK, NLM_F_ACK, sizeof *ifi);
    if (ifi)
        ifi->ifi_family = AF_UNSPEC;
    attr_str(&b, IFLA_IFNAME, name);
    msg_end(&b);
    int s = nl_open(NETLINK_ROUTE);
    if (s < 0)
        return fb_fail(e, errno, FB_PHASE_NETWORK, "netlink socket", NULL);
    int rc = nl_talk(s, &b, IGNORE_MISSING);
    close(s);
    return rc < 0 ? fb_fail(e, -rc, FB_PHASE_NETWORK, "delete link", name) : 0;
}

/* ---------------------------------------------------------------- nf_tables */

/* One NETLINK_NETFILTER socket per process, kept open: closing one after a deletion
 * waits for an RCU grace period here (~10 ms, measured), where a batch costs ~30 us. A
 * fork's child makes its own (it must not read its parent's acks). */
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;
static int nft_sock = -1, nft_atfork;

static void nft_forked(void)
{
    if (nft_sock >= 0)
        close(nft_sock);
    nft_sock = -1;
    pthread_mutex_init(&nft_lock, NULL);
}

static void nfgen(struct nlbuf *b, int type, int flags, int family, int res_id)
{
    struct nfgenmsg *g = msg_begin(b, type, flags, sizeof *g);
    if (g) {
        g->nfgen_family = (uint8_t)family;
        g->version = NFNETLINK_V0;
        g->res_id = htons((uint16_t)res_id);
    }
}

/* Elements per message: a message's element list is one attribute, whose length is 16 bits. */
#define ELEMS_PER_MSG 512

int fb_nft_elems(int add, const char *table, const struct fb_nft_elem *el, int n,
                 struct fb_error *e)
{
    struct nlbuf b;
    buf_init(&b, 1);
    nfgen(&b, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    msg_end(&b);
    int type = (NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM);
    /* One message per run of elements of the same map. EXCL on add: a port someone
     * holds fails the whole batch, never replaced. */
    for (int i = 0, in_msg = 0; i < n; i++) {
        if (!in_msg) {
            nfgen(&b, type, NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), NFPROTO_INET, 0);
            attr_str(&b, NFTA_SET_ELEM_LIST_TABLE, table);
            attr_str(&b, NFTA_SET_ELEM_LIST_SET, el[i].set);
            nest_begin(&b, NFTA_SET_ELEM_LIST_ELEMENTS);
        }
        nest_begin(&b, 1);
        nest_begin(&b, NFTA_SET_ELEM_KEY);
        attr(&b, NFTA_DATA_VALUE, el[i].key, (size_t)el[i].key_len);
        nest_end(&b);
        if (add && el[i].data_len) {
            nest_begin(&b, NFTA_SET_ELEM_DATA);
            attr(&b, NFTA_DATA_VALUE, el[i].data, (size_t)el[i].data_len);
            nest_end(&b);
        }
        nest_end(&b);
        in_msg++;
        if (i + 1 == n || in_msg == ELEMS_PER_MSG || strcmp(el[i + 1].set, el[i].set)) {
            nest_end(&b);
            msg_end(&b);
            in_msg = 0;
        }
    }
    nfgen(&b, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    msg_end(&b);
    pthread_mutex_lock(&nft_lock);
    if (!nft_atfork && pthread_atfork(NULL, NULL, nft_forked) == 0)
        nft_atfork = 1;
    if (nft_sock < 0)
        nft_sock = nl_open(NETLINK_NETFILTER);
    if (nft_sock < 0) {
        int err = errno;
        pthread_mutex_unlock(&nft_lock);
        buf_free(&b);
        return fb_fail(e, err, FB_PHASE_NETWORK, "netlink socket", NULL);
    }
    if (b.len > 128 * 1024) { /* one sendto: a large range's batch outgrows the default */
        int size = (int)(b.len + 4096);
        if (setsockopt(nft_sock, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
            setsockopt(nft_sock, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    }
    /* On any failure the kernel aborts the whole batch: all of it, or nothing. */
    int rc = nl_talk(nft_sock, &b, !add && n == 1 ? IGNORE_MISSING : 0);
    pthread_mutex_unlock(&nft_lock);
    buf_free(&b);
    return rc < 0 ? fb_fail(e, -rc, FB_PHASE_NETWORK, add ? "add port mappings to nft table"
                                                             : "delete port mappings from nft table",
                             table)
                  : 0;
}
