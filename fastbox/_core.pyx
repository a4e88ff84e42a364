# cython: language_level=3
"""The bridge to the C core: turns a runtime plan into flat C structs, releases the GIL
for the syscalls, and turns the core's error into a Python exception.

Only fastbox.runtime imports this module. It decides nothing: every value comes from the
plan object built in Python.
"""
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport uint64_t, uint32_t

PHASES = ("", "cgroup setup", "clone", "stdio", "cgroup join", "rootfs", "pivot_root",
          "mounts", "identity", "exec", "network")
# Index in fb_report.t, by name (csrc/fb_plan.h enum fb_time).
TIMES = ("start", "cgroup_ready", "cloned", "child_start", "cgroup", "rootfs", "pivot",
         "mounts", "exec", "execed")


class CoreError(OSError):
    """A failure reported by the C core: errno, the phase it failed in, what failed."""

    def __init__(self, err, phase, what):
        super().__init__(err, what)
        self.phase = phase
        self.what = what


cdef class _Arena:
    """Owns the C memory of one plan; freed when the spawn call returns."""
    cdef list blocks
    cdef list keep  # bytes objects whose buffers the C arrays point into

    def __cinit__(self):
        self.blocks = []
        self.keep = []

    cdef void *alloc(self, size_t n, size_t size) except NULL:
        cdef void *p = calloc(n + 1, size)
        if p == NULL:
            raise MemoryError()
        self.blocks.append(<size_t>p)
        return p

    cdef const char *s(self, obj) except? NULL:
        if obj is None:
            return NULL
        cdef bytes b = obj if isinstance(obj, bytes) else (<str>obj).encode("utf-8", "surrogateescape")
        self.keep.append(b)
        return b

    cdef const char **strv(self, seq) except NULL:
        """A NULL-terminated char* array."""
        cdef Py_ssize_t n = len(seq), i
        cdef const char **v = <const char **>self.alloc(n, sizeof(char *))
        for i in range(n):
            v[i] = self.s(seq[i])
        return v

    def __dealloc__(self):
        for p in self.blocks:
            free(<void *><size_t>p)


cdef void fill_mounts(fb_plan *c, object mounts, _Arena a) except *:
    cdef Py_ssize_t i, n = len(mounts)
    cdef fb_mount *m = <fb_mount *>a.alloc(n, sizeof(fb_mount))
    for i in range(n):
        kind, src, dst, readonly, data = mounts[i]
        m[i].kind = kind
        m[i].readonly = 1 if readonly else 0
        m[i].src = a.s(src)
        m[i].dst = a.s(dst)
        m[i].data = a.s(data)
    c.mounts = m
    c.n_mounts = <int>n


cdef void fill_rootfs(fb_plan *c, object p, _Arena a) except *:
    c.lowers = a.strv(p.lowers)
    c.n_lowers = <int>len(p.lowers)
    c.scratch = a.s(p.scratch)
    c.scratch_data = a.s(p.scratch_data)
    c.upper = a.s(p.upper)
    c.work = a.s(p.work)
    c.rootfs = a.s(p.rootfs)
    etc = getattr(p, "etc_files", ())
    c.n_etc_files = <int>len(etc)
    c.etc_names = a.strv([name for name, _ in etc]) if etc else NULL
    c.etc_texts = a.strv([text for _, text in etc]) if etc else NULL
    c.overlay_opts = a.strv(p.overlay_opts)
    c.n_overlay_opts = <int>len(p.overlay_opts)
    c.readonly_root = 1 if p.readonly_root else 0
    fill_mounts(c, p.mounts, a)
    c.masked = a.strv(p.masked)
    c.n_masked = <int>len(p.masked)
    c.masked_dirs = a.strv(p.masked_dirs)
    c.n_masked_dirs = <int>len(p.masked_dirs)
    c.readonly_paths = a.strv(p.readonly_paths)
    c.n_readonly = <int>len(p.readonly_paths)
    sysctls = getattr(p, "sysctls", ())
    c.n_sysctls = <int>len(sysctls)
    c.sysctl_paths = a.strv([path for path, _ in sysctls]) if sysctls else NULL
    c.sysctl_values = a.strv([value for _, value in sysctls]) if sysctls else NULL
    c.mount_cgroup2 = 1 if p.mount_cgroup2 else 0
    c.cgroup_v1_dirs = a.strv([d for d, _ in p.cgroup_v1_mounts])
    c.cgroup_v1_opts = a.strv([o for _, o in p.cgroup_v1_mounts])
    c.n_cgroup_v1 = <int>len(p.cgroup_v1_mounts)


