"""/etc/hosts, /etc/resolv.conf and /etc/hostname of a container with its own address,
written in FASTBOX_RUN/net/files/<id>/ and bind-mounted over the image's, as Docker does.

On a user-defined network, containers find each other by name through the network's name
server (fastbox/network/dns.py), as through Docker's embedded DNS: each member's /etc/hosts
holds its own lines alone, so a start costs the same with a hundred members as with one.
Only when the name server cannot run (a host program holds port 53) does each member's
file list every member's name, aliases and short id, rewritten in place (the same inode,
which the bind mount shows) when a member comes or goes, under the network's lease lock.
The default bridge has no names, as in Docker."""
import os

from fastbox import config

HOST_RESOLV = "/etc/resolv.conf"
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has only local resolvers
BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
HOSTS_MAX = 64 * 1024  # of a container's own /etc/hosts kept when it joins a network


def files_dir(cid):
    return f"{config.run_dir()}/net/files/{cid}"


def names_dir(net):
    return names_dir_of(net.id)


def names_dir_of(network_id):
    return f"{config.run_dir()}/net/names/{network_id[:12]}"


def write(cid, ip, hostname, spec, names=False, dns_at=None, gateway=None, ip6=None):
    """The three files (texts'); returns [(host path, container path)] to bind. names:
    the network has names (hosts.base keeps what is the container's own)."""
    d = files_dir(cid)
    try:
        os.mkdir(d, 0o700)
    except FileNotFoundError:
        config.private_dir(os.path.dirname(d))
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    made = texts(ip, hostname, spec, dns_at, gateway, ip6)
    if names:
        _put(f"{d}/hosts.base", made[0][1])
    return write_into(d, made)


def texts(ip, hostname, spec, dns_at=None, gateway=None, ip6=None):
    """[(name, text)] of /etc/hosts, resolv.conf and hostname for a container at ip (and
    ip6, on an --ipv6 network). dns_at: the address of its network's name server
    (fastbox.network.dns); gateway: the network's, which --add-host NAME:host-gateway
    names."""
    hosts = BASE + _added(spec, gateway) + _lines((ip, ip6), hostname)
    return [("hosts", hosts), ("resolv.conf", resolv_conf(spec, dns_at)), ("hostname", hostname + "\n")]


def _added(spec, gateway):
    """--add-host's lines (host-gateway: gateway, or the default bridge's)."""
    return "".join(f"{(gateway or _host_gateway()) if addr == 'host-gateway' else addr}\t{name}\n"
                   for name, _, addr in (item.partition(":") for item in spec.add_host))


def standalone(spec, hostname):
    """[(name, text)]: /etc/hosts, hostname and resolv.conf of a container with no address
    of its own, as Docker and Podman give them (programs resolve "localhost" and their
    own name through /etc/hosts). --network host: the host's hosts and resolv.conf; none:
    the loopback names, and resolv.conf only if --dns, --dns-search or --dns-option asked
    for one (Podman's: no server is reachable). --add-host's lines follow, as Docker's."""
    asked = spec.dns or spec.dns_search or spec.dns_option
    if spec.network == "host":
        out = [("hosts", _host_file("/etc/hosts") + _added(spec, None)),
               ("resolv.conf", resolv_conf(spec) if asked else _host_file(HOST_RESOLV))]
    else:
        out = [("hosts", BASE + _added(spec, None) + f"127.0.0.1\t{hostname}\n")]
        if asked:
            out.append(("resolv.conf", resolv_conf(spec)))
    out.append(("hostname", hostname + "\n"))
    return out


def write_into(d, texts):
    """texts' files ([(name, text)]) into d; [(host path, container path)] to bind.
    standalone()'s go into a kept container's own directory, which `rm` removes."""
    for name, text in texts:
        _put(f"{d}/{name}", text)
    return [(f"{d}/{name}", "/etc/" + name) for name, _ in texts]


def shared(cid):
    """[(host path, container path)]: the /etc files of container cid that a container
    joining its network binds, as Docker shares them (none: an ephemeral container's are
    in its own upper layer)."""
    for d in (files_dir(cid), os.path.join(config.containers_dir(), cid)):
        found = [(os.path.join(d, n), "/etc/" + n) for n in ("hosts", "resolv.conf", "hostname")
                 if os.path.exists(os.path.join(d, n))]
        if found:
            return found
    return []


