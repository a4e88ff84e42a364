"""The engine's side of the client protocol (fastbox/engine/protocol.py) over a real
SOCK_SEQPACKET socket pair, and how a caller's options are read in its place."""
import array
import os
import socket

import pytest

from fastbox.cli import run_command
from fastbox.engine import protocol, server
from fastbox.errors import SpecError


def request_bytes(argv, environ, cwd="/work", argc=None, envc=None):
    """A request as csrc/client/fb_client.c builds it."""
    fields = [b"FBCLI1", cwd.encode(), str(len(argv) if argc is None else argc).encode()]
    fields += [a.encode() for a in argv]
    fields.append(str(len(environ) if envc is None else envc).encode())
    fields += [e.encode() for e in environ]
    return b"".join(f + b"\0" for f in fields)


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        yield a, b


def send(sock, data, nfds=3):
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(nfds)]
    try:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                     if fds else [])
    finally:
        for fd in fds:
            os.close(fd)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_a_request_arrives_whole_with_its_fds(pair):
    client, engine = pair
    argv = ["fastbox", "run", "--rm", "busybox", "echo", "", "a b"]
    env = ["FASTBOX_ROOT=/x", "EMPTY=", "EQ=a=b"]
    send(client, request_bytes(argv, env))
    req = protocol.receive(engine)
    try:
        assert req.args == ["run", "--rm", "busybox", "echo", "", "a b"]  # empty argument kept
        assert req.environ == {"FASTBOX_ROOT": "/x", "EMPTY": "", "EQ": "a=b"}
        assert req.cwd == "/work"
        assert (req.pid, req.uid) == (os.getpid(), os.geteuid())
        assert len(req.fds) == 3
        for fd in req.fds:  # received close-on-exec: no container or child inherits them
            assert os.get_inheritable(fd) is False
    finally:
        req.close()


def test_a_large_environment_fits(pair):
    client, engine = pair
    env = [f"VAR{i}={'x' * 100}" for i in range(1000)]  # ~110 KB
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    send(client, request_bytes(["fastbox", "run", "busybox"], env))
    req = protocol.receive(engine)
    req.close()
    assert len(req.environ) == 1000


@pytest.mark.parametrize("data, nfds", [
    (b"garbage", 3),
    (request_bytes(["fastbox", "run", "busybox"], []), 0),
    (request_bytes(["fastbox", "run", "busybox"], []), 2),
    (request_bytes(["fastbox", "run", "busybox"], [], argc=9), 3),
    (request_bytes(["fastbox", "run", "busybox"], ["A=1"], envc=0), 3),
    (request_bytes(["fastbox"], []), 3),
    (request_bytes(["fastbox", "run"], [])[:-1], 3),  # no final NUL
])
def test_a_bad_request_is_refused_and_its_fds_closed(pair, data, nfds):
    client, engine = pair
    before = open_fds()
    send(client, data, nfds)
    with pytest.raises(protocol.ProtocolError):
        protocol.receive(engine)
    assert open_fds() == before


def test_a_client_that_hangs_up_before_asking(pair):
    client, engine = pair
    client.close()
    with pytest.raises(protocol.ProtocolError):
        protocol.receive(engine)


def test_signal_messages():
    assert protocol.signal_of(b"K15") == 15
    assert protocol.signal_of(b"K2") == 2
    for bad in (b"K", b"K-1", b"X0", b"Kx", b""):
        assert protocol.signal_of(bad) is None
    assert protocol.exit_reply(137) == b"X137"


@pytest.fixture
def elsewhere(tmp_path):
    """A directory that is not our working directory, as an O_PATH fd."""
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def test_options_are_read_in_the_clients_place(elsewhere):
    tmp_path, dir_fd = elsewhere
    (tmp_path / "rel.env").write_text("FROM_FILE=1\nHOME_OF_CLIENT\nENGINE_ONLY\n")
    (tmp_path / "abs.env").write_text("ABS=2\n")
    caller = run_command.Caller(environ={"HOME_OF_CLIENT": "/c", "EMPTY": ""}, dir_fd=dir_fd)
    opts = {"env": ["A=1", "HOME_OF_CLIENT", "EMPTY", "NOT_SET_THERE"],
            "env_file": ["rel.env", str(tmp_path / "abs.env")], "memory": "1g"}
    os.environ["ENGINE_ONLY"] = "never"
    try:
        got = run_command._as_caller(opts, caller)
    finally:
        del os.environ["ENGINE_ONLY"]
    # KEY is the client's value; unset there, it is dropped (never the engine's own).
    assert got["env"] == ["FROM_FILE=1", "HOME_OF_CLIENT=/c", "ABS=2", "A=1", "EMPTY="]
    assert "env_file" not in got and got["memory"] == "1g"
    assert opts["env"][1] == "HOME_OF_CLIENT"  # the caller's dict is left alone


def test_a_missing_env_file_is_named_as_the_client_gave_it(elsewhere):
    caller = run_command.Caller(environ={}, dir_fd=elsewhere[1])
    with pytest.raises(SpecError, match="cannot read --env-file 'missing.env'"):
        run_command._as_caller({"env_file": ["missing.env"]}, caller)


def test_settings_compared_are_the_fastbox_ones():
    env = {"FASTBOX_ROOT": "/r", "FASTBOX_RUN": "/run/x", "PATH": "/bin", "FASTBOXX": "1"}
    assert server.fastbox_settings(env) == {"FASTBOX_ROOT": "/r", "FASTBOX_RUN": "/run/x"}


def test_a_process_has_the_context_of_its_own_kind():
    """Context(pid) of this process equals itself and differs from one with other limits."""
    import resource
    import subprocess
    import sys
    mine = server.Context(os.getpid())
    assert mine == server.Context(os.getpid())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                   (min(soft, 512), hard)))
    try:
        assert server.Context(child.pid) != mine
    finally:
        child.communicate(b"")
