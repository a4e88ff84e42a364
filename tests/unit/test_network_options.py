"""Parsing the network flags (fastbox.network.options) and the network definitions'
arithmetic (fastbox.network.store), without touching the kernel."""
import pytest

from fastbox.errors import SpecError
from fastbox.network import ipam, nft, options, store
from fastbox.spec import RunSpec


@pytest.mark.parametrize("value, expected", [
    ("80", ("0.0.0.0::80/tcp",)),
    ("8080:80", ("0.0.0.0:8080:80/tcp",)),
    ("127.0.0.1:8080:80", ("127.0.0.1:8080:80/tcp",)),
    ("127.0.0.1::80/udp", ("127.0.0.1::80/udp",)),
    ("8000-8001:80-81", ("0.0.0.0:8000:80/tcp", "0.0.0.0:8001:81/tcp")),
    ("8000-8010:80", ("0.0.0.0:8000-8010:80/tcp",)),
    ("53-54/udp", ("0.0.0.0::53/udp", "0.0.0.0::54/udp")),
])
def test_publish(value, expected):
    assert options.parse_publish([value]) == expected


@pytest.mark.parametrize("value", ["", "0", "70000", "a:80", "1.2.3:1:80", "80/sctp",
                                   "8000-8002:80-81", "9-8:80", "1:2:3:4"])
def test_bad_publish(value):
    with pytest.raises(SpecError):
        options.parse_publish([value])


def test_modes_and_names():
    assert options.network_mode(None) == "bridge"
    assert options.network_mode("default") == "bridge"
    assert options.network_mode("container:web") == "container:web"
    assert not options.own_endpoint("none") and not options.own_endpoint("container:x")
    assert options.own_endpoint("bridge") and options.own_endpoint("appnet")
    with pytest.raises(SpecError):
        options.network_mode("bad name")


def test_add_host_and_dns():
    assert options.parse_add_host(["db:10.0.0.5", "x=1.2.3.4"]) == ("db:10.0.0.5", "x:1.2.3.4")
    assert options.parse_dns(["9.9.9.9"]) == ("9.9.9.9",)
    for bad in (["db"], ["db:300.1.1.1"], [":1.2.3.4"]):
        with pytest.raises(SpecError):
            options.parse_add_host(bad)


def test_spec_rejects_ports_without_an_address():
    with pytest.raises(SpecError):
        RunSpec("busybox", network="host", publish=["80"])
    with pytest.raises(SpecError):
        RunSpec("busybox", network="bridge", network_alias=["x"])
    spec = RunSpec("busybox", network="bridge", publish=["8080:80"])
    assert spec.publish == ("0.0.0.0:8080:80/tcp",)


