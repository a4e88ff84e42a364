"""Test isolation for fastbox, and a check after every test that nothing leaked.

Every test gets its own FASTBOX_ROOT (so kept containers, names and `ps -a` never cross
tests) and FASTBOX_RUN; the image store is shared by the whole session through an
`images` symlink, so the built-in busybox (and the probe image) is built once. Containers'
cgroups go under a per-session parent, `fastbox-test-<pid>`, at the root of each hierarchy.

After each test the `_isolated` fixture fails the test (as an error at teardown) if:
  - a mount point under the test's or the session's temp dirs is still mounted here;
  - a cgroup remains under /sys/fs/cgroup/*/<parent>/ (or /sys/fs/cgroup/<parent>/ on v2);
  - a child process of the test process remains (this process is made a child
    subreaper, so a daemon that double-forked away from a `fastbox` CLI child is caught too);
  - (networks) a veth of fastbox's (fbv*) remains in the test process's network
    namespace, a network namespace named fb-net-<pid>-* made during the test remains, an
    element remains in a map of fastbox's nft table, or a lease, endpoint record or name
    server's pid file remains under the test's FASTBOX_RUN;
  - an engine still runs for the test's FASTBOX_RUN.
No test gets an engine it did not ask for: the `fastbox` C client starts one by itself
when none runs, so every test runs with FASTBOX_NO_ENGINE=1, except those marked
`engine`, whose FASTBOX_RUN starts with engine.off instead (what `fastbox engine stop`
leaves: no engine starts by itself until the test runs `fastbox engine start`, or
removes the file to test the automatic start).
What leaked is then cleaned up, so one leak does not fail every later test.

The whole session runs in a network namespace of its own: if pytest starts in the
host's (that of PID 1), it unshares one at import, with lo up, before any test runs, so
that no bridge, veth, nft table, route or sysctl any test makes (a CLI `run` defaults to
the bridge network) can reach the host's. test.sh also starts pytest in one.
"""
import errno
import glob
import importlib.util
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36
PROBE_IMAGE = "fastbox-test/probe:latest"
CGROUP_PARENT = f"fastbox-test-{os.getpid()}"


def _private_netns():
    from fastbox.bench.private_netns import leave_host_netns
    leave_host_netns("conftest")


_private_netns()


def _load_build():
    spec = importlib.util.spec_from_file_location("fastbox_probe_build",
                                                  os.path.join(HERE, "probe", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- what the host holds

def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(*roots):
    """Mount points in our mount namespace at or below any of roots."""
    roots = [os.path.realpath(r) for r in roots if r]
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = _unescape(line.split()[4])
            if any(mountpoint == r or mountpoint.startswith(r + "/") for r in roots):
                found.append(mountpoint)
    return found


def cgroup_parent_dirs(parent=CGROUP_PARENT):
    """<hierarchy>/<parent> for every cgroup hierarchy that has one."""
    dirs = glob.glob(f"/sys/fs/cgroup/*/{parent}") + glob.glob(f"/sys/fs/cgroup/{parent}")
    return sorted(d for d in dirs if os.path.isdir(d))


def cgroups_under(parent=CGROUP_PARENT):
    """Every cgroup below <hierarchy>/<parent>, deepest first."""
    found = []
    for top in cgroup_parent_dirs(parent):
        for dirpath, dirnames, _ in os.walk(top):
            found.extend(os.path.join(dirpath, d) for d in dirnames)
    return sorted(found, key=len, reverse=True)


def _netlink_dump(protocol, msg_type, payload):
    """The messages of a netlink dump: [(type, body after the header)]. In-process, where
    `ip` and `nft` cost a process each after every test (~1 s of each test's teardown in
    the VM lane's emulated guest)."""
    import socket
    import struct
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol) as sock:
        sock.bind((0, 0))
        sock.send(struct.pack("=IHHII", 16 + len(payload), msg_type, 0x301, 1, 0) + payload)  # REQUEST|DUMP
        out = []
        while True:
            data = sock.recv(1 << 16)
            while data:
                length, kind = struct.unpack_from("=IH", data)
                if kind == 3:  # NLMSG_DONE
                    return out
                if kind == 2:  # NLMSG_ERROR
                    errno_ = -struct.unpack_from("=i", data, 16)[0]
                    if errno_:
                        raise OSError(errno_, os.strerror(errno_))
                    return out
                out.append((kind, data[16:length]))
                data = data[(length + 3) & ~3:]


def _attributes(data):
    """{type: payload} of a run of netlink attributes."""
    import struct
    attrs = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        attrs[kind & 0x3fff] = data[4:length]  # without NLA_F_NESTED / NET_BYTEORDER
        data = data[(length + 3) & ~3:]
    return attrs


def fastbox_veths():
    """fastbox's veths in use (carrier up) in our namespace. A veth lives exactly as long
    as the namespace of its other end, so one that outlives its test means a container, a
    process or a held namespace leaked. Not counted: a spare's (fastbox.runtime.spare),
    whose container end is down until a container is started in it: a live process (an
    engine) keeps one ready, and it goes with that process. (What `ip -o link show type
    veth` lists, with LOWER_UP among its flags, read from netlink here.)"""
    import socket
    import struct
    found = []
    for _, body in _netlink_dump(socket.NETLINK_ROUTE, 18, bytes(16)):  # RTM_GETLINK, AF_UNSPEC
        flags = struct.unpack_from("=I", body, 8)[0]  # struct ifinfomsg's ifi_flags
        attrs = _attributes(body[16:])
        name = attrs.get(3, b"").rstrip(b"\0").decode()  # IFLA_IFNAME
        kind = _attributes(attrs.get(18, b"")).get(1, b"").rstrip(b"\0")  # IFLA_LINKINFO, KIND
        if kind == b"veth" and name.startswith("fbv") and flags & 0x10000:  # IFF_LOWER_UP
            found.append(name)
    return sorted(found)


def test_netns_names():
    """This session's: tests name theirs fb-net-<pytest's pid>-... (others' are not ours
    to judge, nor to remove)."""
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith(f"fb-net-{os.getpid()}-")}
    except FileNotFoundError:
        return set()