cdef void fill_cgroup(fb_plan *c, object p, _Arena a) except *:
    c.cg_mkdirs = a.strv(p.cg_mkdirs)
    c.n_cg_mkdirs = <int>len(p.cg_mkdirs)
    c.cg_files = a.strv([f for f, _ in p.cg_writes])
    c.cg_values = a.strv([v for _, v in p.cg_writes])
    c.n_cg_writes = <int>len(p.cg_writes)
    c.cg_join = a.strv(p.cg_join)
    c.n_cg_join = <int>len(p.cg_join)
    c.cg_into = a.s(p.cg_into)
    c.unshare_cgroupns = 1 if p.unshare_cgroupns else 0


cdef void fill_seccomp(fb_plan *c, object prog, _Arena a) except *:
    """prog: a compiled classic-BPF program (bytes, 8 per struct sock_filter), or None
    for no filter. The arena keeps it alive until the spawn returns."""
    if not prog:
        c.seccomp_prog, c.seccomp_len = NULL, 0
        return
    cdef bytes b = prog
    if len(b) % 8:
        raise ValueError("a seccomp program is a whole number of 8-byte instructions")
    a.keep.append(b)
    c.seccomp_prog = <const char *>b
    c.seccomp_len = <int>(len(b) // 8)


cdef void fill_process(fb_plan *c, object p, _Arena a) except *:
    cdef Py_ssize_t i
    c.hostname = a.s(p.hostname)
    c.argv = a.strv(p.argv)
    c.envp = a.strv(p.envp)
    c.path = a.s(p.path)
    c.cwd = a.s(p.cwd)
    c.uid = p.uid
    c.gid = p.gid
    cdef gid_t *groups = <gid_t *>a.alloc(len(p.groups), sizeof(gid_t))
    for i in range(len(p.groups)):
        groups[i] = p.groups[i]
    c.groups = groups
    c.n_groups = <int>len(p.groups)
    c.caps = <uint64_t>p.caps
    c.no_new_privs = 1 if p.no_new_privs else 0
    fill_seccomp(c, getattr(p, "seccomp_filter", None), a)
    c.loopback_up = 1 if p.loopback_up else 0
    for i in range(3):
        c.stdio[i] = p.stdio[i]
    c.console_fd = getattr(p, "console_fd", -1)
    c.console_rows, c.console_cols = getattr(p, "console_size", None) or (0, 0)
    c.join_pidfd = getattr(p, "join_pidfd", -1)
    c.join_ns_flags = getattr(p, "join_ns_flags", 0)
    c.enter_helper = a.s(getattr(p, "enter_helper", None))
    c.join_netns_fd = getattr(p, "join_netns_fd", -1)
    c.init_fd = getattr(p, "init_fd", -1)
    limits = getattr(p, "rlimits", ())
    cdef uint64_t *rl = <uint64_t *>a.alloc(3 * len(limits), sizeof(uint64_t))
    for i in range(len(limits)):
        rl[3 * i], rl[3 * i + 1], rl[3 * i + 2] = limits[i]
    c.rlimits = rl
    c.n_rlimits = <int>len(limits)
    fill_devices(c, p, a)


cdef void fill_devices(fb_plan *c, object p, _Arena a) except *:
    """dev_prog_fd: the v2 device program to attach (-1: none); devnodes: (path under
    /dev, mode with the node type, major, minor, uid, gid) for --device."""
    cdef Py_ssize_t i
    c.dev_prog_fd = getattr(p, "dev_prog_fd", -1)
    nodes = getattr(p, "devnodes", ())
    cdef fb_devnode *d = <fb_devnode *>a.alloc(len(nodes), sizeof(fb_devnode))
    for i in range(len(nodes)):
        path, mode, major, minor, uid, gid = nodes[i]
        d[i].path = a.s(path)
        d[i].mode, d[i].major, d[i].minor, d[i].uid, d[i].gid = mode, major, minor, uid, gid
    c.devnodes = d
    c.n_devnodes = <int>len(nodes)


cdef fill_plan(fb_plan *c, object plan, _Arena a):
    memset(c, 0, sizeof(fb_plan))
    c.ns_flags = plan.ns_flags
    fill_rootfs(c, plan, a)
    fill_cgroup(c, plan, a)
    fill_process(c, plan, a)


cdef object raise_or_times(int rc, fb_report *r):
    times = {TIMES[i]: r.t[i] for i in range(len(TIMES)) if r.t[i]}
    if rc < 0:
        phase = PHASES[r.err.phase] if 0 <= r.err.phase < len(PHASES) else "?"
        err = CoreError(r.err.err, phase, r.err.msg.decode(errors="replace"))
        err.times = times
        raise err
    return times


def spawn_detached(plan, monitor_argv, keep_fds, int console_fd=-1):
    """Start the container under a fastbox-monitor that is no child of ours (double
    fork; no Python runs in the new processes). monitor_argv gets "--pid N" appended;
    keep_fds are inherited by the monitor; with console_fd (the receiving end of
    plan.console_fd's socket) the container's terminal master goes to the monitor as
    --tty. Returns (pid, monitor_pid, times)."""
    cdef fb_plan c
    cdef fb_report r
    cdef fb_monitor_args m
    cdef pid_t monitor_pid = 0
    cdef int rc, i
    cdef _Arena a = _Arena()
    fill_plan(&c, plan, a)
    m.argv = a.strv(monitor_argv)
    m.argc = <int>len(monitor_argv)
    cdef int *keep = <int *>a.alloc(len(keep_fds), sizeof(int))
    for i in range(len(keep_fds)):
        keep[i] = keep_fds[i]
    m.keep_fds = keep
    m.n_keep_fds = <int>len(keep_fds)
    m.console_fd = console_fd
    with nogil:
        rc = fb_spawn_detached(&c, &m, &r, &monitor_pid)
    times = raise_or_times(rc, &r)
    return r.pid, monitor_pid, times


def spawn(plan):
    """Start the container described by plan. Returns (pid, pidfd, times) once the
    program has been exec'd; times maps TIMES names to CLOCK_MONOTONIC ns.
    Raises CoreError when any step failed (the child, if any, has been reaped)."""
    cdef fb_plan c
    cdef fb_report r
    cdef int rc
    cdef _Arena a = _Arena()
    fill_plan(&c, plan, a)
    with nogil:
        rc = fb_spawn(&c, &r)
    times = raise_or_times(rc, &r)
    return r.pid, r.pidfd, times


def take_spare_netns():
    """A new, never-used network namespace with lo up, made ahead of time on the core's
    worker thread: an fd the caller owns, or -1 when none is ready yet."""
    return fb_spare_netns_take()


def request_spare_netns():
    """Have the core's worker thread make the next spare network namespace."""
    fb_spare_netns_request()


def new_netns():
    """A new network namespace with lo up, held only by the returned fd (for pools)."""
    cdef fb_error e
    cdef int fd
    with nogil:
        fd = fb_netns_new(&e)
    if fd < 0:
        raise CoreError(e.err, PHASES[e.phase], e.msg.decode(errors="replace"))
    return fd


def load_device_program(rules):
    """Load a cgroup v2 device program (BPF_PROG_TYPE_CGROUP_DEVICE) that allows exactly
    rules, a sequence of (type, major, minor, access) as csrc/fb_devices.h defines them,
    and denies the rest. Returns its fd (close-on-exec), the caller's to keep."""
    cdef fb_error e
    cdef int fd, i, n = <int>len(rules)
    cdef _Arena a = _Arena()
    cdef fb_dev_rule *r = <fb_dev_rule *>a.alloc(n, sizeof(fb_dev_rule))
    for i in range(n):
        r[i].type, r[i].major, r[i].minor, r[i].access = rules[i]
    with nogil:
        fd = fb_devices_load(r, n, &e)
    if fd < 0:
        raise CoreError(e.err, PHASES[e.phase], e.msg.decode(errors="replace"))
    return fd


def attach_device_program(path, int prog_fd):
    """Attach a device program to the cgroup v2 directory at path (a pool's cgroups get
    it once, when they are made)."""
    cdef fb_error e
    cdef int rc
    cdef _Arena a = _Arena()
    cdef const char *p = a.s(path)
    with nogil:
        rc = fb_devices_attach_path(p, prog_fd, &e)
    if rc < 0:
        raise CoreError(e.err, PHASES[e.phase], e.msg.decode(errors="replace"))


cdef object _net_error(fb_error *e):
    return CoreError(e.err, PHASES[e.phase], e.msg.decode(errors="replace"))


def net_attach(int netns_fd, host_if, peer_if, int bridge_index, int mtu, bytes addr,
               int prefix, bytes gateway, int inner_sock=-1, bint veth_made=False,
               bytes addr6=b"", int prefix6=0, bytes gateway6=b"", bytes mac=b""):
    """A veth pair on the bridge whose container end (peer_if) is made inside netns_fd,
    both ends up, then addr/prefix and a default route via gateway (b"" for none) inside.
    addr and gateway: 4 bytes, network order (csrc/fb_net.c). inner_sock: a netlink
    socket inside netns_fd (a spare's), else a thread enters it; veth_made: the spare
    has the pair already, only the inside is left. addr6/prefix6 (16 bytes; 0: none) and
    gateway6 (b"": no IPv6 default route): an --ipv6 network's. mac: 6 bytes
    (--mac-address), or b"" for Docker's, from the IPv4 address."""
    cdef fb_net_link l
    cdef fb_error e
    cdef int rc
    cdef _Arena a = _Arena()
    l.netns_fd, l.bridge_index, l.mtu, l.prefix = netns_fd, bridge_index, mtu, prefix
    l.host_if, l.peer_if = a.s(host_if), a.s(peer_if)
    l.addr = (<const uint32_t *><const char *>addr)[0]
    l.gateway = (<const uint32_t *><const char *>gateway)[0] if gateway else 0
    memset(l.addr6, 0, 16)
    memset(l.gateway6, 0, 16)
    memset(l.mac, 0, 6)
    if len(mac) == 6:
        memcpy(l.mac, <const char *>mac, 6)
    l.prefix6 = prefix6 if len(addr6) == 16 else 0
    if l.prefix6:
        memcpy(l.addr6, <const char *>addr6, 16)
        if len(gateway6) == 16:
            memcpy(l.gateway6, <const char *>gateway6, 16)
    with nogil:
        if veth_made:
            rc = fb_net_configure(inner_sock, &l, &e)
        else:
            rc = fb_net_attach(&l, inner_sock, &e)
    if rc < 0:
        raise _net_error(&e)


def take_spare(int wait=-1):
    """The spare network namespace with what was made in it: (netns fd, netlink socket
    inside it, host veth name or None, bridge index, mtu), all ours; netns fd -1: none
    ready. wait >= 0: first wait a little for one being made of that kind (1: with a
    veth, 0: plain), without the GIL."""
    cdef fb_spare sp
    if wait >= 0:
        with nogil:
            fb_spare_take_wait(&sp, wait)
    else:
        fb_spare_take(&sp)
    name = sp.host_if.decode() if sp.bridge_index > 0 else None
    return sp.netns_fd, sp.sock, name, sp.bridge_index, sp.mtu


def request_spare(int bridge_index=0, int mtu=0):
    """Have the worker make the next spare: with a veth on this bridge if > 0."""
    fb_spare_request(bridge_index, mtu)


def request_spare_plain_first(int bridge_index, int mtu):
    """The next spare is for this bridge, but only its namespace is made now (its veth
    at a later request_spare), unless one with its veth is ready or being made."""
    fb_spare_request_plain_first(bridge_index, mtu)


def net_link_del(name):
    """Delete a link by name in our network namespace (a veth takes its peer); a link
    that is gone already is no error."""
    cdef fb_error e
    cdef int rc
    cdef _Arena a = _Arena()
    cdef const char *n = a.s(name)
    with nogil:
        rc = fb_net_link_del(n, &e)
    if rc < 0:
        raise _net_error(&e)


def nft_elems(bint add, table, elems):
    """Add (each must be new) or delete map elements in the inet table `table`, in one
    transaction. elems: (map name, key bytes, data bytes)."""
    cdef fb_error e
    cdef int rc, i, n = <int>len(elems)
    cdef _Arena a = _Arena()
    cdef fb_nft_elem *el = <fb_nft_elem *>a.alloc(n, sizeof(fb_nft_elem))
    cdef const char *t = a.s(table)
    for i in range(n):
        name, key, data = elems[i]
        el[i].set = a.s(name)
        el[i].key, el[i].key_len = a.s(key), <int>len(key)
        el[i].data, el[i].data_len = a.s(data), <int>len(data)
    with nogil:
        rc = fb_nft_elems(1 if add else 0, t, el, n, &e)
    if rc < 0:
        raise _net_error(&e)


cdef class NetRelease:
    """An endpoint's release from the host's side (csrc/fb_net_release.c), its C
    arguments made ahead of time: made while its container runs, called at its exit with
    no Python work left. elems: its map elements (map name, key, _); its lease goes if it
    still holds cid, both while its record is there; then files, in order, and dir.
    Nothing raised: each step tolerates what is gone already."""
    cdef fb_net_endpoint ep
    cdef _Arena a

    def __cinit__(self, cid, record, elems, lease, files, dir):
        cdef int i, n = <int>len(elems)
        self.a = _Arena()
        cdef fb_nft_elem *el = <fb_nft_elem *>self.a.alloc(n, sizeof(fb_nft_elem))
        for i in range(n):
            name, key, _ = elems[i]
            el[i].set = self.a.s(name)
            el[i].key, el[i].key_len = self.a.s(key), <int>len(key)
        self.ep.id, self.ep.record = self.a.s(cid), self.a.s(record)
        self.ep.lease, self.ep.dir = self.a.s(lease), self.a.s(dir)
        self.ep.ports, self.ep.n_ports = el, n
        self.ep.files, self.ep.n_files = self.a.strv(files), <int>len(files)

    def __call__(self):
        with nogil:
            fb_net_release(&self.ep)
