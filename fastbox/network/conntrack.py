"""Stale UDP conntrack entries of published ports, flushed as a container publishes them
(as Docker does): a UDP flow seen before the mapping existed (a client retrying against
a port nobody served yet) keeps its un-NATed entry, and with it every later datagram of
that flow would miss the container, until the entry times out.

Raw ctnetlink over the C `_socket` module (no `socket`, no library): dump the IPv4 (and
IPv6) UDP entries, delete those whose original destination port is one of ours. Only on a
start that publishes UDP ports."""
import _socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 1, 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
NLA_TYPE_MASK = 0x3FFF
IPPROTO_UDP = 17


def _attrs(data):
    """{type: payload} of a run of netlink attributes."""
    out, i = {}, 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return out


def _message(kind, flags, seq, payload, family=_socket.AF_INET):
    body = struct.pack("=BBH", family, 0, 0) + payload
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | kind, flags, seq, 0) + body


def _udp_dst_port(tuple_attr):
    t = _attrs(tuple_attr)
    proto = _attrs(t.get(CTA_TUPLE_PROTO, b""))
    if proto.get(CTA_PROTO_NUM, b"\0")[:1] != bytes([IPPROTO_UDP]):
        return None
    port = proto.get(CTA_PROTO_DST_PORT)
    return struct.unpack(">H", port[:2])[0] if port and len(port) >= 2 else None


def _read_all(s):
    """Messages until NLMSG_DONE (a dump) or the end of what is queued."""
    msgs = []
    while True:
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return msgs
        i = 0
        while i + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, i)
            if length < 16:
                return msgs
            if kind == NLMSG_DONE or (kind == NLMSG_ERROR and s.getblocking()):
                return msgs  # the dump's end, or its failure
            msgs.append((kind, data[i + 16:i + length]))
            i += (length + 3) & ~3


def flush_udp(ports, v6=False):
    """Delete the IPv4 UDP conntrack entries whose original destination port is in
    ports (and the IPv6 ones too if v6: a container with an IPv6 address publishes
    there too); returns how many went."""
    ports = set(ports)
    if not ports:
        return 0
    families = (_socket.AF_INET, _socket.AF_INET6) if v6 else (_socket.AF_INET,)
    return sum(_flush(ports, family) for family in families)


def _flush(ports, family):
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    try:
        s.bind((0, 0))
        s.send(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, b"", family))
        stale = []
        for kind, payload in _read_all(s):
            if kind >> 8 != NFNL_SUBSYS_CTNETLINK:
                continue
            orig = _attrs(payload[4:]).get(CTA_TUPLE_ORIG)
            if orig is not None and _udp_dst_port(orig) in ports:
                stale.append(orig)
        if not stale:
            return 0
        batch = b"".join(
            _message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2 + n,
                     struct.pack("=HH", 4 + len(orig), CTA_TUPLE_ORIG | 0x8000) + orig
                     + b"\0" * (-len(orig) % 4), family)
            for n, orig in enumerate(stale))
        s.send(batch)
        s.setblocking(False)
        _read_all(s)  # the acks (an entry that timed out meanwhile is no error)
        return len(stale)
    finally:
        s.close()
