/* The device controller of cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program built from a
 * flat allow list (fb_devices.c). Python chooses the rules; this file only encodes them
 * as instructions and makes the bpf(2) calls. */
#ifndef FB_DEVICES_H
#define FB_DEVICES_H

#include "fb_error.h"

/* Values of the kernel's struct bpf_cgroup_dev_ctx (linux/bpf.h) */
#define FB_DEV_ANY 0   /* rule type: any device (block or char) */
#define FB_DEV_BLOCK 1 /* BPF_DEVCG_DEV_BLOCK */
#define FB_DEV_CHAR 2  /* BPF_DEVCG_DEV_CHAR */
#define FB_DEV_MKNOD 1 /* BPF_DEVCG_ACC_MKNOD */
#define FB_DEV_READ 2  /* BPF_DEVCG_ACC_READ */
#define FB_DEV_WRITE 4 /* BPF_DEVCG_ACC_WRITE */
#define FB_DEV_WILDCARD (-1) /* a major or minor that matches any number */
#define FB_DEV_MAX_RULES 1024

/* One allow rule: an access (FB_DEV_MKNOD | READ | WRITE) is allowed when its device
 * matches type, major and minor and every bit it asks for is in access. */
struct fb_dev_rule {
    int type;  /* FB_DEV_ANY, FB_DEV_BLOCK or FB_DEV_CHAR */
    int major; /* >= 0, or FB_DEV_WILDCARD */
    int minor; /* >= 0, or FB_DEV_WILDCARD */
    int access;
};

/* Loads the program that allows exactly rules[0..n) and denies the rest; returns its fd
 * (close-on-exec), or -errno with e filled. */
int fb_devices_load(const struct fb_dev_rule *rules, int n, struct fb_error *e);

/* Attaches the program to the cgroup v2 directory opened as cgroup_fd (not O_PATH), with
 * BPF_F_ALLOW_MULTI; 0, or -errno with e filled. */
int fb_devices_attach(int cgroup_fd, int prog_fd, const char *where, struct fb_error *e);

/* The same for a cgroup directory by path (pools attach once when they make theirs). */
int fb_devices_attach_path(const char *dir, int prog_fd, struct fb_error *e);

#endif
