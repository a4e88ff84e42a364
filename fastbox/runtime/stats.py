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
    """One reading: cpu ns used, memory usage/limit bytes, pids, and when it was taken."""
    lay = cgroup.layout()
    out = {"read_ns": time.monotonic_ns(), "cpu_ns": None, "memory_usage": None,
           "memory_limit": None, "pids": None, "pids_limit": None, "online_cpus": os.cpu_count()}
    if lay.v1:
        cpu, mem, pids = _dir_for(dirs, "cpuacct"), _dir_for(dirs, "memory"), _dir_for(dirs, "pids")
        out["cpu_ns"] = _int(_read(f"{cpu}/cpuacct.usage")) if cpu else None
        if mem:
            out["memory_usage"] = _int(_read(f"{mem}/memory.usage_in_bytes"))
            out["memory_limit"] = _int(_read(f"{mem}/memory.limit_in_bytes"))
    else:
        d = dirs[0] if dirs else None
        pids = d
        if d:
            usage = dict(line.split() for line in (_read(f"{d}/cpu.stat") or "").splitlines())
            out["cpu_ns"] = _int(usage.get("usage_usec")) * 1000 if usage.get("usage_usec") else None
            out["memory_usage"] = _int(_read(f"{d}/memory.current"))
            out["memory_limit"] = _int(_read(f"{d}/memory.max"))
    if pids:
        out["pids"] = _int(_read(f"{pids}/pids.current"))
        out["pids_limit"] = _int(_read(f"{pids}/pids.max"))
    return out


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