def test_ipam_picks_the_lowest_free_host_address(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBOX_CONFIG", str(tmp_path / "none.json"))
    net = store.default()
    assert (net.subnet, net.prefix, net.gateway) == ("10.66.0.0", 16, "10.66.0.1")
    assert ipam.pick(net, set()) == "10.66.0.2"
    assert ipam.pick(net, {"10.66.0.2", "10.66.0.3"}) == "10.66.0.4"


def test_config_bip_sets_the_default_subnet(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text('{"bip": "192.168.77.1/24", "mtu": 1400}')
    monkeypatch.setenv("FASTBOX_CONFIG", str(cfg))
    net = store.default()
    assert (net.subnet, net.prefix, net.gateway, net.mtu) == ("192.168.77.0", 24, "192.168.77.1", 1400)
    cfg.write_text('{"bip": "nonsense"}')
    with pytest.raises(SpecError):
        store.default()


def test_port_elements_are_padded_as_the_kernel_keeps_them():
    elems = nft.port_elements([("tcp", "0.0.0.0", 8080, 80), ("udp", "127.0.0.1", 53, 5353)], "10.66.0.2")
    assert elems[0] == ("tcp_any", b"\x1f\x90", b"\x0a\x42\x00\x02\x00\x50\x00\x00")
    assert elems[1] == ("udp_ip", b"\x7f\x00\x00\x01\x00\x35\x00\x00", b"\x0a\x42\x00\x02\x14\xe9\x00\x00")


def test_ports_column_folds_runs_into_ranges_as_docker():
    from fastbox.network.ports import describe
    run = [("tcp", "0.0.0.0", 9000 + i, 80 + i) for i in range(3)]
    assert describe(run + [("tcp", "0.0.0.0", 9005, 85), ("udp", "127.0.0.1", 53, 53)]) == (
        "0.0.0.0:9000-9002->80-82/tcp, 0.0.0.0:9005->85/tcp, 127.0.0.1:53->53/udp")
    # not consecutive on both sides, another address or protocol: no range
    assert describe([("tcp", "0.0.0.0", 9000, 80), ("tcp", "0.0.0.0", 9001, 90),
                     ("udp", "0.0.0.0", 9002, 91)]) == (
        "0.0.0.0:9000->80/tcp, 0.0.0.0:9001->90/tcp, 0.0.0.0:9002->91/udp")


@pytest.mark.parametrize("subnet, kind", [("127.0.0.0/24", "loopback"), ("224.0.0.0/24", "multicast"),
                                          ("0.0.0.0/16", "this network"), ("240.1.0.0/16", "reserved"),
                                          ("169.254.3.0/24", "link-local"), ("169.0.0.0/8", "link-local")])
def test_a_subnet_must_be_for_one_links_hosts(subnet, kind):
    with pytest.raises(SpecError, match=f"{kind}.* cannot be a network's"):
        store.parse_cidr(subnet)
    assert store.parse_cidr("172.20.0.0/16") == ("172.20.0.0", 16)


def test_port_elements_of_a_container_with_an_ipv6_address():
    """A port on every address is IPv6's too (the *6 maps, after the IPv4 ones: a run of
    one map is one message); a port on one IPv4 address is not."""
    elems = nft.port_elements([("tcp", "0.0.0.0", 8080, 80), ("udp", "127.0.0.1", 53, 5353)],
                              "10.66.0.2", "fd00:1::a42:2")
    assert [e[0] for e in elems] == ["tcp_any", "udp_ip", "tcp6_any"]
    assert elems[2] == ("tcp6_any", b"\x1f\x90",
                        bytes.fromhex("fd000001" + "0000" * 4 + "0a420002") + b"\x00\x50\x00\x00")


def test_ipv6_networks_derive_addresses_from_ipv4_leases(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBOX_ROOT", str(tmp_path))
    monkeypatch.setenv("FASTBOX_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setattr("os.path.exists", lambda p, _e=__import__("os").path.exists: True
                        if p == "/proc/sys/net/ipv6" else _e(p))
    net = store.create("six", ["10.70.0.0/24", "fd00:70::/64"], ipv6=True)
    assert (net.subnet6, net.prefix6, net.gateway6) == ("fd00:70::", 64, "fd00:70::1")
    assert net.ip6_of("10.70.0.2") == "fd00:70::a46:2"
    auto = store.create("auto", ipv6=True)  # a random unique-local /64
    assert auto.subnet6.startswith("fd") and auto.prefix6 == 64 and auto.gateway6.endswith("::1")
    assert store.get("six").as_dict()["Subnet6"] == "fd00:70::/64"
    assert store.create("four").subnet6 is None and store.get("four").ip6_of("10.67.0.2") is None
    for subnet, gateway, ipv6, why in [
            (["fd00:71::/64"], [], False, "needs --ipv6"),
            (["fd00:70:0:0:1::/80"], [], True, "overlaps"),
            (["fd00:72::/112"], [], True, "/48 to /96"),
            (["fe80::/64"], [], True, "link-local"),
            (["ff00::/64"], [], True, "multicast"),
            (["fd00:73::/64"], ["fd00:74::1"], True, "not a host address"),
            (["fd00:73::/64"], ["fd00:73::a43:2"], True, "may be a container's"),
            (["fd00:73::/64", "fd00:74::/64"], [], True, "at most one")]:
        with pytest.raises(SpecError, match=why):
            store.create("bad", subnet, gateway, ipv6=ipv6)


def test_ip6_is_checked_against_the_network(tmp_path, monkeypatch):
    """--ip6: an address of the network's IPv6 subnet, not its own, its gateway's, nor one
    that follows from an IPv4 address of the network (Network.ip6_of): those are the
    containers' own. Outside the IPv4 subnet's range, the last 32 bits are free."""
    monkeypatch.setenv("FASTBOX_ROOT", str(tmp_path))
    monkeypatch.setenv("FASTBOX_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setattr("os.path.exists", lambda p, _e=__import__("os").path.exists: True
                        if p == "/proc/sys/net/ipv6" else _e(p))
    net = store.create("six", ["10.70.0.0/24", "fd00:70::/64"], ipv6=True)
    assert ipam.check_ip6(net, "fd00:70:0:0::00ff") == "fd00:70::ff"
    assert ipam.check_ip6(net, "fd00:70::1:a46:2") == "fd00:70::1:a46:2"  # bits 32-63 set
    assert ipam.check_ip6(net, "fd00:70::a47:2") == "fd00:70::a47:2"  # 10.71.0.2: not its
    assert net.derived("fd00:70::a46:2") and not net.derived("fd00:70::a47:2")
    for value, why in [("fd00:70::a46:9", "IPv4 address 10.70.0.9"),
                       ("fd00:70::1", "is the gateway"), ("fd00:70::", "does not belong"),
                       ("fd00:71::5", "does not belong"), ("10.70.0.5", "expected an IPv6")]:
        with pytest.raises(SpecError, match=why):
            ipam.check_ip6(net, value)
    with pytest.raises(SpecError, match="has no IPv6"):
        ipam.check_ip6(store.create("four"), "fd00:70::5")
    with pytest.raises(SpecError, match="user defined networks only"):
        RunSpec("busybox", network="bridge", ip6="fd00:70::5")


def test_mac_address_is_a_unicast_interface_address():
    assert options.parse_mac("92:D0:C6:0A:29:33") == "92:d0:c6:0a:29:33"
    for value, why in [("92:d0:c6:0a:29", "expected a MAC"), ("92-d0-c6-0a-29-33", "expected a MAC"),
                       ("92:d0:c6:0a:29:3g", "expected a MAC"), ("01:00:5e:00:00:01", "multicast"),
                       ("ff:ff:ff:ff:ff:ff", "multicast"), ("00:00:00:00:00:00", "all-zero")]:
        with pytest.raises(SpecError, match=why):
            options.parse_mac(value)
    assert RunSpec("busybox", network="bridge", mac_address="92:d0:c6:0a:29:33").mac_address == "92:d0:c6:0a:29:33"
    for mode in ("none", "host", "container:x"):
        with pytest.raises(SpecError, match="conflicting options: --mac-address"):
            RunSpec("busybox", network=mode, mac_address="92:d0:c6:0a:29:33")
