"""The name server of each user-defined network: fastbox-dns (csrc/dns/fb_dns.c), one
small static process per network that has members, listening on the network's gateway
address, port 53, in the namespace that holds the bridge (as podman's aardvark-dns; Docker
puts its resolver at 127.0.0.11 inside each container). Members' resolv.conf names it;
it answers the members' names, aliases and short ids from the network's names directory
and forwards the rest to the container's --dns servers or the host's resolvers.

Its pid is recorded in FASTBOX_RUN/net/dns/<network>.pid (by itself, once it listens,
under a flock it holds for as long as it lives).
It is started under the network's lease lock by the first member's start (or connect),
once: later starts only check that it lives (one small read). It exits by itself a
second after the last member's name goes, deciding under that same lock: back-to-back
`run --rm` members, each the network's only one, find it still there. The sweep (the next command
that touches networks) stops one whose network is gone or empty and starts a dead one
again, so a SIGKILL anywhere leaves nothing behind for long."""
import os

from fastbox import config
from fastbox.state import process

BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "libexec", "fastbox-dns")


def dns_dir():
    return os.path.join(config.run_dir(), "net", "dns")


def pid_path(net):
    return os.path.join(dns_dir(), net.id[:12] + ".pid")


def _recorded(path):
    """(pid, start) of a responder's pid file, or None."""
    try:
        with open(path) as f:
            pid, start = (int(x) for x in f.read().split())
        return pid, start
    except (OSError, ValueError):
        return None


def running(net):
    """Whether net's responder lives: it holds a flock on its pid file for as long as
    it does (one open and one flock, ~5 us, on the start path of a member)."""
    return process.lock_held(pid_path(net), shared=True)


def ensure(net):
    """Under net's lease lock, once a member's name is in: whether its responder runs
    (started now if it does not). False: it cannot listen (a host program holds port 53
    on every address), and the members fall back to the host's resolvers."""
    return running(net) or _spawn(net)


def _spawn(net):
    from fastbox.network import endpoints, files, ipam
    config.private_dir(dns_dir())
    argv = [BINARY, "--gateway", net.gateway, "--names", files.names_dir(net),
            "--lock", os.path.join(ipam.leases_dir(net), ".lock"), "--pidfile", pid_path(net),
            "--endpoints", endpoints.endpoints_dir()] + (["--internal"] if net.internal else [])
    stale = os.path.exists(pid_path(net))
    if stale:  # its predecessor died: its port may be let go a moment after its flock
        argv += ["--retry-bind", "500"]
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(BINARY, argv, {}, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, w, 1), (os.POSIX_SPAWN_DUP2, w, 2)], setsid=True)
    except OSError as e:
        os.close(r)
        return _warn(net, f"{BINARY}: {e.strerror}")
    finally:
        os.close(w)
    try:
        out = b""
        while True:  # EOF once the parent went and the daemon let go of its stdio
            chunk = os.read(r, 4096)
            if not chunk:
                break
            out += chunk
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        if stale:  # the next start need not wait for a port someone else holds
            try:
                os.unlink(pid_path(net))
            except FileNotFoundError:
                pass
        return _warn(net, out.decode(errors="replace").strip())
    return True


def _warn(net, why):
    import sys
    print(f"fastbox: warning: no name server for network {net.name} (names resolve "
          f"through /etc/hosts only): {why}", file=sys.stderr)
    return False


def stop(net_id12):
    """Stop the responder of the network with that id (network rm, a sweep), and wait
    for it to be gone: its port 53 goes with it, and a member starting next would start
    another at once, whose bind failed while the killed one still held it."""
    path = os.path.join(dns_dir(), net_id12 + ".pid")
    rec = _recorded(path)
    if rec is not None and process.alive(*rec) and _is_responder(rec[0]):
        _kill_and_wait(*rec)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _kill_and_wait(pid, start, wait=2.0):
    """SIGKILL pid if it is still the process started at start; return once it has
    exited (its pidfd turns readable then), or after wait seconds."""
    import select
    import signal
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if process.start_time(pid) != start:  # reused meanwhile: not ours to kill
            return
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], wait)
    finally:
        os.close(fd)


def _is_responder(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "fastbox-dns"
    except OSError:
        return False


def sweep():
    """Responders whose network is gone or has no member: stopped; dead ones of
    networks with members: started again."""
    try:
        pids = [n for n in os.listdir(dns_dir()) if n.endswith(".pid")]
    except FileNotFoundError:
        return
    from fastbox.network import files, ipam, store
    nets = {n.id[:12]: n for n in store.list_all()}
    for name in pids:
        nid = name[:-len(".pid")]
        net = nets.get(nid)
        if net is None or not _members(files.names_dir(net)):
            stop(nid)
            continue
        if not running(net):
            with ipam.Locked(net):
                if _members(files.names_dir(net)) and not running(net):
                    _spawn(net)


def _members(d):
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []
