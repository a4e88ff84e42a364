"""fastbox's own nf_tables table, `inet fastbox`: it never touches another table. One
inet table holds both families: an --ipv6 network's mappings and masquerade live beside
the IPv4 ones, and a container's elements of both go in one transaction.

Published ports are elements of maps keyed by port (by address and port for a port
published on one host address), so that the rules never change as containers come and
go: a container's mappings are its elements, added in one transaction (the C core's
nfnetlink batch) and deleted the same way. A key is unique in a map: a stale entry can
never shadow a new one, and a port someone holds makes the add fail. The *6 maps are
IPv6's: a port published on every address by a container with an IPv6 address is also
published on the host's IPv6 addresses, as Docker's.

Another table's drop verdict is final (nf_tables evaluates every base chain of a hook):
on a host whose firewall drops forwarded traffic, allow the bridge there, e.g.
`nft add rule inet filter forward iifname "fastbox0" accept` and
`nft add rule inet filter forward oifname "fastbox0" ct state established,related accept`.
"""
import _socket as socket
import struct

from fastbox.errors import StartError

TABLE = "fastbox"
FAMILY = "inet"

RULESET = """
table inet fastbox {
    map tcp_any { type inet_service : ipv4_addr . inet_service; }
    map tcp_ip { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
    map udp_any { type inet_service : ipv4_addr . inet_service; }
    map udp_ip { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
    map tcp6_any { type inet_service : ipv6_addr . inet_service; }
    map tcp6_ip { type ipv6_addr . inet_service : ipv6_addr . inet_service; }
    map udp6_any { type inet_service : ipv6_addr . inet_service; }
    map udp6_ip { type ipv6_addr . inet_service : ipv6_addr . inet_service; }
    chain ports {
        dnat ip to ip daddr . tcp dport map @tcp_ip
        dnat ip to tcp dport map @tcp_any
        dnat ip to ip daddr . udp dport map @udp_ip
        dnat ip to udp dport map @udp_any
        dnat ip6 to ip6 daddr . tcp dport map @tcp6_ip
        dnat ip6 to tcp dport map @tcp6_any
        dnat ip6 to ip6 daddr . udp dport map @udp6_ip
        dnat ip6 to udp dport map @udp6_any
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local jump ports
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local jump ports
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat ip saddr 127.0.0.0/8 masquerade
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
    }
    chain guard {
        type filter hook prerouting priority raw; policy accept;
        iifname != "lo" ip daddr 127.0.0.0/8 drop
    }
}
"""


def nft(script, check=True):
    import subprocess
    r = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    if check and r.returncode != 0:
        raise StartError(f"nft failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}",
                         "network", 22)
    return r


def table_exists():
    import subprocess
    return subprocess.run(["nft", "list", "table", FAMILY, TABLE], capture_output=True).returncode == 0


def ensure_table():
    if not table_exists():
        # fastbox before IPv6 kept its maps in `ip fastbox`: left beside this table, its
        # DNAT entries would still answer ports this table maps to other containers
        nft(f"table ip {TABLE}\ndelete table ip {TABLE}\n" + RULESET)


def _has_comment(chain, comment):
    import subprocess
    r = subprocess.run(["nft", "-a", "list", "chain", FAMILY, TABLE, chain], capture_output=True, text=True)
    return f'comment "{comment}"' in r.stdout


def _handles(chain, comment):
    import subprocess
    r = subprocess.run(["nft", "-a", "list", "chain", FAMILY, TABLE, chain], capture_output=True, text=True)
    out = []
    for line in r.stdout.splitlines():
        if f'comment "{comment}"' in line and "# handle " in line:
            out.append(line.rsplit("# handle ", 1)[1].strip())
    return out


def ensure_network(net):
    """The network's rules: masquerade of its traffic leaving by another interface, or for
    --internal, no forwarding in or out. Each rule carries the network's id as comment."""
    tag = "fastbox-" + net.id[:12]
    if _has_comment("postrouting", tag) or _has_comment("forward", tag):
        return
    subnet = f"{net.subnet}/{net.prefix}"
    if net.internal:
        script = (f'add rule {FAMILY} {TABLE} forward iifname "{net.bridge}" oifname != "{net.bridge}" drop comment "{tag}"\n'
                  f'add rule {FAMILY} {TABLE} forward oifname "{net.bridge}" iifname != "{net.bridge}" drop comment "{tag}"\n')
    else:
        script = (f'add rule {FAMILY} {TABLE} postrouting ip saddr {subnet} oifname != "{net.bridge}" '
                  f'masquerade comment "{tag}"\n')
        if net.subnet6:  # as Docker's ip6tables default: the containers' ULAs leave as the host's
            script += (f'add rule {FAMILY} {TABLE} postrouting ip6 saddr {net.subnet6}/{net.prefix6} '
                       f'oifname != "{net.bridge}" masquerade comment "{tag}"\n')
    nft(script)


def remove_network(net):
    tag = "fastbox-" + net.id[:12]
    lines = [f"delete rule {FAMILY} {TABLE} {chain} handle {h}"
             for chain in ("postrouting", "forward") for h in _handles(chain, tag)]
    if lines:
        nft("\n".join(lines) + "\n", check=False)


def port_elements(ports, container_ip, container_ip6=None):
    """(map, key, data) of each mapping (proto, host_ip, host_port, container_port), as
    the kernel stores them: a concatenation pads each field to 4 bytes. container_ip6:
    the container's IPv6 address, if it has one: a port on every host address is then
    also mapped on the host's IPv6 addresses."""
    cip = socket.inet_aton(container_ip)
    cip6 = socket.inet_pton(socket.AF_INET6, container_ip6) if container_ip6 else None
    out, out6 = [], []  # a run of one map's elements is one message of the batch
    for proto, host_ip, host_port, cport in ports:
        data = cip + struct.pack(">HH", cport, 0)
        if host_ip == "0.0.0.0":
            out.append((f"{proto}_any", struct.pack(">H", host_port), data))
            if cip6:
                out6.append((f"{proto}6_any", struct.pack(">H", host_port), cip6 + struct.pack(">HH", cport, 0)))
        else:
            out.append((f"{proto}_ip", socket.inet_aton(host_ip) + struct.pack(">HH", host_port, 0), data))
    return out + out6
