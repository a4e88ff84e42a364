"""How fast fastbox-monitor turns a container's output into its json-file log.

    python benchmarks/monitor_throughput.py [--against OTHER_MONITOR] [--mb 100] [-n 3]

The monitor alone, without a container: a child `cat`s a prepared file into a pipe and the
monitor, exec'd in its place, is that child's parent, as it is a container's. Inputs: base64
of random bytes (76-character lines, the usual text flood) and NUL bytes (each one 6 bytes of
JSON), each with no limit and with the default 10m x 3. Reported: the best of n runs, in MB/s
of input, and the CPU seconds of the monitor and its cat. --against times another monitor
binary too (e.g. one built from an older commit) on the inputs with no limit.
"""
import argparse
import base64
import os
import resource
import shutil
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def installed_monitor():
    from fastbox.runtime import monitor
    return monitor.MONITOR


def run_once(monitor, source, workdir, limits):
    """(wall seconds, monitor CPU seconds)."""
    log = os.path.join(workdir, "container.log")
    for name in os.listdir(workdir):
        if name.startswith("container.log") or name == "exit.json":
            os.unlink(os.path.join(workdir, name))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # becomes the monitor, parent of the cat below
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cat = os.fork()
        if cat == 0:
            os.dup2(out_w, 1)
            os.execvp("cat", ["cat", source])
        os.close(out_w)
        os.close(err_w)
        os.set_inheritable(out_r, True)
        os.set_inheritable(err_r, True)
        os.execv(monitor, [monitor, "--pid", str(cat), "--log", log, "--exit",
                           os.path.join(workdir, "exit.json"), "--stdout", str(out_r),
                           "--stderr", str(err_r), *limits])
    os.waitpid(pid, 0)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--against", help="another fastbox-monitor binary to time as well")
    ap.add_argument("--mb", type=int, default=100,
                    help="MB of random bytes to base64 (half as many NUL bytes)")
    ap.add_argument("-n", type=int, default=3)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="fb-monitor-bench-")
    try:
        inputs = {}
        text = os.path.join(workdir, "base64.txt")
        with open(text, "wb") as f:
            f.write(base64.encodebytes(os.urandom(args.mb * 10 ** 6)))
        inputs["base64 text"] = text
        nul = os.path.join(workdir, "nul.bin")
        with open(nul, "wb") as f:
            f.write(bytes(args.mb * 10 ** 6 // 2))
        inputs["NUL bytes"] = nul
        monitors = [("installed", installed_monitor())]
        if args.against:
            monitors.append(("against", args.against))
        print(f"{'monitor':<10} {'input':<12} {'limit':<8} {'MB in':>7} {'MB/s':>8} {'CPU s':>7}")
        for label, path in monitors:
            for what, source in inputs.items():
                limits = [("none", [])]
                if label == "installed":
                    limits.append(("10m x 3", ["--log-max-size", "10000000",
                                               "--log-max-file", "3"]))
                for limit_name, limit in limits:
                    runs = [run_once(path, source, workdir, limit) for _ in range(args.n)]
                    wall, cpu = min(runs)
                    mb = os.path.getsize(source) / 1e6
                    print(f"{label:<10} {what:<12} {limit_name:<8} {mb:7.0f} {mb / wall:8.0f} "
                          f"{cpu:7.2f}")
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
