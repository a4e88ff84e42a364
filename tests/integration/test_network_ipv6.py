"""IPv6 on user networks (`network create --ipv6`) for real: containers get an address,
a default route and names over IPv6, their published ports answer on the host's IPv6
addresses, their traffic leaves masqueraded, and nothing is left after rm or a crash. Run
in a namespace playing the host (HostNS of test_network), with another "machine" joined
to it (RemoteNS) at fd99::2."""
import json
import os
import signal
import subprocess
import time

import pytest
from waiting import eventually

from test_network import (RemoteNS, assert_address_kept, assert_nothing_left,  # noqa: F401
                          assert_runs_refused, hostns, one_line_error, sigkill_a_starting_run)  # (hostns: a fixture)

NET = ("network", "create", "--ipv6", "--subnet", "10.80.0.0/24", "--subnet", "fd00:80::/64")


def six(ns, name, dev="eth0"):
    """The container's global IPv6 addresses on dev."""
    out = ns.ok("exec", name, "ip", "-o", "-6", "addr", "show", "dev", dev, "scope", "global")
    return [line.split()[3] for line in out.splitlines()]


@pytest.fixture
def remote(hostns):
    r = RemoteNS(hostns)
    hostns.sh("ip -6 addr add fd99::1/64 dev fbremote nodad")
    r.sh("ip -6 addr add fd99::2/64 dev eth0 nodad")
    try:
        yield r
    finally:
        r.remove()


def test_containers_get_addresses_routes_and_names_over_ipv6(hostns, fb_env):
    hostns.ok(*NET, "six")
    cid = hostns.ok("run", "-d", "--name", "a", "--network", "six", "--network-alias", "db",
                    "busybox", "sleep", "1d").strip()
    # its IPv6 address: the network's prefix and its IPv4 address (10.80.0.2 = a50:2)
    assert six(hostns, "a") == ["fd00:80::a50:2/64"]
    routes = hostns.ok("exec", "a", "ip", "-6", "route")
    assert "default via fd00:80::1 dev eth0" in routes
    assert f"fd00:80::a50:2\t{cid[:12]}\n" in hostns.ok("exec", "a", "cat", "/etc/hosts")
    settings = json.loads(hostns.ok("inspect", "a"))[0]["NetworkSettings"]
    assert (settings["GlobalIPv6Address"], settings["GlobalIPv6PrefixLen"],
            settings["IPv6Gateway"]) == ("fd00:80::a50:2", 64, "fd00:80::1")
    assert settings["Networks"]["six"]["GlobalIPv6Address"] == "fd00:80::a50:2"
    net = json.loads(hostns.ok("network", "inspect", "six"))[0]
    assert net["EnableIPv6"] is True
    assert {"Subnet": "fd00:80::/64", "Gateway": "fd00:80::1"} in net["IPAM"]["Config"]
    assert [m["IPv6Address"] for m in net["Containers"].values()] == ["fd00:80::a50:2/64"]
    # another member reaches it by name and alias over IPv6: the name server answers AAAA
    out = hostns.ok("run", "--rm", "--network", "six", "busybox", "sh", "-c",
                    "nslookup -type=AAAA db && ping6 -c1 -W2 a && ping6 -c1 -W2 fd00:80::1")
    assert "fd00:80::a50:2" in out and "1 packets received" in out
    hostns.ok("rm", "-f", "a")
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_a_network_without_ipv6_gives_none(hostns, fb_env):
    hostns.ok("run", "-d", "--name", "plain", "busybox", "sleep", "1d")
    assert six(hostns, "plain") == []
    assert json.loads(hostns.ok("inspect", "plain"))[0]["NetworkSettings"]["GlobalIPv6Address"] == ""
    r = hostns.fb("network", "create", "--subnet", "fd00:81::/64", "nov6")
    assert r.returncode == 1 and "needs --ipv6" in one_line_error(r)  # as network create's others


