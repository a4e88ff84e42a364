"""`fastbox network connect` / `disconnect` for real: a running container gains and loses
an interface on a user network; a created one is attached at its start; everything is
released on stop, rm and after a SIGKILL. Run in a namespace playing the host (HostNS of
test_network)."""
import contextlib
import json
import os
import signal
import subprocess

import pytest
from waiting import eventually

from test_network import (FASTBOX, HostNS, assert_address_kept, assert_nothing_left,  # noqa: F401
                          assert_runs_refused, hostns, leases, one_line_error)


def addr_of(ns, name, dev):
    out = ns.ok("exec", name, "ip", "-o", "-4", "addr", "show", "dev", dev)
    return out.split()[3].split("/")[0]


def dead(pid):
    """Gone, or a zombie (its monitor killed, it is the test process's to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def networks(ns, name):
    return json.loads(ns.ok("inspect", name))[0]["NetworkSettings"]["Networks"]


def test_running_container_gains_and_loses_an_interface(hostns, fb_env):
    hostns.ok("network", "create", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "b", "busybox", "sleep", "1d")  # on the default bridge
    assert "eth1" not in hostns.ok("exec", "b", "ip", "-o", "link")
    hostns.ok("network", "connect", "--alias", "bee", "appnet", "b")
    ip = addr_of(hostns, "b", "eth1")
    assert ip.startswith("10.67.0.")
    # the default route stays on the first network
    assert "dev eth0" in hostns.ok("exec", "b", "ip", "route", "show", "default")
    # a peer finds it by name and alias (the network's name server), and reaches it
    assert f"Address: {ip}" in hostns.ok("exec", "a", "nslookup", "bee")
    for name in ("b", "bee"):
        hostns.ok("exec", "a", "ping", "-c", "1", "-W", "2", name)
    # its own hosts has its new address, as Docker's connect adds it; a's lists no peer
    assert f"{ip}\t" in hostns.ok("exec", "b", "cat", "/etc/hosts")
    assert f"{ip}\t" not in hostns.ok("exec", "a", "cat", "/etc/hosts")
    # and it finds its new peers
    hostns.ok("exec", "b", "ping", "-c", "1", "-W", "2", "a")
    nets = networks(hostns, "b")
    assert set(nets) == {"bridge", "appnet"}
    assert nets["appnet"]["IPAddress"] == ip and "bee" in nets["appnet"]["Aliases"]
    members = json.loads(hostns.ok("network", "inspect", "appnet"))[0]["Containers"]
    assert len(members) == 2
    assert len(leases(fb_env.run)) == 3

    hostns.ok("network", "disconnect", "appnet", "b")
    assert "eth1" not in hostns.ok("exec", "b", "ip", "-o", "link")
    assert hostns.fb("exec", "a", "nslookup", "bee").returncode != 0
    assert ip not in hostns.ok("exec", "b", "cat", "/etc/hosts")
    assert set(networks(hostns, "b")) == {"bridge"}
    assert len(leases(fb_env.run)) == 2
    hostns.ok("rm", "-f", "a", "b")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


def test_created_container_is_attached_at_start_with_its_address(hostns, fb_env):
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    hostns.ok("create", "--name", "c", "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "--ip", "10.70.0.77", "appnet", "c")
    nets = networks(hostns, "c")
    assert nets["appnet"]["IPAddress"] == "" and leases(fb_env.run) == []
    hostns.ok("start", "c")
    assert addr_of(hostns, "c", "eth1") == "10.70.0.77"
    assert networks(hostns, "c")["appnet"]["IPAddress"] == "10.70.0.77"
    # stop releases it (the monitor knows only the first network; stop frees the rest)
    hostns.ok("stop", "-t", "0", "c")
    assert leases(fb_env.run) == []
    assert os.listdir(os.path.join(fb_env.run, "net", "endpoints")) == []
    # and the next start attaches it again
    hostns.ok("start", "c")
    assert addr_of(hostns, "c", "eth1") == "10.70.0.77"
    hostns.ok("rm", "-f", "c")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


@pytest.mark.parametrize("args, words", [
    (["connect", "appnet", "a"], "endpoint with name a already exists in network appnet"),
    (["connect", "appnet", "h"], "sharing network namespace"),
    (["connect", "appnet", "n"], "private (none) mode"),
    (["connect", "host", "a"], "host network"),
    (["connect", "nosuch", "a"], "network nosuch not found"),
    (["connect", "appnet", "nosuch"], "nosuch"),
    (["connect", "--ip", "10.9.9.9", "other", "a"], "does not belong to the subnet"),
    (["disconnect", "other", "a"], "is not connected to network other"),
])
def test_errors_are_docker_like_one_liners(hostns, args, words):
    hostns.ok("network", "create", "appnet")
    hostns.ok("network", "create", "other")
    hostns.ok("create", "--name", "a", "--network", "appnet", "busybox", "true")
    hostns.ok("create", "--name", "h", "--network", "host", "busybox", "true")
    hostns.ok("create", "--name", "n", "--network", "none", "busybox", "true")
    r = hostns.fb("network", *args)
    assert r.returncode == 1 and words in one_line_error(r)
    assert hostns.fb("network", "disconnect", "-f", "other", "a").returncode == 0
    hostns.ok("rm", "a", "h", "n")


def test_address_in_use_is_refused(hostns, fb_env):
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "b", "busybox", "sleep", "1d")
    r = hostns.fb("network", "connect", "--ip", addr_of(hostns, "a", "eth0"), "appnet", "b")
    assert r.returncode == 1 and "Address already in use" in one_line_error(r)
    assert "appnet" not in networks(hostns, "b")
    hostns.ok("rm", "-f", "a", "b")
    assert_nothing_left(hostns, fb_env)


def test_connected_network_is_released_when_the_container_exits(hostns, fb_env):
    """Its monitor releases the connected network's lease, name and record with the
    first network's, as Docker frees them when a container stops: no command needed."""
    hostns.ok("network", "create", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "b", "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "appnet", "b")
    names = os.path.join(fb_env.run, "net", "names")
    assert sum(len(os.listdir(os.path.join(names, d))) for d in os.listdir(names)) == 2
    pid = json.loads(hostns.ok("inspect", "b"))[0]["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    a_id = json.loads(hostns.ok("inspect", "a"))[0]["Id"]
    eventually(lambda: len(leases(fb_env.run)) == 1 and os.listdir(
        os.path.join(fb_env.run, "net", "endpoints")) == [a_id], what="b's leases and records to go")
    assert sum(len(os.listdir(os.path.join(names, d))) for d in os.listdir(names)) == 1
    # started again, it is connected again
    hostns.ok("start", "b")
    assert addr_of(hostns, "b", "eth1").startswith("10.67.0.")
    hostns.ok("rm", "-f", "a", "b")
    assert_nothing_left(hostns, fb_env)


def test_connected_network_of_a_container_killed_with_its_monitor_is_swept(hostns, fb_env):
    """Container and monitor both SIGKILLed: the next command that touches networks
    frees the connected network too (its owner, the container's init, is dead)."""
    hostns.ok("network", "create", "appnet")
    hostns.ok("run", "-d", "--name", "b", "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "appnet", "b")
    state = json.loads(hostns.ok("inspect", "b"))[0]
    os.kill(state["MonitorPid"], signal.SIGKILL)
    os.kill(state["State"]["Pid"], signal.SIGKILL)
    eventually(lambda: dead(state["State"]["Pid"]), what="the container to die")
    hostns.ok("network", "ls")
    assert leases(fb_env.run) == []
    assert os.listdir(os.path.join(fb_env.run, "net", "endpoints")) == []
    hostns.ok("rm", "b")
    assert_nothing_left(hostns, fb_env)


def test_sigkill_of_connect_leaves_nothing_after_the_next_command(hostns, fb_env):
    """A connect killed at a random point: its record names it (not the container) as
    owner until the veth is made, so the next sweep undoes it; or it completed."""
    hostns.ok("network", "create", "appnet")
    hostns.ok("run", "-d", "--name", "b", "busybox", "sleep", "1d")
    for delay in (0.05, 0.15, 0.3):
        p = subprocess.Popen(hostns.cmd("sh", "-c", f"{FASTBOX} network connect appnet b & "
                                                    f"sleep {delay}; kill -9 $!"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait(30)
        hostns.ok("network", "ls")
        hostns.fb("network", "disconnect", "-f", "appnet", "b")
        assert len(leases(fb_env.run)) == 1
    hostns.ok("rm", "-f", "b")
    assert_nothing_left(hostns, fb_env)


def test_start_after_its_connected_network_was_removed(hostns, fb_env):
    """Docker's way: the start fails naming the network; disconnect then forgets it."""
    hostns.ok("network", "create", "appnet")
    hostns.ok("create", "--name", "c", "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "appnet", "c")
    hostns.ok("network", "rm", "appnet")
    r = hostns.fb("start", "c")
    assert r.returncode != 0 and "network appnet not found" in one_line_error(r)
    assert leases(fb_env.run) == [] and os.listdir(os.path.join(fb_env.run, "net", "endpoints")) == []
    hostns.ok("network", "disconnect", "appnet", "c")
    hostns.ok("start", "c")
    hostns.ok("rm", "-f", "c")
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ its first network

def test_disconnect_from_the_first_network_of_a_running_container(hostns, fb_env):
    """As Docker's: the network connected next takes over (default route, name server,
    and every later start); the first one's ports, veth, address and hosts line go at
    once. Its monitor, told at the start to delete those ports at the exit, leaves them
    alone: by then they are another container's."""
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "b", "-p", "8085:80", "busybox", "sleep", "1d")
    first_ip = addr_of(hostns, "b", "eth0")
    hostns.ok("network", "connect", "--alias", "bee", "--ip", "10.70.0.9", "appnet", "b")
    assert len(hostns.nft_elements()) == 1

    hostns.ok("network", "disconnect", "bridge", "b")
    links = hostns.ok("exec", "b", "ip", "-o", "link")
    assert "eth0" not in links and "eth1" in links
    assert "via 10.70.0.1 dev eth1" in hostns.ok("exec", "b", "ip", "route", "show", "default")
    assert first_ip not in hostns.ok("exec", "b", "cat", "/etc/hosts")
    # names through appnet's name server now (it is b's first network from now on)
    assert "nameserver 10.70.0.1\n" in hostns.ok("exec", "b", "cat", "/etc/resolv.conf")
    hostns.ok("exec", "b", "ping", "-c", "1", "-W", "2", "a")
    assert hostns.nft_elements() == [] and hostns.ok("port", "b").strip() == ""
    assert len(leases(fb_env.run)) == 2  # a's and b's on appnet
    info = json.loads(hostns.ok("inspect", "b"))[0]
    assert set(info["NetworkSettings"]["Networks"]) == {"appnet"}
    assert info["HostConfig"]["NetworkMode"] == "appnet"

    # the port is c's now: b's exit must not take it away
    hostns.ok("run", "-d", "--name", "c", "-p", "8085:80", "busybox", "sleep", "1d")
    hostns.ok("stop", "-t", "0", "b")
    assert len(hostns.nft_elements()) == 1 and "8085" in hostns.ok("port", "c")

    # every later start is on appnet, as eth0, with the alias it was connected with, and
    # publishes its ports there (as Docker's: the port bindings are the container's)
    hostns.ok("rm", "-f", "c")
    hostns.ok("start", "b")
    assert addr_of(hostns, "b", "eth0") == "10.70.0.9"  # the address it was connected with
    assert "eth1" not in hostns.ok("exec", "b", "ip", "-o", "link")
    hostns.ok("exec", "a", "ping", "-c", "1", "-W", "2", "bee")
    assert hostns.ok("port", "b").strip() == "80/tcp -> 0.0.0.0:8085"
    hostns.ok("rm", "-f", "a", "b")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


def test_disconnect_from_the_only_network_leaves_lo_alone(hostns, fb_env):
    hostns.ok("create", "--name", "d", "-p", "8086:80", "busybox", "sleep", "1d")
    hostns.ok("network", "disconnect", "bridge", "d")
    hostns.ok("start", "d")
    assert [l.split(":")[1].strip() for l in hostns.ok("exec", "d", "ip", "-o", "link").splitlines()] == ["lo"]
    info = json.loads(hostns.ok("inspect", "d"))[0]
    assert info["HostConfig"]["NetworkMode"] == "none" and info["NetworkSettings"]["Ports"] == {}
    assert hostns.nft_elements() == [] and leases(fb_env.run) == []
    # and a running one, disconnected from it, keeps only lo
    hostns.ok("run", "-d", "--name", "e", "busybox", "sleep", "1d")
    hostns.ok("network", "disconnect", "bridge", "e")
    assert "eth0" not in hostns.ok("exec", "e", "ip", "-o", "link")
    assert leases(fb_env.run) == []
    hostns.ok("rm", "-f", "d", "e")
    assert_nothing_left(hostns, fb_env)


@contextlib.contextmanager
def foreground(hostns, name, port, seconds):
    """`fastbox run --name NAME -p PORT:80 busybox sleep SECONDS` in the foreground, its
    port published; on leaving the block, it has exited 0."""
    fg = subprocess.Popen(hostns.cmd(FASTBOX, "run", "--name", name, "-p", f"{port}:80",
                                     "busybox", "sh", "-c", f"sleep {seconds}"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: hostns.fb("port", name).stdout.strip() == f"80/tcp -> 0.0.0.0:{port}",
                   what=f"{name} to publish its port")
        yield fg
        _, err = fg.communicate(timeout=30)
        assert fg.returncode == 0, err
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()


def test_foreground_run_disconnected_leaves_the_ports_it_lost_alone(hostns, fb_env):
    """A foreground run releases its endpoint at its exit (the core's release, as a
    detached one's monitor): not the ports and address a disconnect freed, which
    another container holds by then."""
    with foreground(hostns, "f", 8087, seconds=3):
        f_ip = json.loads(hostns.ok("inspect", "f"))[0]["NetworkSettings"]["IPAddress"]
        hostns.ok("network", "disconnect", "bridge", "f")
        assert hostns.nft_elements() == [] and leases(fb_env.run) == []
        # g takes the port and, as the lowest free address, the one f had
        hostns.ok("run", "-d", "--name", "g", "-p", "8087:80", "busybox", "sleep", "1d")
        assert json.loads(hostns.ok("inspect", "g"))[0]["NetworkSettings"]["IPAddress"] == f_ip
    assert len(hostns.nft_elements()) == 1 and "8087" in hostns.ok("port", "g")
    assert len(leases(fb_env.run)) == 1
    hostns.ok("exec", "g", "true")
    hostns.ok("rm", "-f", "f", "g")
    assert_nothing_left(hostns, fb_env)


def test_foreground_run_connected_meanwhile_releases_both_networks(hostns, fb_env):
    """A foreground run's release is made ready while it runs (the core's, for its first
    network); a network connected meanwhile is seen at its exit, and released with it."""
    hostns.ok("network", "create", "appnet")
    with foreground(hostns, "f", 8088, seconds=2):
        hostns.ok("network", "connect", "appnet", "f")
        assert len(leases(fb_env.run)) == 2
    # released by the exit itself, before any other command could sweep
    endpoints = os.path.join(fb_env.run, "net", "endpoints")
    assert leases(fb_env.run) == [] and os.listdir(endpoints) == []
    assert hostns.nft_elements() == []
    hostns.ok("rm", "f")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


def test_disconnect_from_a_first_network_with_names(hostns, fb_env):
    """Its peers there lose its name, it loses theirs, and it asks the name server of the
    network that took over."""
    hostns.ok("network", "create", "--subnet", "10.71.0.0/24", "appnet")
    hostns.ok("network", "create", "--subnet", "10.72.0.0/24", "othernet")
    hostns.ok("run", "-d", "--name", "x", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "y", "--network", "appnet", "busybox", "sleep", "1d")
    hostns.ok("network", "connect", "othernet", "x")
    assert "nameserver 10.71.0.1\n" in hostns.ok("exec", "x", "cat", "/etc/resolv.conf")
    hostns.ok("network", "disconnect", "appnet", "x")
    assert "nameserver 10.72.0.1\n" in hostns.ok("exec", "x", "cat", "/etc/resolv.conf")
    assert "\ty " not in hostns.ok("exec", "x", "cat", "/etc/hosts")
    assert "\tx " not in hostns.ok("exec", "y", "cat", "/etc/hosts")
    assert hostns.fb("exec", "y", "ping", "-c", "1", "-W", "1", "x").returncode != 0
    assert "default via 10.72.0.1 dev eth1" in hostns.ok("exec", "x", "ip", "route")
    hostns.ok("rm", "-f", "x", "y")
    hostns.ok("network", "rm", "appnet", "othernet")
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ run --ip

def test_run_ip_on_a_user_network(hostns, fb_env):
    """`run --ip`, as Docker's: that address on a user network, or a one-line error."""
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "--ip", "10.70.0.50",
              "busybox", "sleep", "1d")
    assert addr_of(hostns, "a", "eth0") == "10.70.0.50"
    assert "via 10.70.0.1 dev eth0" in hostns.ok("exec", "a", "ip", "route", "show", "default")
    assert_runs_refused(hostns, (
        (["--network", "appnet", "--ip", "10.70.0.50"], "Address already in use"),
        (["--ip", "10.66.0.50"], "supported on user defined networks only"),
        (["--network", "appnet", "--ip", "10.9.9.9"], "does not belong to the subnet"),
        (["--network", "appnet", "--ip", "10.70.0.1"], "is the gateway"),
        (["--network", "appnet", "--ip", "10.70.0"], "expected an IPv4 address")))
    # a created container keeps it across starts; a stop frees it for another
    assert_address_kept(hostns, ["--network", "appnet", "--ip", "10.70.0.60"],
                        lambda ns, name: addr_of(ns, name, "eth0"), "10.70.0.60",
                        ["ip", "-o", "-4", "addr", "show", "dev", "eth0"], "10.70.0.60/24")
    hostns.ok("rm", "-f", "a", "b")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


def test_ps_filters_by_network_and_ports(hostns, fb_env):
    """ps --filter network=, publish=, expose=, as Docker's."""
    hostns.ok("network", "create", "appnet")
    net_id = json.loads(hostns.ok("network", "inspect", "appnet"))[0]["Id"]
    hostns.ok("run", "-d", "--name", "a", "--network", "appnet", "--expose", "9000-9001",
              "busybox", "sleep", "1d")
    hostns.ok("run", "-d", "--name", "b", "-p", "8087:80", "-p", "53/udp", "busybox", "sleep", "1d")
    hostns.ok("create", "--name", "c", "busybox", "true")
    hostns.ok("network", "connect", "appnet", "c")

    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(hostns.ok("ps", "-a", *args, "--format", "{{.Names}}").split())

    assert names("network=appnet") == ["a", "c"]
    assert names(f"network={net_id[:12]}") == ["a", "c"]
    assert names("network=bridge") == ["b", "c"]
    assert names("network=nosuch") == []
    assert names("publish=80") == ["b"] and names("publish=80/udp") == []
    assert names("publish=50-60/udp") == ["b"]
    assert names("expose=9001") == ["a"] and names("expose=80") == ["b"]
    assert names("network=appnet", "expose=9000") == ["a"]
    r = hostns.fb("ps", "--filter", "publish=http")
    assert r.returncode != 0 and "invalid filter 'publish=http'" in one_line_error(r)
    hostns.ok("rm", "-f", "a", "b", "c")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ labels, options, filters

def test_network_labels_mtu_option_and_filters(hostns, fb_env):
    """network create --label / -o com.docker.network.driver.mtu, ls --filter, prune
    --filter, as Docker's."""
    hostns.ok("network", "create", "--label", "team=web", "--label", "tier", "-o",
              "com.docker.network.driver.mtu=1400", "webnet")
    hostns.ok("network", "create", "--label", "team=db", "dbnet")
    info = json.loads(hostns.ok("network", "inspect", "webnet"))[0]
    assert info["Labels"] == {"team": "web", "tier": ""}
    # Docker's shape, which scripts read
    subnet = hostns.ok("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
                       "webnet").strip()
    assert subnet == f"{info['Subnet']} {info['Gateway']}" and info["Scope"] == "local"
    assert info["Options"] == {"com.docker.network.driver.mtu": "1400"} and info["MTU"] == 1400
    hostns.ok("run", "-d", "--name", "w", "--network", "webnet", "busybox", "sleep", "1d")
    assert "mtu 1400" in hostns.ok("exec", "w", "ip", "link", "show", "eth0")

    def names(*filters):
        args = [a for f in filters for a in ("--filter", f)]
        return sorted(hostns.ok("network", "ls", *args, "--format", "{{.Name}}").split())

    assert names("label=team") == ["dbnet", "webnet"] and names("label=team=db") == ["dbnet"]
    assert names("type=builtin") == ["bridge"] and names("type=custom") == ["dbnet", "webnet"]
    assert names("dangling=true") == ["dbnet"] and names("name=net", "label=tier") == ["webnet"]
    assert names(f"id={info['Id'][:6]}") == ["webnet"] and names("driver=bridge")[0] == "bridge"
    assert "team=web,tier=" in hostns.ok("network", "ls", "--format", "{{.Labels}}")
    for args, words in ((["ls", "--filter", "colour=red"], "invalid filter 'colour'"),
                        (["create", "-o", "com.docker.network.driver.mtu=9", "x"], "68 to 65535"),
                        (["create", "-o", "com.docker.network.bridge.name=eth0", "x"], "invalid option")):
        r = hostns.fb("network", *args)
        assert r.returncode != 0 and words in one_line_error(r), args
    # prune keeps what its filter leaves out, and what a container uses
    hostns.ok("network", "create", "--label", "team=db", "dbnet2")
    assert sorted(hostns.ok("network", "prune", "-f", "--filter", "label!=team=db").split()) == []
    assert sorted(hostns.ok("network", "prune", "-f", "--filter", "label=team=db").split()) == ["dbnet", "dbnet2"]
    hostns.ok("rm", "-f", "w")
    assert hostns.ok("network", "prune", "-f").split() == ["webnet"]
    assert_nothing_left(hostns, fb_env)


# ------------------------------------------------------------------ --mac-address

def test_mac_address_on_the_bridge_and_a_user_network(hostns, fb_env):
    """`run --mac-address`, as Docker's: eth0 has it (whether its veth was made ahead or
    not), its neighbours reach it, inspect shows it; without it, Docker's 02:42 and the
    IPv4 address; a bad one, or no network of its own, is one line and exit 125."""
    hostns.ok("network", "create", "--subnet", "10.70.0.0/24", "appnet")
    hostns.ok("run", "-d", "--name", "a", "--mac-address", "92:D0:C6:0A:29:33", "busybox",
              "sleep", "1d")
    assert hostns.ok("exec", "a", "cat", "/sys/class/net/eth0/address").strip() == "92:d0:c6:0a:29:33"
    gw = hostns.ok("exec", "a", "ip", "route", "show", "default").split()[2]
    assert "1 packets received" in hostns.ok("exec", "a", "ping", "-c1", "-W2", gw)
    settings = json.loads(hostns.ok("inspect", "a"))[0]["NetworkSettings"]
    assert settings["MacAddress"] == "92:d0:c6:0a:29:33"
    assert settings["Networks"]["bridge"]["MacAddress"] == "92:d0:c6:0a:29:33"
    out = hostns.ok("run", "--rm", "--network", "appnet", "--mac-address", "92:d0:c6:0a:29:34",
                    "busybox", "sh", "-c", "cat /sys/class/net/eth0/address; "
                    "ping -c1 -W2 10.70.0.1 >/dev/null && echo pinged")
    assert out.split() == ["92:d0:c6:0a:29:34", "pinged"]
    hostns.ok("run", "-d", "--name", "b", "--network", "appnet", "busybox", "sleep", "1d")
    ip = addr_of(hostns, "b", "eth0")
    want = "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
    assert json.loads(hostns.ok("inspect", "b"))[0]["NetworkSettings"]["MacAddress"] == want
    members = json.loads(hostns.ok("network", "inspect", "appnet"))[0]["Containers"].values()
    assert [m["MacAddress"] for m in members] == [want]
    assert_runs_refused(hostns, (
        (["--mac-address", "92:d0:c6:0a:29"], "expected a MAC address"),
        (["--mac-address", "93:d0:c6:0a:29:33"], "multicast"),
        (["--mac-address", "00:00:00:00:00:00"], "all-zero"),
        (["--network", "none", "--mac-address", "92:d0:c6:0a:29:33"], "conflicting options")))
    hostns.ok("rm", "-f", "a", "b")
    hostns.ok("network", "rm", "appnet")
    assert_nothing_left(hostns, fb_env)
