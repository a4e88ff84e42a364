"""Leave the host's network namespace for a new one with lo up: for the benchmarks and
the test suite, which start containers whose default network (the bridge) would otherwise
make a bridge, veths, an nft table and sysctl changes in the host's namespace. The
bridge, the nft table and the peers all work in there, on loopback."""
import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
MARK = "FASTBOX_PRIVATE_NETNS"  # the namespace we made, for our children to know it


def _netns():
    return str(os.stat("/proc/self/ns/net").st_ino)


def leave_host_netns(who):
    """Unshare a network namespace (lo up) unless this process is in one that we made or
    that is not PID 1's. PID 1's may be unreadable (root without ptrace rights over it, as
    on this machine): then we cannot tell, and unshare anyway (one more is harmless).
    who: named in the error."""
    if os.environ.get(MARK) == _netns():
        return
    try:
        if os.stat("/proc/1/ns/net").st_ino != int(_netns()):
            return  # a namespace of its own already (a VM, a test netns)
    except OSError:
        pass
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise SystemExit(f"{who}: cannot unshare a network namespace: "
                         f"{os.strerror(ctypes.get_errno())}")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ[MARK] = _netns()
