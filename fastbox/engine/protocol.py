"""What the C client (csrc/client/fb_client.c) and the engine say to each other, over a
SOCK_SEQPACKET unix socket, one message per read.

client -> engine: "FBCLI1\\0" cwd\\0 argc\\0 argv...\\0 envc\\0 env...\\0, with its fds 0-2
                  (SCM_RIGHTS); then "K<signo>" for each signal it gets.
engine -> client: "F": run the Python CLI instead (nothing has been done),
                  "X<code>": exit with code (any error is already on the client's stderr),
                  or "S<signo>": the command died of that signal; so does the client.
"""
import array
import os
import socket
import struct

MAGIC = b"FBCLI1"
MAX_REQUEST = 1 << 20  # argv + environment; the kernel's own limit is lower
FALLBACK = b"F"


class ProtocolError(Exception):
    """A peer that is not our client, or a malformed request: the connection is dropped."""


class ClientRequest:
    """One command from a client: its arguments after `fastbox` (the command first),
    environment, working directory, its stdio fds (owned by this object until close())
    and its pid."""

    __slots__ = ("args", "environ", "cwd", "fds", "pid", "uid")

    def __init__(self, args, environ, cwd, fds, pid, uid):
        self.args, self.environ, self.cwd, self.fds = args, environ, cwd, fds
        self.pid, self.uid = pid, uid

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = ()


def peer(conn):
    """(pid, uid, gid) of the process that connected, as the kernel recorded them at
    connect(): its effective ids, which no later setuid of the client changes."""
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               struct.calcsize("3i")))


def discard(conn):
    """Drops the message waiting on conn, if any, unread: without room for ancillary data
    the kernel closes any fds it carries instead of installing them in us. Returns False
    once the peer has hung up."""
    try:
        return conn.recv(1, socket.MSG_DONTWAIT | socket.MSG_TRUNC) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def receive(conn):
    """Reads the request waiting on conn; ProtocolError if there is none or it is bad."""
    size = conn.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
    if size == 0:
        raise ProtocolError("the client went away before asking")
    if size > MAX_REQUEST:
        raise ProtocolError(f"request of {size} bytes")
    data, ancdata, flags, _ = conn.recvmsg(size, socket.CMSG_SPACE(3 * 4),
                                           socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    pid, uid, _ = peer(conn)
    request = ClientRequest(None, None, None, tuple(fds), pid, uid)
    try:
        if len(fds) != 3 or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError("a request without exactly three fds")
        request.cwd, argv, request.environ = _decode(data)
        request.args = argv[1:]
    except BaseException:
        request.close()
        raise
    return request


def _decode(data):
    fields = data.split(b"\0")
    if len(fields) < 5 or fields[0] != MAGIC or fields[-1] != b"":
        raise ProtocolError("not a fastbox request")
    try:
        argc = int(fields[2])
        envc = int(fields[3 + argc])
    except (ValueError, IndexError):
        raise ProtocolError("bad argument or environment count") from None
    if argc < 2 or len(fields) != 5 + argc + envc:
        raise ProtocolError("argument or environment count does not match the request")
    argv = [os.fsdecode(f) for f in fields[3:3 + argc]]
    environ = {}
    for item in fields[4 + argc:-1]:
        key, _, value = item.partition(b"=")
        environ[os.fsdecode(key)] = os.fsdecode(value)
    return os.fsdecode(fields[1]), argv, environ


def exit_reply(code):
    return b"X%d" % code


def signal_reply(signo):
    return b"S%d" % signo


def signal_of(message):
    """The signal number in a "K<signo>" message, or None."""
    if message[:1] == b"K" and message[1:].isdigit():
        return int(message[1:])
    return None