def test_published_ports_answer_on_ipv6_and_traffic_leaves_masqueraded(hostns, fb_env, remote,
                                                                       tmp_path):
    """-p 8080:80 on an --ipv6 network is published on the host's IPv6 addresses too:
    another machine fetches the page at [fd99::1]:8080. The container reaches that machine,
    which has no route back to fd00:80::/64: only as the host's address (masquerade)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("over ipv6\n")
    hostns.ok(*NET, "six")
    cid = hostns.ok("run", "-d", "--network", "six", "-p", "8080:80", "-p", "5300:53/udp",
                    "-v", f"{www}:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www").strip()
    fetch = "timeout 3 busybox wget -qO- http://[fd99::1]:8080/"
    eventually(lambda: remote.sh(fetch, check=False).stdout == "over ipv6\n",
               what="the published port to answer over IPv6")
    assert hostns.fetch("http://192.0.2.1:8080/") == "over ipv6\n"  # and over IPv4
    ports = hostns.ok("port", cid)
    assert "80/tcp -> [::]:8080" in ports and "53/udp -> [::]:5300" in ports
    assert "[::]:8080->80/tcp" in hostns.ok("ps", "--format", "{{.Ports}}")
    assert "fd00:80::a50:2 . 80" in hostns.sh("nft list map inet fastbox tcp6_any").stdout
    out = hostns.ok("run", "--rm", "--network", "six", "busybox", "ping6", "-c1", "-W3", "fd99::2")
    assert "1 packets received" in out
    hostns.ok("rm", "-f", cid)  # its monitor deletes both families' elements
    assert hostns.nft_elements() == []
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_a_foreground_run_releases_its_ipv6_ports(hostns, fb_env):
    hostns.ok(*NET, "six")
    seen = hostns.ok("run", "--rm", "--network", "six", "-p", "8181:81", "busybox", "sh", "-c",
                     "ip -o -6 addr show dev eth0 scope global")
    assert "fd00:80::a50:2/64" in seen
    assert hostns.nft_elements() == []
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_a_port_held_on_ipv6_only_is_refused(hostns, fb_env):
    """A host program listening on [::]:8282 alone: an --ipv6 network's container cannot
    publish 8282 (it would take the program's IPv6 connections); a default-bridge one,
    IPv4 only, can."""
    hostns.ok(*NET, "six")
    holder = subprocess.Popen(hostns.cmd(
        "python3", "-c",
        "import socket,sys; s=socket.socket(socket.AF_INET6); "
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); s.bind(('::', 8282)); "
        "s.listen(); print('up', flush=True); sys.stdin.read()"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "up\n"
        r = hostns.fb("run", "--rm", "--network", "six", "-p", "8282:80", "busybox", "true")
        assert r.returncode == 125 and "8282" in one_line_error(r)
        hostns.ok("run", "--rm", "-p", "8282:80", "busybox", "true")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_connect_adds_an_ipv6_address_without_a_route(hostns, fb_env):
    hostns.ok(*NET, "six")
    hostns.ok("run", "-d", "--name", "c", "busybox", "sleep", "1d")  # default bridge
    hostns.ok("network", "connect", "six", "c")
    assert six(hostns, "c", "eth1") == ["fd00:80::a50:2/64"]
    assert "default" not in hostns.ok("exec", "c", "ip", "-6", "route")  # the first network's
    nets = json.loads(hostns.ok("inspect", "c"))[0]["NetworkSettings"]["Networks"]
    assert nets["six"]["GlobalIPv6Address"] == "fd00:80::a50:2"
    hostns.ok("network", "disconnect", "six", "c")
    assert "fd00:80::" not in hostns.ok("exec", "c", "ip", "-6", "addr")
    hostns.ok("rm", "-f", "c")
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_killed_monitor_and_container_leave_no_ipv6_entry_after_rm(hostns, fb_env):
    """The record names both families' elements: with the container's namespace gone and
    its monitor killed before it released anything, rm deletes the IPv6 ones too."""
    hostns.ok(*NET, "six")
    cid = hostns.ok("run", "-d", "--network", "six", "-p", "8383:80", "busybox", "sleep", "1d").strip()
    assert any("fd00:80::a50:2" in e for e in hostns.nft_elements())
    info = json.loads(hostns.ok("inspect", cid))[0]
    os.kill(info["MonitorPid"], signal.SIGKILL)
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    eventually(lambda: not hostns.veths(), what="the veth to go with the namespace")
    hostns.ok("rm", cid)
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


@pytest.mark.parametrize("round_", range(2))
def test_sigkill_of_a_starting_ipv6_run_leaves_nothing_after_the_next_command(hostns, fb_env, round_):
    hostns.ok(*NET, "six")
    sigkill_a_starting_run(hostns, fb_env, "--network", "six")
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_the_default_bridge_gets_ipv6_from_the_config_file(hostns, fb_env, monkeypatch):
    """As Docker's daemon.json: "ipv6": true with "fixed-cidr-v6"; without the prefix,
    one line and exit 125 (the start cannot choose the default bridge's addresses)."""
    path = os.path.join(fb_env.tmp, "config.json")
    monkeypatch.setenv("FASTBOX_CONFIG", path)
    with open(path, "w") as f:
        json.dump({"ipv6": True}, f)
    r = hostns.fb("run", "--rm", "busybox", "true")
    assert r.returncode == 125 and "fixed-cidr-v6" in one_line_error(r)
    with open(path, "w") as f:
        json.dump({"ipv6": True, "fixed-cidr-v6": "fd00:66::/64"}, f)
    out = hostns.ok("run", "--rm", "busybox", "sh", "-c",
                    "ip -o -6 addr show dev eth0 scope global; ping6 -c1 -W2 fd00:66::1")
    assert "fd00:66::a42:2/64" in out and "1 packets received" in out
    assert_nothing_left(hostns, fb_env)


def test_a_bridge_an_earlier_fastbox_made_is_brought_up_to_date(hostns, fb_env):
    """fastbox before IPv6 kept its maps and rules in `ip fastbox`, and left IPv6 on in
    its bridges (router advertisements taken). Its bridge is still there after an
    upgrade: the first start that uses it makes `inet fastbox` with the network's rules,
    deletes the old table in the same transaction (its DNAT entries would answer ports
    the new one maps to other containers), and turns IPv6 off on the bridge. Any other
    table stays."""
    hostns.ok("run", "--rm", "busybox", "true")  # this version's bridge, table and marker
    # what the earlier fastbox left: its table, no marker, IPv6 on the bridge
    hostns.sh("nft delete table inet fastbox && nft add table ip fastbox && "
              "nft add map ip fastbox tcp_any '{ type inet_service : ipv4_addr . inet_service; }' && "
              "nft add element ip fastbox tcp_any '{ 8080 : 10.66.0.9 . 80 }' && "
              "nft add table ip other && "
              "echo 0 > /proc/sys/net/ipv6/conf/fastbox0/disable_ipv6")
    for marker in os.listdir(os.path.join(fb_env.run, "net", "ready")):
        os.unlink(os.path.join(fb_env.run, "net", "ready", marker))
    hostns.ok("run", "--rm", "-p", "8080:80", "busybox", "true")
    tables = hostns.sh("nft list tables").stdout.split("\n")
    assert "table ip fastbox" not in tables and "table inet fastbox" in tables
    assert "table ip other" in tables
    postrouting = hostns.sh("nft list chain inet fastbox postrouting").stdout
    assert 'oifname != "fastbox0" masquerade comment "fastbox-000000000000"' in postrouting, postrouting
    assert hostns.sh("cat /proc/sys/net/ipv6/conf/fastbox0/disable_ipv6").stdout.strip() == "1"
    assert_nothing_left(hostns, fb_env)


def test_disconnect_from_the_first_network_moves_the_ipv6_default_route(hostns, fb_env):
    """The connected --ipv6 network takes over from the first one, as Docker's: its
    gateways become the default routes of both families."""
    hostns.ok(*NET, "six")
    hostns.ok("run", "-d", "--name", "c", "busybox", "sleep", "1d")  # default bridge
    hostns.ok("network", "connect", "six", "c")
    hostns.ok("network", "disconnect", "bridge", "c")
    assert "default via fd00:80::1 dev eth1" in hostns.ok("exec", "c", "ip", "-6", "route")
    assert "default via 10.80.0.1 dev eth1" in hostns.ok("exec", "c", "ip", "route")
    assert "1 packets received" in hostns.ok("exec", "c", "ping6", "-c1", "-W2", "fd00:80::1")
    hostns.ok("rm", "-f", "c")
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


@pytest.mark.parametrize("network", ["bridge", "six"])
def test_a_neighbours_router_advertisement_is_ignored(hostns, fb_env, probe, network):
    """CVE-2020-13401's attack: a container (NET_RAW is one of Docker's default
    capabilities) sends an IPv6 router advertisement onto its bridge from a spoofed
    link-local address. A neighbour that took it would route its IPv6 traffic through
    the attacker and take an address in the attacker's prefix. Every container's
    namespace has accept_ra=0 before its interfaces are made, on IPv4-only and --ipv6
    networks alike."""
    if network == "six":
        hostns.ok(*NET, "six")
    hostns.ok("run", "-d", "--name", "victim", "--network", network, "busybox", "sleep", "1d")
    out = hostns.ok("run", "--rm", "--network", network, probe.image, "/probe", "rawra", "eth0",
                    "2001:db8:bad::")
    assert out.strip() == "sent"
    time.sleep(0.5)  # an RA is handled as it arrives: give it the time to be
    routes = hostns.ok("exec", "victim", "ip", "-6", "route")
    addrs = hostns.ok("exec", "victim", "ip", "-6", "addr")
    assert "fe80::bad" not in routes and "2001:db8:bad" not in routes + addrs, routes + addrs
    assert hostns.ok("exec", "victim", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra").strip() == "0"
    host = hostns.sh("ip -6 route; ip -6 addr").stdout  # nor the host, on the bridge's side
    assert "fe80::bad" not in host and "2001:db8:bad" not in host, host
    hostns.ok("rm", "-f", "victim")
    if network == "six":
        hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ --ip6

def test_run_ip6_on_an_ipv6_network(hostns, fb_env):
    """`run --ip6`, as Docker's: that address on an --ipv6 user network (with names and
    its route), held by one live container at a time, or a one-line error. The address
    of another container's IPv4 one is not for the asking: it would be that container's."""
    hostns.ok(*NET, "six")
    hostns.ok("network", "create", "--subnet", "10.81.0.0/24", "plain")
    hostns.ok("run", "-d", "--name", "a", "--network", "six", "--ip6", "fd00:80::beef",
              "busybox", "sleep", "1d")
    assert six(hostns, "a") == ["fd00:80::beef/64"]
    assert "default via fd00:80::1 dev eth0" in hostns.ok("exec", "a", "ip", "-6", "route")
    out = hostns.ok("run", "--rm", "--network", "six", "busybox", "sh", "-c",
                    "nslookup -type=AAAA a && ping6 -c1 -W2 a")
    assert "fd00:80::beef" in out and "1 packets received" in out
    assert json.loads(hostns.ok("inspect", "a"))[0]["NetworkSettings"]["GlobalIPv6Address"] == "fd00:80::beef"
    assert_runs_refused(hostns, (
        (["--network", "six", "--ip6", "fd00:80::beef"], "Address already in use"),
        (["--ip6", "fd00:80::5"], "supported on user defined networks only"),
        (["--network", "plain", "--ip6", "fd00:80::5"], "has no IPv6"),
        (["--network", "six", "--ip6", "fd00:99::5"], "does not belong to the subnet"),
        (["--network", "six", "--ip6", "fd00:80::"], "does not belong to the subnet"),
        (["--network", "six", "--ip6", "fd00:80::1"], "is the gateway"),
        (["--network", "six", "--ip6", "fd00:80::a50:9"], "IPv4 address 10.80.0.9"),
        (["--network", "six", "--ip6", "fd00:80::g"], "expected an IPv6 address")))
    # a created container keeps it across starts; a stop frees it for another
    assert_address_kept(hostns, ["--network", "six", "--ip6", "fd00:80::b"], six, ["fd00:80::b/64"],
                        ["ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global"],
                        "fd00:80::b/64")
    hostns.ok("rm", "-f", "a", "b")
    hostns.ok("network", "rm", "six", "plain")
    assert_nothing_left(hostns, fb_env)


def test_a_dead_containers_ip6_is_taken_back(hostns, fb_env):
    """A container killed with its monitor holds no address: the next --ip6 asking for
    it releases the dead one's endpoint (its ports and lease too) and gets it."""
    hostns.ok(*NET, "six")
    cid = hostns.ok("run", "-d", "--network", "six", "--ip6", "fd00:80::77", "-p", "8484:80",
                    "busybox", "sleep", "1d").strip()
    info = json.loads(hostns.ok("inspect", cid))[0]
    os.kill(info["MonitorPid"], signal.SIGKILL)
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    eventually(lambda: not hostns.veths(), what="the veth to go with the namespace")
    out = hostns.ok("run", "--rm", "--network", "six", "--ip6", "fd00:80::77", "-p", "8484:80",
                    "busybox", "ip", "-o", "-6", "addr", "show", "dev", "eth0", "scope", "global")
    assert out.split()[3] == "fd00:80::77/64"
    hostns.ok("rm", cid)
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)


def test_connect_ip6_and_disconnect_from_the_first_network_keep_it(hostns, fb_env):
    """`network connect --ip6`, as Docker's; and when that network takes over from the
    first one (disconnect), the address asked for stays the container's at its starts."""
    hostns.ok(*NET, "six")
    hostns.ok("run", "-d", "--name", "c", "busybox", "sleep", "1d")  # default bridge
    r = hostns.fb("network", "connect", "--ip6", "fd00:80::1", "six", "c")
    assert r.returncode == 1 and "is the gateway" in one_line_error(r)
    hostns.ok("network", "connect", "--ip6", "fd00:80::c", "six", "c")
    assert six(hostns, "c", "eth1") == ["fd00:80::c/64"]
    hostns.ok("run", "-d", "--name", "d", "busybox", "sleep", "1d")
    r = hostns.fb("network", "connect", "--ip6", "fd00:80::c", "six", "d")
    assert r.returncode == 1 and "Address already in use" in one_line_error(r)
    hostns.ok("network", "disconnect", "bridge", "c")
    hostns.ok("restart", "-t", "0", "c")
    assert six(hostns, "c") == ["fd00:80::c/64"]
    assert "default via fd00:80::1 dev eth0" in hostns.ok("exec", "c", "ip", "-6", "route")
    hostns.ok("rm", "-f", "c", "d")
    hostns.ok("network", "rm", "six")
    assert_nothing_left(hostns, fb_env)
