/* A container's network on a bridge, and port mappings in nf_tables (fb_net.c). */
#ifndef FB_NET_H
#define FB_NET_H

#include <stdint.h>
#include "fb_error.h"

struct fb_net_link {
    int netns_fd;         /* the container's network namespace */
    const char *host_if;  /* the host end's name, enslaved to the bridge */
    const char *peer_if;  /* the container end's name, made inside netns_fd ("eth0") */
    int bridge_index;
    int mtu;              /* 0: the kernel's default */
    uint32_t addr;        /* the container's IPv4 address, network order */
    int prefix;
    uint32_t gateway;     /* network order; 0: no default route (--internal) */
    int prefix6;          /* 0: no IPv6 address (a network without --ipv6) */
    unsigned char addr6[16];
    unsigned char gateway6[16]; /* all zero: no IPv6 default route */
    unsigned char mac[6];       /* all zero: 02:42 and the IPv4 address, as Docker's */
};

/* The veth pair: the host end on the bridge and up, the container end made inside
 * link->netns_fd (down until configured). */
int fb_net_veth(const struct fb_net_link *link, struct fb_error *e);

/* Inside the namespace, over sock (a NETLINK_ROUTE socket opened in it): the container
 * end up, its address, the default route. */
int fb_net_configure(int sock, const struct fb_net_link *link, struct fb_error *e);

/* A NETLINK_ROUTE socket in the calling thread's namespace. */
int fb_net_socket(void);

/* Both: the pair, then the inside, over inner_sock if >= 0, else from a short-lived
 * thread that enters the namespace. On failure nothing is left (the pair is deleted). */
int fb_net_attach(const struct fb_net_link *link, int inner_sock, struct fb_error *e);

/* Delete a link by name in the caller's namespace (a veth takes its peer with it); a
 * missing link is no error. */
int fb_net_link_del(const char *name, struct fb_error *e);

/* One element of a map in an inet-family nf_tables table: key and data as the kernel
 * stores them (concatenated fields, each padded to 4 bytes). */
struct fb_nft_elem {
    const char *set;
    const void *key;
    int key_len;
    const void *data;
    int data_len;
};

/* Add (each new: an existing key fails the whole batch) or delete elements, in one
 * transaction. */
int fb_nft_elems(int add, const char *table, const struct fb_nft_elem *elems, int n,
                 struct fb_error *e);

/* What a container's endpoint holds on the host's side (fb_net_release.c). */
struct fb_net_endpoint {
    const char *id;                   /* the name its lease holds */
    const char *record;               /* its record: ports and lease are its own while it is there */
    const struct fb_nft_elem *ports;  /* its elements in the maps of table "fastbox" (keys) */
    int n_ports;
    const char *lease;                /* NULL: none */
    const char *const *files;         /* unlinked in order: its /etc files, ..., its record */
    int n_files;
    const char *dir;                  /* removed last, if empty */
};

/* Its port mappings (while its record is there), its lease (if it still holds id), its
 * files, its directory: each step tolerates what is gone already. */
void fb_net_release(const struct fb_net_endpoint *ep);

#endif