def _fastbox_table_exists():
    """Whether our namespace has nftables table `inet fastbox` (NFT_MSG_GETTABLE, read from
    netlink): most tests make none, and `nft` is then not run at all."""
    try:
        tables = _netlink_dump(12, (10 << 8) | 1, bytes([1, 0, 0, 0]))  # NETFILTER; NFTABLES, GETTABLE; NFPROTO_INET
    except OSError:
        return True  # cannot tell: let nft say
    return any(_attributes(body[4:]).get(1, b"").rstrip(b"\0") == b"fastbox" for _, body in tables)


def nft_elements_left():
    """Lines of elements in the maps of fastbox's table in our namespace."""
    if not _fastbox_table_exists():
        return []
    r = subprocess.run(["nft", "list", "table", "inet", "fastbox"], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return [line.strip() for line in r.stdout.splitlines() if "elements = " in line]


def network_state_left(run):
    """Lease files, endpoint records and name servers' pid files under a FASTBOX_RUN
    (a name server's process is a child of ours, the subreaper: caught as one)."""
    left = glob.glob(os.path.join(run, "net", "leases", "*", "*"))
    left += glob.glob(os.path.join(run, "net", "endpoints", "*"))
    left += glob.glob(os.path.join(run, "net", "dns", "*"))
    return sorted(p for p in left if not p.endswith("/.lock"))


def _held_by(path):
    """A lease file and what it names (the container id), for the leak report."""
    try:
        with open(path) as f:
            return f"{path} ({f.read(80).strip()})"
    except OSError:
        return path


def _clean_network(veths, netns, run):
    for v in veths:
        subprocess.run(["ip", "link", "del", v], capture_output=True)
    for n in netns:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    subprocess.run(["nft", "delete", "table", "inet", "fastbox"], capture_output=True)
    for p in network_state_left(run):
        os.unlink(p)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return int(data.rpartition(")")[2].split()[1])


def child_processes(of=None):
    """(pid, state, cmdline) of every process whose parent is `of` (default: us)."""
    of = os.getpid() if of is None else of
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and _ppid(name) == of:
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                with open(f"/proc/{name}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
            except OSError:
                continue
            out.append((int(name), state, cmd))
    return out


def _lasting_children(before, grace=2.0):
    """New children still there after GRACE seconds: one that has been told to go (a
    monitor removing its container, then exiting) is reaped here, not reported."""
    deadline = time.monotonic() + grace
    while True:
        children = [c for c in child_processes() if c[0] not in before]
        for pid, state, _ in children:
            if state == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        if not children or time.monotonic() > deadline:
            return children
        time.sleep(0.02)


def _kill_and_reap(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _remove_cgroups(dirs):
    for d in dirs:
        for _ in range(200):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    break
                for procs in ("cgroup.procs",):  # a leaked task: kill it, then retry
                    try:
                        with open(os.path.join(d, procs)) as f:
                            for pid in f.read().split():
                                try:
                                    os.kill(int(pid), signal.SIGKILL)
                                except ProcessLookupError:
                                    pass
                    except OSError:
                        pass
                time.sleep(0.01)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def session_dirs(tmp_path_factory):
    """The session's shared image store and its cgroup parent."""
    base = tmp_path_factory.mktemp("fastbox-session")
    images = base / "images"
    images.mkdir()
    return SimpleNamespace(base=str(base), images=str(images), cgroup_parent=CGROUP_PARENT)


@pytest.fixture(scope="session", autouse=True)
def _session_cleanup(session_dirs):
    """Become a child subreaper; at the end, remove this session's cgroup parents (only)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass
    yield
    leftovers = cgroups_under()
    _remove_cgroups(leftovers)
    for d in cgroup_parent_dirs():
        try:
            os.rmdir(d)
        except OSError as e:
            print(f"conftest: cannot remove {d}: {e}", file=sys.stderr)


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: uses the fastbox engine (FASTBOX_NO_ENGINE "
                                       "unset; engine.off in the test's FASTBOX_RUN)")


def _engine_left(run):
    """The pid of an engine still running for run, after stopping it; None if none."""
    try:
        with open(os.path.join(run, "engine.pid")) as f:
            pid, started = (int(x) for x in f.read().split())
        with open(f"/proc/{pid}/stat") as f:
            if int(f.read().rpartition(")")[2].split()[19]) != started:
                return None
    except (OSError, ValueError):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.02)
    return pid


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path, session_dirs, request):
    """Per-test FASTBOX_ROOT (images shared with the session) and FASTBOX_RUN; the leak
    check after the test."""
    root = tmp_path / "fbroot"
    run = tmp_path / "fbrun"
    root.mkdir()
    run.mkdir()
    os.symlink(session_dirs.images, root / "images")
    monkeypatch.setenv("FASTBOX_ROOT", str(root))
    monkeypatch.setenv("FASTBOX_RUN", str(run))
    monkeypatch.setenv("FASTBOX_CGROUP_PARENT", session_dirs.cgroup_parent)
    # No test reads the host's /etc/fastbox/config.json: each has its own (absent) one.
    monkeypatch.setenv("FASTBOX_CONFIG", str(tmp_path / "fastbox-config.json"))
    if request.node.get_closest_marker("engine"):
        monkeypatch.delenv("FASTBOX_NO_ENGINE", raising=False)
        (run / "engine.off").touch()
    else:
        monkeypatch.setenv("FASTBOX_NO_ENGINE", "1")
    before = {p for p, _, _ in child_processes()}
    netns_before = test_netns_names()
    yield SimpleNamespace(root=str(root), run=str(run), tmp=str(tmp_path))

    problems = []
    engine = _engine_left(str(run))
    if engine:
        problems.append(f"engine left running: pid {engine}")
    mounts = mounts_under(str(tmp_path), str(run), session_dirs.base)
    if mounts:
        problems.append(f"mounts left: {mounts}")
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], capture_output=True)
    cgroups = cgroups_under()
    if cgroups:
        problems.append(f"cgroups left: {cgroups}")
        _remove_cgroups(cgroups)
    children = _lasting_children(before)
    if children:
        problems.append(f"child processes left: {children}")
        _kill_and_reap([p for p, _, _ in children])
    # the kernel deletes a veth with its namespace, asynchronously, and a monitor releases
    # its container's lease and record after it has removed the cgroups: give them a moment
    deadline = time.monotonic() + 3
    while (fastbox_veths() or network_state_left(str(run))) and time.monotonic() < deadline:
        time.sleep(0.02)
    veths, netns = fastbox_veths(), sorted(test_netns_names() - netns_before)
    elements, state = nft_elements_left(), network_state_left(str(run))
    if veths or netns or elements or state:
        problems.append(f"network left: veths {veths}, netns {netns}, nft {elements}, "
                        f"leases/endpoints {[_held_by(p) for p in state]}")
        _clean_network(veths, netns, str(run))
    if problems:
        pytest.fail("leak after test: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def fb_env(_isolated):
    """The test's FASTBOX_ROOT / FASTBOX_RUN / tmp dir."""
    return _isolated


@pytest.fixture(scope="session")
def probe(session_dirs, tmp_path_factory):
    """An image with busybox and the static probe at /probe; `probe.run(*args, **opts)`
    runs `/probe args...` in a fresh container with captured output."""
    build = _load_build()
    if build.compiler() is None:
        pytest.skip("gcc is not installed: cannot build the probe")
    work = tmp_path_factory.mktemp("probe")
    try:
        binary = build.compile_probe(str(work / "probe"))
    except subprocess.CalledProcessError as e:
        if b"-lc" in e.stderr or b"cannot find" in e.stderr:
            pytest.skip(f"no static libc to link the probe: {e.stderr.decode()[-300:]}")
        raise
    tarball = build.write_rootfs(str(work / "rootfs.tar"), binary)
    from fastbox.images.store import ImageStore
    image = ImageStore(root=session_dirs.images).import_tar(tarball, PROBE_IMAGE)

    def run(*args, **opts):
        import fastbox
        opts.setdefault("capture_output", True)
        return fastbox.run(PROBE_IMAGE, ["/probe", *map(str, args)], **opts)

    return SimpleNamespace(image=PROBE_IMAGE, binary=binary, tarball=tarball, image_id=image.id,
                           layer_dirs=image.layer_dirs, run=run)
