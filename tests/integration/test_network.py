"""Networking for real: the default bridge, published ports, user networks with names,
crash sweeps. Every test runs fastbox (the CLI) and its clients inside a network namespace
it makes, fb-net-<random>, which plays the host: the bridge, veths, nft table and sysctls
all stay in it and vanish with it. Entered with nsenter --net (ip netns exec would remount
/sys and hide cgroupfs)."""
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from waiting import eventually

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
PYTHON = sys.executable


class HostNS:
    """A network namespace playing the host."""

    def __init__(self):
        self.name = f"fb-net-{os.getpid()}-{random.randrange(1 << 30)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/run/netns/{self.name}"
        self.sh("ip link set lo up")

    def cmd(self, *argv):
        return ["nsenter", f"--net={self.path}", *map(str, argv)]

    def fb(self, *args, timeout=60, input=None):
        return subprocess.run(self.cmd(FASTBOX, *args), capture_output=True, text=True,
                              timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args):
        r = self.fb(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def sh(self, script, check=True, timeout=30):
        r = subprocess.run(self.cmd("sh", "-c", script), capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, (script, r.stdout, r.stderr)
        return r

    def fetch(self, url, tries=50):
        """GET url from the host side (busybox wget: `wget -T` segfaults, so timeout)."""
        for _ in range(tries):
            r = self.sh(f"timeout 3 busybox wget -qO- {url}", check=False)
            if r.returncode == 0:
                return r.stdout
            time.sleep(0.1)
        raise AssertionError(f"no answer from {url}: {r.stderr}")

    # what the namespace holds
    def veths(self):
        out = self.sh("ip -o link show").stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                if line.split(":")[1].strip().startswith("fbv")]

    def nft_elements(self):
        r = self.sh("nft list table inet fastbox", check=False)
        return [line.strip() for line in r.stdout.splitlines() if "elements = " in line]

    def remove(self):
        ids = self.fb("ps", "-aq").stdout.split()
        if ids:
            self.fb("rm", "-f", *ids)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def hostns(busybox):
    ns = HostNS()
    try:
        yield ns
    finally:
        ns.remove()


def leases(run):
    out = []
    for root, _, files in os.walk(os.path.join(run, "net", "leases")):
        out += [os.path.join(root, f) for f in files if f != ".lock"]
    return out


def assert_nothing_left(ns, fb_env):
    # a veth goes with its container's namespace, which the kernel removes asynchronously
    eventually(lambda: ns.veths() == [], what="the veths to go")
    assert ns.nft_elements() == []
    assert leases(fb_env.run) == []
    assert os.listdir(os.path.join(fb_env.run, "net", "endpoints")) == []


def one_line_error(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr
    return lines[0]


def assert_runs_refused(ns, cases):
    """Each (args, words): `run --rm ARGS busybox true` exits 125 with one line naming words."""
    for args, words in cases:
        r = ns.fb("run", "--rm", *args, "busybox", "true")
        assert r.returncode == 125 and words in one_line_error(r), (args, r.stderr)


def assert_address_kept(ns, args, current, want, show, shown):
    """A container created with args (--network NET and --ip or --ip6) keeps its address
    across starts, current(ns, name) being want each time; once stopped it holds none: a
    `run --rm` with the same args gets it (show: its command; shown: the address as the
    fourth word of its output)."""
    ns.ok("create", "--name", "b", *args, "busybox", "sleep", "1d")
    for _ in range(2):
        ns.ok("start", "b")
        assert current(ns, "b") == want
        ns.ok("stop", "-t", "0", "b")
    assert ns.ok("run", "--rm", *args, "busybox", *show).split()[3] == shown


# ------------------------------------------------------------------ the seed's demo

def test_published_port_serves_a_page_to_the_host(hostns, fb_env, tmp_path):
    """busybox httpd -p 127.0.0.1:8080:80: the host gets the page at 127.0.0.1:8080
    (hairpin + route_localnet), `port` and `ps` show the mapping, rm leaves nothing."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from fastbox\n")
    cid = hostns.ok("run", "-d", "--name", "web", "-p", "127.0.0.1:8080:80", "-v", f"{www}:/www",
                    "busybox", "httpd", "-f", "-p", "80", "-h", "/www").strip()
    assert hostns.fetch("http://127.0.0.1:8080/") == "hello from fastbox\n"
    assert hostns.ok("port", "web").strip() == "80/tcp -> 127.0.0.1:8080"
    assert "127.0.0.1:8080->80/tcp" in hostns.ok("ps")
    settings = json.loads(hostns.ok("inspect", "web"))[0]["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert hostns.ok("inspect", "-f", '{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}',
                     "web").strip() == "8080"  # Docker's idiom
    assert settings["IPAddress"].startswith("10.66.")
    # published on 127.0.0.1 only: not on the bridge's address
    r = hostns.sh("timeout 2 busybox wget -qO- http://10.66.0.1:8080/", check=False)
    assert r.returncode != 0
    hostns.ok("rm", "-f", cid)
    assert_nothing_left(hostns, fb_env)


def test_init_layer_holds_the_etc_files_and_nothing_is_copied_up(hostns, fb_env, tmp_path):
    """Docker's init layer: the bound /etc/hosts, resolv.conf and hostname land on its
    empty files, so a bridge container's start makes nothing in its upper layer (busybox
    has none of them: each start copied /etc up and made them there), and the image's
    /etc is all still there. An image whose /etc is a symlink gets no init layer, which
    would hide it."""
    out = hostns.ok("run", "--name", "k", "busybox", "sh", "-c",
                    "cat /etc/hostname; head -1 /etc/passwd; grep -c nameserver /etc/resolv.conf")
    cid = json.loads(hostns.ok("inspect", "k"))[0]["Id"]
    assert out.split("\n")[:2] == [cid[:12], "root:x:0:0:root:/root:/bin/sh"]
    assert os.listdir(os.path.join(fb_env.root, "containers", cid, "upper")) == []

    import tarfile
    tar = tmp_path / "etc-link.tar"
    with tarfile.open(tar, "w") as t:
        for name, kind, target in (("bin", tarfile.DIRTYPE, ""), ("cfg", tarfile.DIRTYPE, ""),
                                   ("etc", tarfile.SYMTYPE, "cfg")):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname = kind, 0o755, target
            t.addfile(info)
        t.add("/bin/busybox", "bin/sh")
        info = tarfile.TarInfo("cfg/motd")
        info.size = 6
        t.addfile(info, io.BytesIO(b"hello\n"))
    hostns.ok("import", str(tar), "fastbox-test/etc-is-a-link")
    out = hostns.ok("run", "--rm", "--hostname", "linked", "fastbox-test/etc-is-a-link", "/bin/sh",
                    "-c", "read m < /etc/motd; read h < /etc/hostname; echo $m $h")
    assert out == "hello linked\n"
    hostns.ok("rm", "k")
    assert_nothing_left(hostns, fb_env)


def test_container_gets_address_route_and_etc_files(hostns):
    out = hostns.ok("run", "--rm", "--hostname", "box", "--dns", "10.1.2.3", "--add-host",
                    "db.local:10.9.9.9", "busybox", "sh", "-c",
                    "ip -o -4 addr show eth0; ip route; cat /etc/hosts /etc/resolv.conf /etc/hostname")
    assert "inet 10.66.0.2/16" in out
    assert "default via 10.66.0.1 dev eth0" in out
    assert "10.9.9.9\tdb.local" in out and "10.66.0.2\tbox" in out
    assert "nameserver 10.1.2.3" in out
    assert out.rstrip().endswith("box")


def test_add_host_host_gateway_names_the_host(hostns):
    """--add-host NAME:host-gateway, as Docker's (host.docker.internal): the network's
    gateway, where the host answers."""
    out = hostns.ok("run", "--rm", "--add-host", "host.docker.internal:host-gateway", "busybox",
                    "sh", "-c", "cat /etc/hosts; ping -c 1 -W 2 host.docker.internal")
    assert "10.66.0.1\thost.docker.internal\n" in out and "1 packets received" in out
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    out = hostns.ok("run", "--rm", "--network", "appnet", "--add-host", "host:host-gateway",
                    "busybox", "cat", "/etc/hosts")
    assert "10.70.0.1\thost\n" in out
    hostns.ok("network", "rm", "appnet")


def test_sysctl_sets_the_containers_own_namespaces_only(hostns, fb_env):
    """--sysctl, as Docker's: the namespaced ones (net.*, IPC, kernel.domainname), written
    in the container's own namespaces before it runs; the host's stay; anything else is
    refused in one line, 125."""
    files = ("/proc/sys/net/core/somaxconn", "/proc/sys/kernel/shmmax",
             "/proc/sys/fs/mqueue/msg_max", "/proc/sys/kernel/domainname")
    host_before = hostns.sh("cat " + " ".join(files)).stdout
    for net in ("bridge", "none"):
        out = hostns.ok("run", "--rm", "--network", net, "--sysctl", "net.core.somaxconn=1234",
                        "--sysctl", "kernel.shmmax=123456", "--sysctl", "fs.mqueue.msg_max=20",
                        "--sysctl", "kernel.domainname=example.test", "busybox", "cat", *files)
        assert out.split() == ["1234", "123456", "20", "example.test"], (net, out)
    # the host network is the host's; its IPC namespace is still the container's own
    out = hostns.ok("run", "--rm", "--network", "host", "--sysctl", "kernel.shmmax=4321",
                    "busybox", "cat", "/proc/sys/kernel/shmmax")
    assert out.strip() == "4321"
    assert hostns.sh("cat " + " ".join(files)).stdout == host_before
    for args, words in ((["--sysctl", "kernel.panic=1"], "not a namespaced sysctl"),
                        (["--sysctl", "net.core.somaxconn"], "expected KEY=VALUE"),
                        (["--network", "host", "--sysctl", "net.core.somaxconn=1"], "not allowed"),
                        (["--sysctl", "net.ipv4.nosuch=1"], "/proc/sys/net/ipv4/nosuch"),
                        (["--sysctl", "net.core.somaxconn=x"], "net/core/somaxconn")):
        r = hostns.fb("run", "--rm", *args, "busybox", "true")
        assert r.returncode == 125 and words in one_line_error(r), (args, r.stderr)
    assert_nothing_left(hostns, fb_env)


def test_dns_search_and_options_replace_the_hosts(hostns):
    """--dns-search and --dns-option, as Docker's: they replace the host's search
    domains and options ("." alone: no search domain)."""
    out = hostns.ok("run", "--rm", "--dns-search", "a.example", "--dns-search", "b.example",
                    "--dns-option", "ndots:2", "--dns-opt", "timeout:1", "busybox", "cat",
                    "/etc/resolv.conf")
    assert "search a.example b.example\n" in out and "options ndots:2 timeout:1\n" in out
    assert out.count("search") == 1 and out.count("options") == 1
    out = hostns.ok("run", "--rm", "--dns-search", ".", "busybox", "cat", "/etc/resolv.conf")
    assert "search" not in out and "domain" not in out


def test_container_reaches_the_host_through_the_gateway(hostns, tmp_path):
    hostns.ok("run", "--rm", "busybox", "true")  # the bridge exists from the first start
    (tmp_path / "greeting").write_text("host says hi\n")
    server = subprocess.Popen(hostns.cmd("busybox", "httpd", "-f", "-p", "10.66.0.1:8099", "-h",
                                         tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = hostns.ok("run", "--rm", "busybox", "sh", "-c",
                        "for i in 1 2 3 4 5 6 7 8 9; do timeout 3 wget -qO- "
                        "http://10.66.0.1:8099/greeting && break; sleep 0.2; done")
        assert out == "host says hi\n"
    finally:
        server.kill()
        server.wait()


def test_none_has_only_lo(hostns):
    out = hostns.ok("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    assert hostns.veths() == []


def test_none_and_host_get_their_etc_files_as_docker_gives_them(hostns, fb_env):
    """Without an address of its own a container still gets /etc/hosts (its programs
    resolve "localhost" and its own name), /etc/hostname and, on the host's network, the
    host's /etc/hosts and resolv.conf, as Docker and Podman give them. Before, busybox
    saw none of the three and `ping localhost` failed. An ephemeral container's are in
    its own upper layer (nothing of them on the host, nothing left behind); a kept one's
    in its own directory, which rm removes, and a container joining its network shares
    them."""
    out = hostns.ok("run", "--rm", "--network", "none", "--hostname", "box", "--add-host",
                    "db:10.9.9.9", "busybox", "sh", "-c",
                    "cat /etc/hosts /etc/hostname; ping -c 1 -W 2 localhost >/dev/null && "
                    "ping -c 1 -W 2 box >/dev/null && echo pinged; echo x >> /etc/hosts && echo wrote; "
                    "test -e /etc/resolv.conf || echo no-resolv")
    assert out == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.9.9.9\tdb\n"
                   "127.0.0.1\tbox\nbox\npinged\nwrote\nno-resolv\n")
    assert hostns.ok("run", "--rm", "--network", "none", "--dns", "10.1.2.3", "busybox", "cat",
                     "/etc/resolv.conf") == "nameserver 10.1.2.3\n"
    with open("/etc/hosts") as f:
        hosts = f.read()
    with open("/etc/resolv.conf") as f:
        resolv = f.read()
    out = hostns.ok("run", "--rm", "--network", "host", "--add-host", "db:10.9.9.9", "busybox",
                    "sh", "-c", "cat /etc/hosts; echo ==; cat /etc/resolv.conf; echo ==; cat /etc/hostname")
    assert out == f"{hosts}10.9.9.9\tdb\n==\n{resolv}==\n{os.uname().nodename}\n"
    assert not os.path.exists(os.path.join(fb_env.run, "net", "files")) or \
        os.listdir(os.path.join(fb_env.run, "net", "files")) == []

    # kept: its files in its directory, bound over the init layer's (its upper stays
    # empty), shared with a container that joins it, gone with rm
    hostns.ok("run", "-d", "--name", "kept", "--network", "none", "busybox", "sleep", "60")
    cid = json.loads(hostns.ok("inspect", "kept"))[0]["Id"]
    d = os.path.join(fb_env.root, "containers", cid)
    assert hostns.ok("run", "--rm", "--network", "container:kept", "busybox", "sh", "-c",
                     "cat /etc/hostname; grep localhost /etc/hosts") == f"{cid[:12]}\n127.0.0.1\tlocalhost\n" \
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
    assert os.listdir(os.path.join(d, "upper")) == []
    with open(os.path.join(d, "hostname")) as f:
        assert f.read() == cid[:12] + "\n"
    # an ephemeral one joined: it has none to share, so the joiner gets its own
    hostns.ok("run", "-d", "--rm", "--name", "gone", "--network", "none", "busybox", "sleep", "60")
    assert hostns.ok("run", "--rm", "--network", "container:gone", "busybox", "sh", "-c",
                     "cat /etc/hostname; grep -c localhost /etc/hosts") == \
        hostns.ok("exec", "gone", "hostname") + "2\n"
    hostns.ok("rm", "-f", "kept", "gone")
    assert not os.path.exists(d)


def test_a_foreground_rm_runs_etc_files_are_in_its_own_layer_unless_names_change_them(hostns, fb_env):
    """A foreground `run --rm` container is one no command can reach (no record names it,
    so no `network connect` rewrites its files): its /etc files are written into its
    tmpfs upper layer, with what the bound ones held, and nothing of them is on the host
    at any instant. On a network with names, only while the network's name server runs:
    one that starts it stays bound from the host (were the server to fail, members' hosts
    files would list each other, rewritten as members come and go)."""
    files = os.path.join(fb_env.run, "net", "files")
    script = ("cat /etc/hosts /etc/resolv.conf /etc/hostname; grep -c ' /etc/' /proc/self/mounts; "
              f"ls -A {files} 2>/dev/null | grep -c .; true")
    out = hostns.ok("run", "--rm", "--hostname", "box", "--dns", "10.1.2.3", "--add-host",
                    "gw:host-gateway", "-v", f"{fb_env.run}:{fb_env.run}", "busybox", "sh", "-c", script)
    assert out == ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.66.0.1\tgw\n"
                   "10.66.0.2\tbox\nnameserver 10.1.2.3\nbox\n0\n0\n"), out
    hostns.ok("network", "create", "named")
    out = hostns.ok("run", "--rm", "--network", "named", "-v", f"{fb_env.run}:{fb_env.run}", "busybox",
                    "sh", "-c", f"grep -c ' /etc/' /proc/self/mounts; ls {files}")
    assert out.split("\n")[0] == "3" and len(out.split("\n")[1]) == 64, out
    hostns.ok("run", "-d", "--name", "peer", "--network", "named", "busybox", "sleep", "1d")
    out = hostns.ok("run", "--rm", "--network", "named", "-h", "box", "-v", f"{fb_env.run}:{fb_env.run}",
                    "busybox", "sh", "-c", script.replace("/etc/hostname;", "/etc/hostname; ping -c1 -W2 peer "
                                                          ">/dev/null && echo reached;"))
    lines = out.split("\n")
    assert lines[2].startswith("10.67.0.3\tbox") and lines[3] == "nameserver 10.67.0.1", out
    assert lines[-4:] == ["reached", "0", "1", ""], out  # no /etc mount; only peer's files
    hostns.ok("rm", "-f", "peer")
    hostns.ok("network", "rm", "named")
    assert_nothing_left(hostns, fb_env)
    assert not os.path.exists(files) or os.listdir(files) == []


def test_host_network_shares_the_hosts_links(hostns):
    hostns.sh("ip link add fbtest-br type bridge")
    out = hostns.ok("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert "fbtest-br" in out


def test_udp_port(hostns, probe):
    """-p PORT/udp: a datagram to the host port reaches the container and its answer
    comes back (the probe's udp-echo: busybox nc has no UDP)."""
    hostns.ok("run", "-d", "--name", "echo", "-p", "127.0.0.1:5353:53/udp", probe.image,
              "/probe", "udp-echo", "53")
    eventually(lambda: "listening" in hostns.fb("logs", "echo").stdout, what="the echo server")
    for _ in range(20):
        r = subprocess.run(hostns.cmd(probe.binary, "udp-send", "127.0.0.1", "5353", "ping"),
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
    assert r.stdout.strip() == "echo:ping", r.stderr
    assert hostns.ok("port", "echo", "53/udp").strip() == "127.0.0.1:5353"


def test_random_host_ports_and_publish_all(hostns):
    cid = hostns.ok("run", "-d", "-p", "80", "-P", "--expose", "81-82", "busybox", "sleep", "60").strip()
    lines = hostns.ok("port", cid).splitlines()
    assert sorted(line.split(" -> ")[0] for line in lines) == ["80/tcp", "81/tcp", "82/tcp"]
    ports = {int(line.rsplit(":", 1)[1]) for line in lines}
    assert len(ports) == 3 and all(p >= 1024 for p in ports)


def test_large_port_ranges_publish_in_one_transaction(hostns, fb_env):
    """Docker takes ranges of any size: 1000 TCP ports and 1000 UDP ones here (their
    mappings outgrow one netlink page; a 101-port range failed with EMSGSIZE before).
    A foreground run's exit and a detached one's rm take every mapping away."""
    # The host side's connections take their ports from the ephemeral range, and one
    # the client closed first holds its port in TIME_WAIT for a minute: no bind can take
    # it, SO_REUSEADDR or not (Docker's start fails on it too). Out of the way of 30000-41999.
    hostns.sh("sysctl -qw net.ipv4.ip_local_port_range='50000 60999'")
    r = hostns.fb("run", "--rm", "-p", "9000-9999:9000-9999", "-p",
                  "127.0.0.1:20000-20999:20000-20999/udp", "busybox", "true")
    assert r.returncode == 0, r.stderr
    assert_nothing_left(hostns, fb_env)
    cid = hostns.ok("run", "-d", "-p", "9000-9999:9000-9999", "busybox",
                    "httpd", "-f", "-p", "9777", "-h", "/etc").strip()
    assert hostns.fetch("http://127.0.0.1:9777/hostname").strip() == cid[:12]
    lines = hostns.ok("port", cid).splitlines()
    assert len(lines) == 1000 and "9999/tcp -> 0.0.0.0:9999" in lines
    # ps shows the range as Docker does, not a thousand mappings
    assert hostns.ok("ps", "--format", "{{.Ports}}").strip() == "0.0.0.0:9000-9999->9000-9999/tcp"
    hostns.ok("rm", "-f", cid)
    assert_nothing_left(hostns, fb_env)
    # 12000: more keys than one argument of the monitor's may hold (E2BIG before); it
    # deletes them all at the container's exit
    cid = hostns.ok("run", "-d", "-p", "30000-41999:30000-41999", "busybox", "sleep", "1").strip()
    eventually(lambda: json.loads(hostns.ok("inspect", cid))[0]["State"]["Status"] == "exited",
               what="the container to exit")
    eventually(lambda: not hostns.nft_elements() and not leases(fb_env.run),
               what="the monitor to release the network")
    hostns.ok("rm", cid)
    assert_nothing_left(hostns, fb_env)


def test_chosen_host_ports_skip_the_ones_other_containers_map(hostns, fb_env):
    """As Docker's allocator: a host range for one container port gives each container
    the next port no one maps (a mapping holds no socket, so a bind probe alone found
    the first port free and the start failed); a random port skips mapped ones too
    (here the namespace's ephemeral range is two ports, one of them mapped)."""
    got = []
    for name in ("r1", "r2", "r3"):
        hostns.ok("run", "-d", "--name", name, "-p", "9100-9102:80", "busybox", "sleep", "60")
        got.append(hostns.ok("port", name).strip())
    assert got == [f"80/tcp -> 0.0.0.0:{p}" for p in (9100, 9101, 9102)]
    r = hostns.fb("run", "-d", "-p", "9100-9102:80", "busybox", "sleep", "60")
    assert r.returncode == 125 and "every port in the range is in use" in one_line_error(r)
    hostns.ok("rm", "-f", "r2")  # its port is free again
    hostns.ok("run", "-d", "--name", "r4", "-p", "9100-9102:80", "busybox", "sleep", "60")
    assert hostns.ok("port", "r4").strip() == "80/tcp -> 0.0.0.0:9101"

    hostns.sh("sysctl -qw net.ipv4.ip_local_port_range='40000 40001'")
    hostns.ok("run", "-d", "--name", "fixed", "-p", "40000:80", "busybox", "sleep", "60")
    for i in range(4):  # the kernel picks either port: 40001 each time
        r = hostns.fb("run", "--rm", "-p", "80", "busybox", "true")
        assert r.returncode == 0, r.stderr
    cid = hostns.ok("run", "-d", "-p", "80", "busybox", "sleep", "60").strip()
    assert hostns.ok("port", cid).strip() == "80/tcp -> 0.0.0.0:40001"
    hostns.ok("rm", "-f", cid, "fixed", "r1", "r3", "r4")
    assert_nothing_left(hostns, fb_env)


def test_publish_all_publishes_the_images_exposed_ports(hostns, tmp_path):
    """-P publishes the image's EXPOSE ports (and --expose's) on random host ports, as
    Docker does; `port` and `ps` show them and the host reaches the server through one."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM busybox\nEXPOSE 80 5353/udp\n")
    hostns.ok("build", "-q", "-t", "fbtest/exposed", "-f", str(ctx / "Containerfile"), str(ctx))
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("exposed\n")
    cid = hostns.ok("run", "-d", "-P", "--expose", "81", "-v", f"{www}:/www", "fbtest/exposed",
                    "httpd", "-f", "-p", "80", "-h", "/www").strip()
    lines = hostns.ok("port", cid).splitlines()
    mapped = {line.split(" -> ")[0]: int(line.rsplit(":", 1)[1]) for line in lines}
    assert sorted(mapped) == ["5353/udp", "80/tcp", "81/tcp"], lines
    assert len(set(mapped.values())) == 3 and all(p >= 1024 for p in mapped.values())
    assert f"0.0.0.0:{mapped['80/tcp']}->80/tcp" in hostns.ok("ps")
    assert hostns.fetch(f"http://127.0.0.1:{mapped['80/tcp']}/") == "exposed\n"
    # without -P an image's EXPOSE publishes nothing
    other = hostns.ok("run", "-d", "-p", "127.0.0.1:8089:80", "-p", "9000/udp", "fbtest/exposed",
                      "sleep", "60").strip()
    assert hostns.ok("port", other).strip().splitlines()[0] == "80/tcp -> 127.0.0.1:8089"
    # inspect shows what it exposes and binds, ps --filter finds it by them, as Docker's
    info = json.loads(hostns.ok("inspect", other))[0]
    assert set(info["Config"]["ExposedPorts"]) == {"80/tcp", "5353/udp", "9000/udp"}
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8089"}],
        "9000/udp": [{"HostIp": "", "HostPort": ""}]}
    found = hostns.ok("ps", "-q", "--no-trunc", "--filter", "expose=5353/udp").split()
    assert sorted(found) == sorted([cid, other])
    assert hostns.ok("ps", "-q", "--no-trunc", "--filter", "publish=9000/udp").split() == [other]


def test_an_address_given_again_answers_at_once(hostns):
    """A container given the address another had a moment ago is reached from the host at
    once: the host's neighbour entry for that address (still REACHABLE, since another
    container keeps the bridge up) names the same MAC, which follows from the address."""
    hostns.ok("run", "-d", "busybox", "sleep", "60")  # keeps the bridge's carrier up
    first = hostns.ok("run", "-d", "busybox", "httpd", "-f", "-p", "80").strip()
    ip = hostns.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", first).strip()
    assert _http_status(hostns, ip) == "404"  # the host's neighbour entry is made
    hostns.ok("rm", "-f", first)
    second = hostns.ok("run", "-d", "busybox", "httpd", "-f", "-p", "80").strip()
    assert hostns.ok("inspect", "-f", "{{.NetworkSettings.IPAddress}}", second).strip() == ip
    assert _http_status(hostns, ip, tries=1) == "404"
    mac = "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    assert mac in hostns.sh(f"ip neigh show {ip}").stdout


def test_the_gateways_mac_stays_as_containers_come_and_go(hostns):
    """The bridge keeps one MAC: a bridge with the kernel's random MAC takes its lowest
    port's (a veth's random host end) and changes it as containers start and exit, and
    the running containers' neighbour entries for the gateway go stale. Checked from
    inside a container that keeps running: its entry for the gateway is the bridge's."""
    def bridge_mac():
        return hostns.sh("ip -o link show fastbox0").stdout.split("link/ether")[1].split()[0]

    keeper = hostns.ok("run", "-d", "busybox", "sleep", "60").strip()
    mac = bridge_mac()
    assert mac == "02:42:0a:42:00:01"  # the gateway 10.66.0.1's
    ids = [hostns.ok("run", "-d", "busybox", "sleep", "60").strip() for _ in range(6)]
    assert bridge_mac() == mac
    hostns.ok("rm", "-f", *ids)
    assert bridge_mac() == mac
    seen = hostns.ok("exec", keeper, "sh", "-c", "ping -c1 -W2 10.66.0.1 >/dev/null; ip neigh")
    assert mac in seen, seen


def _http_status(ns, ip, tries=50):
    """The HTTP status busybox httpd answers at ip (404: it serves no index), trying
    `tries` times 3 s each."""
    for _ in range(tries):
        r = ns.sh(f"timeout 3 busybox wget -qO- http://{ip}/", check=False)
        if "404" in r.stderr:
            return "404"
        time.sleep(0.1)
    raise AssertionError(f"no answer from {ip}: {r.stderr}")


def test_no_ipv6_addresses_on_either_end_of_the_veth(hostns):
    """IPv4-only networks: neither end of a container's veth gets an IPv6 address (no
    link-local, so no duplicate detection, MLD or router solicitations per start), as
    Docker disables IPv6 on a container's interfaces on such networks; lo keeps ::1."""
    cid = hostns.ok("run", "-d", "busybox", "sh", "-c",
                    "sleep 0.5; cat /proc/net/if_inet6; sleep 60").strip()
    eventually(lambda: "lo" in hostns.ok("logs", cid), what="the container's address list")
    time.sleep(0.5)  # addrconf would have made the link-local address by now
    names = [line.split()[-1] for line in hostns.ok("logs", cid).splitlines()]
    assert names == ["lo"], names
    (veth,) = hostns.veths()
    assert hostns.sh(f"ip -6 addr show dev {veth}").stdout.strip() == ""
    # one queue each way (veth's default, one per possible CPU, is a sysfs directory each)
    assert "numtxqueues 1 numrxqueues 1" in hostns.sh(f"ip -d link show dev {veth}").stdout
    # and IPv4 still flows both ways over it
    assert "1 packets received" in hostns.ok("run", "--rm", "busybox", "ping", "-c1", "-W2", "10.66.0.1")


# ------------------------------------------------------------------ conflicts and errors

def test_port_conflict_with_a_container_is_one_line_and_125(hostns):
    hostns.ok("run", "-d", "-p", "8090:80", "busybox", "sleep", "60")
    r = hostns.fb("run", "--rm", "-p", "8090:80", "busybox", "true")
    assert r.returncode == 125
    assert "8090" in one_line_error(r) and "already allocated" in r.stderr
    # the failed start left nothing (its spare's veth goes with its namespace, async)
    eventually(lambda: len(hostns.veths()) == 1, what="only the first container's veth")


def test_a_port_on_every_address_and_on_one_address_is_one_port(hostns, fb_env):
    """As Docker's: 127.0.0.1:8080 taken, 0.0.0.0:8080 is refused (and the other way
    round), while one port on two different addresses is two ports."""
    hostns.ok("run", "-d", "--name", "a", "-p", "127.0.0.1:8080:80", "busybox", "sleep", "60")
    r = hostns.fb("run", "-d", "-p", "8080:80", "busybox", "sleep", "60")
    assert r.returncode == 125
    assert one_line_error(r) == "fastbox: Bind for 0.0.0.0:8080 failed: port is already allocated"
    hostns.ok("run", "-d", "--name", "d", "-p", "8090:80", "busybox", "sleep", "60")
    r = hostns.fb("run", "--rm", "-p", "127.0.0.1:8090:80", "busybox", "true")
    assert r.returncode == 125 and "127.0.0.1:8090 failed" in one_line_error(r)
    hostns.ok("run", "-d", "--name", "f", "-p", "127.0.0.2:8080:80", "busybox", "sleep", "60")
    assert len(hostns.nft_elements()) >= 2
    hostns.ok("rm", "-f", "a", "d", "f")
    assert_nothing_left(hostns, fb_env)


def test_port_held_by_a_host_program_is_one_line_and_125(hostns):
    listener = subprocess.Popen(hostns.cmd(PYTHON, "-c", (
        "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 8091)); s.listen(); "
        "print('listening', flush=True); time.sleep(120)")), stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline() == "listening\n"
        r = hostns.fb("run", "--rm", "-p", "8091:80", "busybox", "true")
        assert r.returncode == 125
        assert "8091" in one_line_error(r)
    finally:
        listener.kill()
        listener.wait()


@pytest.mark.parametrize("args, words", [
    (["-p", "70000"], "container port"),
    (["-p", "1.2.3:80:80"], "host address"),
    (["-p", "80/sctp"], "tcp or udp"),
    (["--network", "nosuch"], "not found"),
    (["--network", "container:nosuch", "-p", "80"], "conflicting options: port publishing"),
    (["--add-host", "nohost"], "--add-host"),
    (["--dns-search", "a b"], "--dns-search"),
    (["--dns-option", "ndots: 2"], "--dns-option"),
])
def test_bad_network_flags_are_one_line_and_125(hostns, args, words):
    r = hostns.fb("run", "--rm", *args, "busybox", "true")
    assert r.returncode == 125
    assert words in one_line_error(r)


@pytest.mark.parametrize("mode", ["host", "none"])
def test_published_ports_are_discarded_with_a_warning_on_host_and_none(hostns, fb_env, mode):
    """Docker's behaviour: the container runs, -p and -P are dropped with a warning."""
    for flag in ("-p", "-P"):
        args = [flag, "8080:80"] if flag == "-p" else [flag, "--expose", "80"]
        r = hostns.fb("run", "--rm", "--network", mode, *args, "busybox", "echo", "ran")
        assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
        assert r.stderr == f"WARNING: Published ports are discarded when using {mode} network mode\n"
    cid = hostns.ok("create", "--network", mode, "-p", "8080:80", "busybox", "true").strip()
    assert json.loads(hostns.ok("inspect", cid))[0]["HostConfig"]["PortBindings"] == {}
    assert hostns.nft_elements() == []


def test_ip_netns_exec_gives_one_line_error(hostns):
    """`ip netns exec` remounts /sys, which hides cgroupfs: one line naming it, 125."""
    r = subprocess.run(["ip", "netns", "exec", hostns.name, FASTBOX, "run", "--rm", "--network",
                        "none", "busybox", "true"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 125
    assert "cgroup" in one_line_error(r) and "nsenter" in r.stderr


# ------------------------------------------------------------------ user networks

def test_containers_on_a_user_network_reach_each_other_by_name(hostns, fb_env):
    hostns.ok("network", "create", "appnet")
    hostns.ok("run", "-d", "--name", "web", "--network", "appnet", "--network-alias", "www",
              "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    out = hostns.ok("run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
                    "for i in 1 2 3 4 5; do timeout 3 wget -qO- http://web/hostname && break; "
                    "sleep 0.2; done; timeout 3 wget -qO- http://www/hostname")
    assert len(out.split()) == 2 and out.split()[0] == out.split()[1]
    nets = json.loads(hostns.ok("network", "inspect", "appnet"))
    assert nets[0]["Subnet"] == "10.67.0.0/24"
    assert [c["Names"][:2] for c in nets[0]["Containers"].values()] == [["web", "www"]]
    # Docker's fields, as scripts read them (Go's range over a map, with its variables)
    out = hostns.ok("network", "inspect", "appnet", "-f",
                    "{{range $id, $c := .Containers}}{{$c.Name}} {{$c.IPv4Address}} "
                    "{{$c.MacAddress}} {{len $id}}{{end}}")
    assert out.split() == ["web", "10.67.0.2/24", "02:42:0a:43:00:02", "64"]
    # in use: not removable; once the container is gone, it is
    r = hostns.fb("network", "rm", "appnet")  # Docker: 1 for a failed non-run command
    assert r.returncode == 1 and "active endpoints" in one_line_error(r)
    hostns.ok("rm", "-f", "web")
    hostns.ok("network", "rm", "appnet")
    assert "appnet" not in hostns.ok("network", "ls")
    assert "fb-" not in hostns.sh("ip -o link show").stdout
    assert_nothing_left(hostns, fb_env)


def test_a_start_touches_no_other_members_hosts(hostns, fb_env):
    """Names come from the network's name server, as Docker's embedded DNS: a member's
    /etc/hosts is its own part, and a start or an exit rewrites no other member's (each
    used to rewrite every member's: 53 ms per start with a hundred members)."""
    hostns.ok("network", "create", "appnet")
    ids = [hostns.ok("run", "-d", "--network", "appnet", "busybox", "sleep", "1d").strip()
           for _ in range(6)]
    files = [os.path.join(fb_env.run, "net", "files", cid, "hosts") for cid in ids]
    before = [os.stat(f).st_mtime_ns for f in files]
    time.sleep(0.05)
    out = hostns.ok("run", "--rm", "--name", "newcomer", "--network", "appnet", "busybox", "sh",
                    "-c", f"ping -c 1 -W 2 {ids[0][:12]} >/dev/null && cat /etc/hosts")
    assert [os.stat(f).st_mtime_ns for f in files] == before
    assert ids[0][:12] not in out  # its hosts lists no peer
    assert hostns.fb("exec", ids[1], "nslookup", "newcomer").returncode != 0  # gone
    hostns.ok("rm", "-f", *ids)
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


def test_a_renamed_container_answers_to_its_new_name(hostns, fb_env):
    """As Docker's: a rename changes the name its networks' name servers answer at once,
    on each network it is on, and at every later start; the old name answers no more.
    Its aliases stay."""
    hostns.ok("network", "create", "appnet")
    hostns.ok("network", "create", "other")
    hostns.ok("run", "-d", "--name", "db", "--network", "appnet", "--network-alias", "database",
              "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "other", "db")
    hostns.ok("run", "-d", "--name", "web", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "far", "--network", "other", "busybox", "sleep", "1d")
    hostns.ok("rename", "db", "store")

    def answers(who, name):
        return hostns.fb("exec", who, "nslookup", name).returncode == 0

    for who in ("web", "far"):
        assert answers(who, "store") and not answers(who, "db")
    assert answers("web", "database")
    hostns.ok("restart", "-t", "0", "store")
    assert answers("web", "store") and not answers("web", "db")
    hostns.ok("rm", "-f", "store", "web", "far")
    hostns.ok("network", "rm", "appnet", "other")
    assert_nothing_left(hostns, fb_env)


def test_a_restart_replaces_its_last_runs_lingering_veth(hostns):
    """The kernel removes a stopped container's veth with its netns, asynchronously: the
    next start of the same container (restart) can find its veth's name still taken."""
    cid = hostns.ok("run", "-d", "--name", "again", "busybox", "sleep", "60").strip()
    hostns.ok("stop", "-t", "0", "again")
    name = "fbv" + cid[:12]
    hostns.sh(f"ip link del {name} 2>/dev/null; ip link add {name} type veth peer name fbtestpeer0")
    hostns.ok("start", "again")
    assert "inet 10." in hostns.ok("exec", "again", "ip", "-o", "-4", "addr", "show", "eth0")
    hostns.ok("rm", "-f", "again")


def test_a_lease_that_no_record_names_is_swept(hostns, fb_env):
    """A lease whose endpoint record is gone (its owner died in between) is freed by the
    sweep a dead owner triggers; a live container's lease stays."""
    from fastbox.network import endpoints
    hostns.ok("run", "-d", "--name", "live", "busybox", "sleep", "60")
    [live] = leases(fb_env.run)
    stale = os.path.join(os.path.dirname(live), "10.66.255.254")
    with open(stale, "w") as f:
        f.write("f" * 64)
    assert endpoints.sweep() == 1
    assert leases(fb_env.run) == [live]
    hostns.ok("rm", "-f", "live")
    assert_nothing_left(hostns, fb_env)


def test_an_empty_lease_is_swept_with_its_dead_owners_record(hostns, fb_env):
    """A start killed between creating its lease file (O_EXCL, under the network's lock)
    and writing its name in it leaves an empty lease beside its record: the dead owner's
    release frees it, and so does the sweep of unrecorded leases (CI saw such leases left
    after an engine was SIGKILLed among run -d starts)."""
    from fastbox.network import endpoints
    hostns.ok("run", "-d", "--name", "live", "busybox", "sleep", "60")
    [live] = leases(fb_env.run)
    where = os.path.dirname(live)
    for ip in ("10.66.255.253", "10.66.255.254"):
        open(os.path.join(where, ip), "w").close()
    assert endpoints.sweep() == 2
    assert leases(fb_env.run) == [live]
    hostns.ok("rm", "-f", "live")
    assert_nothing_left(hostns, fb_env)


def test_a_record_being_written_is_not_swept_from_under_its_writer(hostns, fb_env):
    """A record is written under a name that says who writes it, and is empty for an
    instant: a sweep then (a concurrent start's, on a port clash) must leave it while its
    writer lives, or the writer's rename fails; one whose writer died goes, whatever it
    holds (a SIGKILLed engine leaves one empty)."""
    from fastbox.network import endpoints
    hostns.ok("run", "-d", "--name", "live", "busybox", "sleep", "60")  # makes the directory
    d = endpoints.endpoints_dir()
    writing = os.path.join(d, f"{'a' * 64}.{endpoints.my_owner()}.tmp")  # this process's
    dead = os.path.join(d, f"{'b' * 64}.999999-1.tmp")
    old_form = os.path.join(d, f"{'c' * 64}.tmp")
    for path in (writing, dead, old_form):
        open(path, "w").close()
    endpoints.sweep()
    assert os.path.exists(writing) and not os.path.exists(dead) and not os.path.exists(old_form)
    os.unlink(writing)
    hostns.ok("rm", "-f", "live")
    assert_nothing_left(hostns, fb_env)


def test_default_bridge_has_no_names(hostns):
    hostns.ok("run", "-d", "--name", "quiet", "busybox", "sleep", "60")
    # --dns 127.0.0.1: a query for the name is refused at once, where the host's resolver
    # (unreachable from this namespace) made the lookup wait out its 5 s
    r = hostns.fb("run", "--rm", "--dns", "127.0.0.1", "busybox", "ping", "-c1", "-W1", "quiet")
    assert r.returncode != 0


def test_user_network_with_subnet_gateway_and_internal(hostns):
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "--gateway", "10.70.0.254",
              "--internal", "priv")
    out = hostns.ok("run", "--rm", "--network", "priv", "busybox", "sh", "-c",
                    "ip -o -4 addr show eth0; ip route")
    assert "10.70.0.1/24" in out and "default via 10.70.0.254" in out
    assert "drop" in hostns.sh("nft list chain inet fastbox forward").stdout
    r = hostns.fb("network", "create", "--subnet", "10.70.0.0/25", "other")
    assert r.returncode == 1 and "overlaps" in one_line_error(r)
    # --format, as Docker's: its fields (and the subnet), an unknown one an error
    rows = hostns.ok("network", "ls", "--format", "{{.Name}} {{.Subnet}} {{.Internal}}")
    assert "priv 10.70.0.0/24 true" in rows.splitlines(), rows
    assert hostns.ok("network", "ls", "--format", "table {{.Name}}").splitlines()[0] == "NAME"
    r = hostns.fb("network", "ls", "--format", "{{.Nope}}")
    assert r.returncode == 1 and "Nope" in one_line_error(r)
    hostns.ok("network", "prune", "-f")
    assert hostns.ok("network", "ls", "-q").split() == ["000000000000"]
    assert "drop" not in hostns.sh("nft list chain inet fastbox forward").stdout


SPARES_SCRIPT = r"""
import json, os, fastbox
from fastbox.runtime import spare
made = []
take = spare.netns
def netns(spec):
    sp = take(spec)
    made.append(sp is not None and sp.host_if is not None)
    return sp
spare.netns = netns
host = os.readlink("/proc/thread-self/ns/net")
outs, held = [], []
def hold(pid):  # every namespace stays alive to the end: no inode number is used twice
    held.append(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY))
for _ in range(8):
    r = fastbox.run("busybox", ["sh", "-c", "readlink /proc/self/ns/net; ls /sys/class/net; "
                                "ip -o -4 addr show eth0 | wc -l; sleep 0.1; "
                                "ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -c6-; "
                                "cat /sys/class/net/eth0/address; grep -c . /proc/net/if_inet6; "
                                "ping -c1 -W2 10.66.0.1 >/dev/null && echo pinged"], network="bridge",
                    capture_output=True, on_start=hold)
    outs.append(r.stdout.decode().split())
tasks = {os.readlink(f"/proc/self/task/{t}/ns/net") for t in os.listdir("/proc/self/task")}
print(json.dumps({"outs": outs, "made": made, "home": tasks == {host}}))
"""


def test_back_to_back_bridge_runs_each_get_a_new_namespace_and_veth(hostns):
    """A process's foreground bridge containers take spares made in two halves: the
    namespace during the previous container's run, its veth once that one exited (the
    worker enters the namespace for a netlink socket, and comes back). Each container's
    namespace is new, holds only lo and its eth0 with one address, and no thread of the
    process stays in a namespace it handed out."""
    r = subprocess.run(hostns.cmd(PYTHON, "-I", "-c", SPARES_SCRIPT), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    spaces = [o[0] for o in got["outs"]]
    assert len(set(spaces)) == len(spaces)
    assert all(o[1:4] == ["eth0", "lo", "1"] for o in got["outs"]), got["outs"]
    # a spare's eth0, made ahead of its address: its MAC still follows from the address,
    # it has no IPv6 address (lo's ::1 alone), and traffic flows
    for o in got["outs"]:
        ip, mac, inet6, pinged = o[4:]
        assert mac == "02:42:" + ":".join(f"{int(b):02x}" for b in ip.split(".")), o
        assert (inet6, pinged) == ("1", "pinged"), o
    # some took a spare with its veth made (how many is the machine's timing: a veth
    # still being made when the next start takes its namespace is made by that start)
    assert any(got["made"][2:]), got["made"]
    assert got["home"]
    eventually(lambda: hostns.veths() == [], what="the veths to go")


def test_network_container_mode_shares_the_namespace(hostns):
    hostns.ok("run", "-d", "--name", "first", "busybox", "sleep", "60")
    a = hostns.ok("exec", "first", "ip", "-o", "-4", "addr", "show", "eth0").split()[3]
    b = hostns.ok("run", "--rm", "--network", "container:first", "busybox", "ip", "-o", "-4",
                  "addr", "show", "eth0").split()[3]
    assert a == b
    hosts = hostns.ok("run", "--rm", "--network", "container:first", "busybox", "cat", "/etc/hosts")
    assert hostns.ok("exec", "first", "cat", "/etc/hosts") == hosts
    # as Docker: its hostname too (it shares first's /etc/hostname), and what would set
    # its own hostname or /etc files is refused
    first = hostns.ok("exec", "first", "hostname")
    assert hostns.ok("run", "--rm", "--network", "container:first", "busybox", "sh", "-c",
                     "hostname; echo $HOSTNAME; cat /etc/hostname") == first * 3
    for args, words in ((["--hostname", "h"], "hostname"), (["--dns", "1.1.1.1"], "dns"),
                        (["--add-host", "a:1.2.3.4"], "custom host-to-IP mapping"),
                        (["--expose", "80"], "port exposing")):
        r = hostns.fb("run", "--rm", "--network", "container:first", *args, "busybox", "true")
        assert r.returncode == 125
        assert one_line_error(r) == f"fastbox: conflicting options: {words} and the network mode"


# ------------------------------------------------------------------ addresses under load

def test_fifty_concurrent_starts_never_share_an_address(hostns, fb_env):
    procs = [subprocess.Popen(hostns.cmd(FASTBOX, "run", "-d", "busybox", "sleep", "120"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(50)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids.append(out.strip())
    addrs = [json.loads(hostns.ok("inspect", cid))[0]["NetworkSettings"]["IPAddress"] for cid in ids]
    assert len(set(addrs)) == 50 and all(addrs)
    assert len(leases(fb_env.run)) == 50
    hostns.ok("rm", "-f", *ids)
    assert_nothing_left(hostns, fb_env)


def test_concurrent_starts_choosing_from_one_range_each_get_their_own_port(hostns, fb_env):
    """Twelve `run -d -p 9200-9300:80` at once: each start that finds its choice taken
    by another chooses again, and the records being written are never swept from under
    their writers (a sweep deleted one being written: its rename failed, a traceback)."""
    procs = [subprocess.Popen(hostns.cmd(FASTBOX, "run", "-d", "-p", "9200-9300:80", "busybox",
                                         "sleep", "120"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(12)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 12, [err for _, err in results]
    ports = hostns.ok("ps", "--format", "{{.Ports}}").split()
    assert len(set(ports)) == 12
    hostns.ok("rm", "-f", *[out.strip() for out, _ in results])
    assert_nothing_left(hostns, fb_env)


def test_address_is_reused_after_rm_and_reclaimed_from_a_dead_owner(hostns, fb_env):
    first = hostns.ok("run", "-d", "busybox", "sleep", "60").strip()
    ip = json.loads(hostns.ok("inspect", first))[0]["NetworkSettings"]["IPAddress"]
    hostns.ok("rm", "-f", first)
    second = hostns.ok("run", "-d", "busybox", "sleep", "60").strip()
    assert json.loads(hostns.ok("inspect", second))[0]["NetworkSettings"]["IPAddress"] == ip


LAST_ADDRESS_SCRIPT = r"""
import json, subprocess, sys, fastbox
ip = ["sh", "-c", "ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -c6-"]
first = fastbox.run("busybox", ip, network="bridge", capture_output=True).stdout.decode().strip()
# another process's container takes the address the first one freed (the lowest)
other = subprocess.run([sys.argv[1], "run", "-d", "busybox", "sleep", "60"], check=True,
                       capture_output=True, text=True).stdout.strip()
held = json.loads(subprocess.run([sys.argv[1], "inspect", other], check=True, capture_output=True,
                                 text=True).stdout)[0]["NetworkSettings"]["IPAddress"]
again = fastbox.run("busybox", ip, network="bridge", capture_output=True)
print(json.dumps({"first": first, "held": held, "again": again.stdout.decode().strip(),
                  "code": again.exit_code, "other": other}))
"""


def test_a_process_tries_its_last_address_first_and_moves_on_if_it_is_taken(hostns, fb_env):
    """A process's next container tries the address its last one had (one stat, where
    the lowest free one needs the leases' listing); held meanwhile by another process's
    container, it takes the lowest free one instead, and the start does not fail."""
    r = subprocess.run(hostns.cmd(PYTHON, "-I", "-c", LAST_ADDRESS_SCRIPT, FASTBOX),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    hostns.ok("rm", "-f", got["other"])
    assert got["first"] == got["held"] == "10.66.0.2", got
    assert (got["code"], got["again"]) == (0, "10.66.0.3"), got
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ crashes

def sigkill_a_starting_run(hostns, fb_env, *network):
    """A foreground `run -p` (with network's options) killed at a random point of its
    start (or once running): the next fastbox command sweeps its veth, port entries,
    lease and files, and the port is free again."""
    hostns.ok("run", "--rm", *network, "busybox", "true")  # the bridge and table exist
    p = subprocess.Popen(hostns.cmd(FASTBOX, "run", "--rm", *network, "-p", "9000:80", "busybox",
                                    "sleep", "60"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.uniform(0.0, 0.4))
    p.send_signal(signal.SIGKILL)
    p.wait()

    def swept():
        hostns.fb("ps")
        return not hostns.veths() and not hostns.nft_elements() and not leases(fb_env.run)

    eventually(swept, what="the next command to sweep the dead run's network")
    hostns.ok("run", "--rm", *network, "-p", "9000:80", "busybox", "true")


@pytest.mark.parametrize("round_", range(4))
def test_sigkill_of_a_starting_run_leaves_nothing_after_the_next_command(hostns, fb_env, round_):
    sigkill_a_starting_run(hostns, fb_env)


def test_killed_detached_container_is_cleaned_by_rm(hostns, fb_env):
    cid = hostns.ok("run", "-d", "-p", "9001:80", "busybox", "sleep", "60").strip()
    pid = json.loads(hostns.ok("inspect", cid))[0]["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: json.loads(hostns.ok("inspect", cid))[0]["State"]["Status"] == "exited",
               what="the container to be seen exited")
    hostns.ok("rm", cid)
    assert_nothing_left(hostns, fb_env)


def test_teardown_never_needs_the_containers_netns(hostns, fb_env):
    """The sweep works from the record and the host's side alone: with the container's
    namespace long gone (the veth went with it) and its monitor killed before it could
    release anything, its port entries and lease still go."""
    cid = hostns.ok("run", "-d", "-p", "9002:80", "busybox", "sleep", "60").strip()
    info = json.loads(hostns.ok("inspect", cid))[0]
    os.kill(info["MonitorPid"], signal.SIGKILL)
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    eventually(lambda: not hostns.veths(), what="the veth to go with the namespace")
    assert hostns.nft_elements()
    hostns.ok("rm", cid)
    assert_nothing_left(hostns, fb_env)


def test_udp_flow_seen_before_the_port_was_published_reaches_the_container(hostns, probe):
    """A client that sent to a UDP port before it was published left an un-NATed
    conntrack entry; publishing the port flushes it, so the same flow (same source port)
    then reaches the container."""
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 40404)); s.settimeout(2)\n"
        "s.sendto(b'early', ('127.0.0.1', 5354))\n"
        "if sys.argv[1] == 'wait':\n"
        "    try:\n"
        "        print(s.recv(100).decode())\n"
        "    except OSError as e:\n"
        "        print('no answer', e)\n")
    hostns.ok("run", "--rm", "busybox", "true")  # the bridge and table exist
    subprocess.run(hostns.cmd(PYTHON, "-c", client, "send"), check=True)  # the stale entry
    hostns.ok("run", "-d", "--name", "late", "-p", "127.0.0.1:5354:53/udp", probe.image,
              "/probe", "udp-echo", "53")
    eventually(lambda: "listening" in hostns.fb("logs", "late").stdout, what="the echo server")
    r = subprocess.run(hostns.cmd(PYTHON, "-c", client, "wait"), capture_output=True, text=True)
    assert r.stdout.strip() == "echo:early", r.stdout + r.stderr


def test_stats_shows_net_io(hostns):
    cid = hostns.ok("run", "-d", "-p", "127.0.0.1:8095:80", "busybox", "httpd", "-f", "-p", "80",
                    "-h", "/etc").strip()
    hostns.fetch("http://127.0.0.1:8095/hostname")
    row = next(line for line in hostns.ok("stats", "--no-stream").splitlines()
               if line.startswith(cid[:12]))
    received, sent = row.split("   ")[5].split(" / ")  # NET I/O: more than nothing each way
    assert received.strip() not in ("0B", "--") and sent.strip() not in ("0B", "--"), row


def _udp_listener(ns, port):
    """A UDP socket on the host side's 127.0.0.1:port; prints what it got within 2 s."""
    return subprocess.Popen(ns.cmd(PYTHON, "-c", (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('127.0.0.1', {port})); s.settimeout(2); print('ready', flush=True)\n"
        "try:\n    print(s.recv(100).decode())\nexcept OSError:\n    print('nothing')")),
        stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("guarded", [True, False])
def test_container_cannot_reach_the_hosts_loopback(hostns, probe, guarded):
    """The attack on route_localnet (CVE-2020-8558): with NET_RAW (a default capability),
    a container sends a frame to the bridge's MAC addressed to 127.0.0.1. route_localnet,
    which 127.0.0.1-published ports need, would let the host accept it; fastbox's guard
    chain drops it. Without the guard (the control case), the host's 127.0.0.1 service
    gets it: the attack is real."""
    hostns.ok("run", "--rm", "busybox", "true")  # the bridge and table exist
    if not guarded:
        hostns.sh("nft flush chain inet fastbox guard")
    listener = _udp_listener(hostns, 5399)
    try:
        assert listener.stdout.readline() == "ready\n"
        out = hostns.ok("run", "--rm", probe.image, "sh", "-c",
                        "ip=$(ip -o -4 addr show eth0 | awk '{print $4}' | cut -d/ -f1); "
                        "ping -c1 -W1 10.66.0.1 >/dev/null; "  # the bridge's MAC, from ARP
                        "mac=$(awk '$1 == \"10.66.0.1\" {print $4}' /proc/net/arp); "
                        "/probe rawudp eth0 $mac $ip 127.0.0.1 5399 sneaky")
        assert "sent" in out
        got = listener.stdout.readline().strip()
    finally:
        listener.kill()
        listener.wait()
    assert got == ("nothing" if guarded else "sneaky")


def test_detached_container_releases_its_network_when_it_exits(hostns, fb_env):
    """As Docker does at stop: the monitor deletes the port mappings and frees the lease
    and files as the container exits; the kept record stays for `start`/`rm`."""
    cid = hostns.ok("run", "-d", "-p", "9003:80", "-p", "9004:81/udp", "busybox", "sleep", "1").strip()
    eventually(lambda: json.loads(hostns.ok("inspect", cid))[0]["State"]["Status"] == "exited",
               what="the container to exit")
    eventually(lambda: not hostns.nft_elements() and not leases(fb_env.run),
               what="the monitor to release the network")
    assert not os.listdir(os.path.join(fb_env.run, "net", "endpoints"))
    hostns.ok("start", cid)  # a restart gets an address and its ports again
    assert "9003" in hostns.ok("port", cid)
    hostns.ok("rm", "-f", cid)
    assert_nothing_left(hostns, fb_env)


class RemoteNS:
    """Another machine: a namespace joined to the one playing the host by a veth,
    192.0.2.2 there, 192.0.2.1 on the host (TEST-NET-1, inside these namespaces only)."""

    def __init__(self, host):
        self.name = host.name + "-r"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/run/netns/{self.name}"
        host.sh(f"ip link add fbremote type veth peer name eth0 netns {self.name} && "
                "ip addr add 192.0.2.1/24 dev fbremote && ip link set fbremote up")
        self.sh("ip link set lo up && ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up")

    def sh(self, script, check=True):
        r = subprocess.run(["nsenter", f"--net={self.path}", "sh", "-c", script],
                           capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, (script, r.stdout, r.stderr)
        return r

    def remove(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def test_host_firewall_dropping_forwarded_traffic_and_the_readmes_rules(hostns, tmp_path):
    """The README's account of a host firewall whose forward chain drops (another table's
    drop is final, whatever fastbox's own table accepts): with it, a published port is
    unreachable from another machine and a container cannot reach one; with the three
    rules the README gives, both work again."""
    remote = RemoteNS(hostns)
    try:
        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("through the firewall\n")
        hostns.ok("run", "-d", "-p", "8080:80", "-v", f"{www}:/www", "busybox", "httpd", "-f",
                  "-p", "80", "-h", "/www")
        fetch = "timeout 3 busybox wget -qO- http://192.0.2.1:8080/"
        ping = ["run", "--rm", "busybox", "ping", "-c1", "-W2", "192.0.2.2"]
        eventually(lambda: remote.sh(fetch, check=False).stdout == "through the firewall\n",
                   what="the published port to answer the other machine")
        assert hostns.fb(*ping).returncode == 0
        hostns.sh("nft add table inet filter && nft add chain inet filter forward "
                  "'{ type filter hook forward priority 0; policy drop; }'")
        assert remote.sh(fetch, check=False).returncode != 0
        assert hostns.fb(*ping).returncode != 0
        for rule in ('iifname "fastbox0" accept',
                     'oifname "fastbox0" ct state established,related accept',
                     'oifname "fastbox0" ct status dnat accept'):
            hostns.sh(f"nft add rule inet filter forward {rule}")
        assert remote.sh(fetch).stdout == "through the firewall\n"
        assert hostns.fb(*ping).returncode == 0
    finally:
        remote.remove()