_host_files = {}  # path -> (inode, mtime, text)


def _host_file(path):
    """A host file's text, read again only when it changes (one stat per start)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    cached = _host_files.get(path)
    if cached is None or cached[:2] != (st.st_ino, st.st_mtime_ns):
        try:
            with open(path) as f:
                text = f.read(HOSTS_MAX)
        except OSError:
            text = ""
        if text and not text.endswith("\n"):
            text += "\n"
        cached = _host_files[path] = (st.st_ino, st.st_mtime_ns, text)
    return cached[2]


def _host_gateway():
    """--add-host NAME:host-gateway without a network of its own: the default bridge's
    gateway, as Docker's daemon-wide host-gateway address."""
    from fastbox.network import store
    return store.default().gateway


def write_resolv(cid, conf, dns_at=None):
    """resolv.conf again, in place (the bind mount shows this inode): naming the host's
    resolvers (or --dns's), or the name server at dns_at. conf: the container's spec or
    endpoint (its dns, dns_search and dns_option)."""
    path = os.path.join(files_dir(cid), "resolv.conf")
    if os.path.exists(path):
        _put(path, resolv_conf(conf, dns_at))


def _put(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


_resolv = {}  # (dns, search, options, dns_at, host file's inode, mtime) -> text


def resolv_conf(conf, dns_at=None):
    """The host's resolv.conf without loopback resolvers (unreachable from the
    container's namespace), or --dns's servers instead of its nameservers; its search
    domains and options, or --dns-search's and --dns-option's instead. conf: the spec
    or endpoint that has them. dns_at: the network's name server instead, as Docker's
    127.0.0.11 (it forwards to those). Made again only when the host's file changes."""
    dns, search, opts = tuple(conf.dns), tuple(conf.dns_search), tuple(conf.dns_option)
    try:
        st = os.stat(HOST_RESOLV)
        key = (dns, search, opts, dns_at, st.st_ino, st.st_mtime_ns)
    except OSError:
        key = (dns, search, opts, dns_at, 0, 0)
    if key not in _resolv:
        _resolv.clear()
        _resolv[key] = _make_resolv(dns, dns_at, search, opts)
    return _resolv[key]


def _make_resolv(dns, dns_at=None, search=(), opts=()):
    try:
        with open(HOST_RESOLV) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    keep = [l for l in lines if l.split()[:1] in (["search"], ["options"], ["domain"])
            and not (search and l.split()[0] in ("search", "domain"))
            and not (opts and l.split()[0] == "options")]
    if search and search != (".",):  # "." alone: no search domain at all, as Docker's
        keep.append("search " + " ".join(s for s in search if s != "."))
    if opts:
        keep.append("options " + " ".join(opts))
    servers = list(dns) or [l.split()[1] for l in lines if l.split()[:1] == ["nameserver"]
                            and len(l.split()) > 1 and not l.split()[1].startswith("127.")
                            and l.split()[1] != "::1"]
    servers = servers or list(FALLBACK_DNS)
    if dns_at:  # as Docker writes it: where names go, and where the rest is forwarded
        return (f"nameserver {dns_at}\n" + "".join(l + "\n" for l in keep)
                + f"# ExtServers: [{' '.join(dns) if dns else 'host'}]\n")
    return "".join(f"nameserver {s}\n" for s in servers) + "".join(l + "\n" for l in keep)


def _lines(addrs, names):
    """A hosts file's lines naming each of addrs (None: left out) with names (a string)."""
    return "".join(f"{a}\t{names}\n" for a in addrs if a)


def join_names(net, cid, ip, names, changed=(), ip6=None):
    """Under the network's lock: cid's names in the network, then the hosts files that
    change (refresh_hosts). A member with an IPv6 address has a second line, which the
    name server answers AAAA queries from (csrc/dns/fb_dns.c)."""
    d = names_dir(net)
    config.private_dir(d)
    _put(os.path.join(d, cid), _lines((ip, ip6), " ".join(names)))
    refresh_hosts(net, changed)


def leave_names(net, cid, also=()):
    """also: containers whose hosts change too (one that leaves only this network)."""
    try:
        os.unlink(os.path.join(names_dir(net), cid))
    except FileNotFoundError:
        return
    refresh_hosts(net, also)


def refresh_hosts(net, changed=()):
    """After a member of net came, went or was renamed: with the network's name server
    up, only the hosts of the containers whose own part changed (changed: a connect's
    or a disconnect's); without one, every member's, which then lists each other's names."""
    from fastbox.network import dns
    if not dns.running(net):
        rewrite_hosts(net, changed)
        return
    for cid in changed:
        rewrite_own(cid)


def rewrite_hosts(net, also=()):
    """Every member's hosts: its own lines, then the members of every network it is on
    (a container connected to more than one sees the names of each)."""
    d = names_dir(net)
    try:
        members = sorted(os.listdir(d))
    except FileNotFoundError:
        return
    top = os.path.dirname(d)
    ours = set(members) | set(also)
    nets = {}  # network dir -> {member: its line}, of the networks our members are on
    for n in os.listdir(top):
        nets[n] = {}
        try:
            entries = os.listdir(os.path.join(top, n))
        except FileNotFoundError:
            continue
        if n != os.path.basename(d) and ours.isdisjoint(entries):
            continue
        for m in entries:
            try:
                with open(os.path.join(top, n, m)) as f:
                    nets[n][m] = f.read()
            except FileNotFoundError:
                pass
    for m in members + [a for a in also if a not in members]:
        peers = [text for lines in nets.values() if m in lines
                 for other, text in lines.items() if other != m]
        _rewrite(m, "".join(peers))


def rewrite_own(cid):
    """cid's hosts from its own part alone (no network with names lists peers in it)."""
    _rewrite(cid, "")


def _rewrite(cid, peers):
    fdir = files_dir(cid)
    try:
        with open(os.path.join(fdir, "hosts.base")) as f:
            base = f.read()
    except FileNotFoundError:
        return
    _put_in_place(os.path.join(fdir, "hosts"), base + peers)


def _put_in_place(path, text):
    """A bound file rewritten in place (the container's bind mount shows this inode);
    nothing if it is gone (its container was released meanwhile)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def add_own(cid, ip, hostname, ip6=None):
    """A connected network's address, under the container's hostname (as Docker's
    connect adds it), in the part of hosts that is the container's own. A container
    whose first network has no names keeps its hosts as that part."""
    fdir = files_dir(cid)
    base = os.path.join(fdir, "hosts.base")
    try:
        with open(base) as f:
            text = f.read()
    except FileNotFoundError:
        try:  # the container can write this one: as much of it as a hosts file needs, so a
            # huge one costs us no memory and is not copied (nor re-read at every rewrite)
            with open(os.path.join(fdir, "hosts"), errors="replace") as f:
                text = f.read(HOSTS_MAX)
        except FileNotFoundError:
            return
        if not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]
    _put(base, text + _lines((ip, ip6), hostname))


def drop_own(cid, ip, ip6=None):
    base = os.path.join(files_dir(cid), "hosts.base")
    try:
        with open(base) as f:
            lines = f.read().splitlines(True)
    except FileNotFoundError:
        return
    _put(base, "".join(l for l in lines if l.split("\t", 1)[0] not in (ip, ip6)))


def forget_address(cid, ip, ip6=None):
    """cid holds ip no more (disconnected from its first network): its line leaves the
    container's own part of hosts (the caller then rewrites hosts from it), or hosts
    itself, in place, when the container has no such part."""
    d = files_dir(cid)
    if os.path.exists(os.path.join(d, "hosts.base")):
        drop_own(cid, ip, ip6)
        return
    path = os.path.join(d, "hosts")
    try:  # the container can write this one: as much of it as a hosts file needs
        with open(path, errors="replace") as f:
            text = f.read(HOSTS_MAX)
    except FileNotFoundError:
        return
    _put_in_place(path, "".join(l for l in text.splitlines(True) if l.split("\t", 1)[0] not in (ip, ip6)))


def remove(cid):
    # hosts.base too even for a default-bridge container: `network connect` may have made one
    d = files_dir(cid)
    for n in ("hosts", "hosts.base", "resolv.conf", "hostname"):
        try:
            os.unlink(os.path.join(d, n))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except (FileNotFoundError, OSError):
        pass
