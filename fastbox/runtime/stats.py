"""Resource accounting read from a container's cgroups (v1 and v2) and its processes."""
import os
import time

from fastbox.runtime import cgroup


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _dir_for(dirs, controller):
    """The container's directory in the hierarchy holding controller."""
    lay = cgroup.layout()
    mount = lay.v1.get(controller) if lay.v1 else lay.v2
    for d in dirs:
        if mount and d.startswith(mount.rstrip("/") + "/"):
            return d
    return None


def sample(dirs):
    """One reading: cpu ns used, memory usage/limit bytes (the limit is the host's
    memory when there is none, as Docker reports it), the inactive file cache within
    the usage (Docker's MEM USAGE leaves it out), block I/O bytes read and written,
    pids, and when it was taken."""
    lay = cgroup.layout()
    out = {"read_ns": time.monotonic_ns(), "cpu_ns": None, "memory_usage": None,
           "memory_limit": None, "memory_cache": None, "blkio_read": None, "blkio_write": None,
           "pids": None, "pids_limit": None, "online_cpus": os.cpu_count()}
    if lay.v1:
        cpu, mem, pids = _dir_for(dirs, "cpuacct"), _dir_for(dirs, "memory"), _dir_for(dirs, "pids")
        out["cpu_ns"] = _int(_read(f"{cpu}/cpuacct.usage")) if cpu else None
        if mem:
            out["memory_usage"] = _int(_read(f"{mem}/memory.usage_in_bytes"))
            out["memory_limit"] = _int(_read(f"{mem}/memory.limit_in_bytes"))
            out["memory_cache"] = _keyed(_read(f"{mem}/memory.stat")).get("total_inactive_file")
        blkio = _dir_for(dirs, "blkio")
        if blkio:
            io = _read(f"{blkio}/blkio.throttle.io_service_bytes")
            out["blkio_read"], out["blkio_write"] = _v1_io(io)
    else:
        d = dirs[0] if dirs else None
        pids = d
        if d:
            usage = _keyed(_read(f"{d}/cpu.stat"))
            if usage.get("usage_usec") is not None:
                out["cpu_ns"] = usage["usage_usec"] * 1000
            out["memory_usage"] = _int(_read(f"{d}/memory.current"))
            out["memory_limit"] = _int(_read(f"{d}/memory.max"))
            out["memory_cache"] = _keyed(_read(f"{d}/memory.stat")).get("inactive_file")
            out["blkio_read"], out["blkio_write"] = _v2_io(_read(f"{d}/io.stat"))
    if out["memory_usage"] is not None:
        host = _host_memory()
        limit = out["memory_limit"]
        out["memory_limit"] = host if limit is None or (host and limit > host) else limit
    if pids:
        out["pids"] = _int(_read(f"{pids}/pids.current"))
        out["pids_limit"] = _int(_read(f"{pids}/pids.max"))
    return out


def memory_used(s):
    """Docker's MEM USAGE: what the cgroup is charged, less its inactive file cache."""
    usage, cache = s.get("memory_usage"), s.get("memory_cache") or 0
    if usage is None:
        return None
    return usage - cache if cache < usage else usage


def memory_percent(s):
    used, limit = memory_used(s), s.get("memory_limit")
    return 100.0 * used / limit if used is not None and limit else None


def _keyed(text):
    """'key value' lines (cpu.stat, memory.stat) -> {key: int}."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        number = _int(value)
        if number is not None:
            out[key] = number
    return out


def _v2_io(text):
    """io.stat: '<maj:min> rbytes=N wbytes=N rios=N ...' per device -> (read, write)."""
    if text is None:
        return None, None
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += _int(value) or 0
            elif key == "wbytes":
                write += _int(value) or 0
    return read, write


def _v1_io(text):
    """blkio.throttle.io_service_bytes: '<maj:min> Read N' ... per device -> (read, write)."""
    if text is None:
        return None, None
    read = write = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in ("Read", "Write"):
            if fields[1] == "Read":
                read += _int(fields[2]) or 0
            else:
                write += _int(fields[2]) or 0
    return read, write


_host = []


def _host_memory():
    """MemTotal in bytes, once."""
    if not _host:
        total = None
        for line in (_read("/proc/meminfo") or "").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
        _host.append(total)
    return _host[0]


def cpu_percent(before, after):
    """Docker's figure: share of one CPU used between two samples, times 100."""
    if before["cpu_ns"] is None or after["cpu_ns"] is None:
        return None
    wall = after["read_ns"] - before["read_ns"]
    return 100.0 * (after["cpu_ns"] - before["cpu_ns"]) / wall if wall > 0 else 0.0


def processes(dirs):
    """(pid, ppid, user id, state, command) of every process in the container."""
    procs_dir = _dir_for(dirs, "pids") or (dirs[0] if dirs else None)
    text = _read(f"{procs_dir}/cgroup.procs") if procs_dir else None
    rows = []
    for pid in (text or "").split():
        stat = _read(f"/proc/{pid}/stat")
        cmdline = _read(f"/proc/{pid}/cmdline")
        status = _read(f"/proc/{pid}/status") or ""
        if stat is None:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        uid = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), "?")
        command = (cmdline or "").replace("\0", " ").strip() or stat[stat.index("(") + 1:stat.rindex(")")]
        rows.append({"pid": int(pid), "ppid": int(fields[1]), "uid": uid, "state": fields[0],
                     "command": command})
    return rows


def net_io(pid):
    """(received, sent) bytes of the network namespace of pid, lo left out (Docker's NET
    I/O), from /proc/<pid>/net/dev, which shows that namespace; None when it is gone or
    is the host's (--network host shares the host's counters: Docker shows none)."""
    if not pid:
        return None
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            return None
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return None
    rx = tx = 0
    for line in lines:
        name, _, fields = line.partition(":")
        if name.strip() == "lo":
            continue
        values = fields.split()
        rx, tx = rx + int(values[0]), tx + int(values[8])
    return rx, tx
