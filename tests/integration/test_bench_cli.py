"""`fastbox bench startup|copyup` and `fastbox burst` from the command line. Nothing here
asserts on time: only on the shape of what is printed and written, and (through
conftest) that nothing is left behind."""
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
PHASE_NAMES = {"resolve", "plan", "cgroup setup", "clone+namespaces", "cgroup join", "overlay",
               "pivot_root", "mounts", "exec", "run+exit", "teardown"}


def latency_rows(lines):
    """{contender: fields} of a startup table's latency rows (name, then n)."""
    return {f[0]: f for f in (line.split() for line in lines) if len(f) > 2 and f[1].isdigit()}


def run_cli(*args):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def peer_cgroups(pid):
    """Cgroups the peers' runs of the `fastbox` process `pid` made (and must remove)."""
    import glob
    return glob.glob(f"/sys/fs/cgroup/*/fastbox-peers/*-{pid}")


def test_startup_json_has_stats_and_phases(busybox):
    r = run_cli("bench", "startup", "-n", "20", "--warmup", "2", "--output", "json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    fb = result["contenders"]["fastbox"]
    assert fb["n"] == 20 and len(fb["runs_ms"]) == 20
    assert fb["min"] <= fb["median"] <= fb["p90"] <= fb["p99"] <= fb["max"]
    assert fb["ratio"] == 1.0
    stamps, durations = result["phases"]["stamps_ms"], result["phases"]["durations_ms"]
    assert {"image", "start", "cgroup_ready", "cloned", "rootfs", "pivot", "mounts", "exec",
            "execed", "exited", "total"} <= set(stamps)
    assert PHASE_NAMES <= set(durations)
    assert sum(durations.values()) == pytest.approx(stamps["total"])
    assert result["config"]["command"] == ["/bin/true"] and result["leftovers"] == []


def test_startup_pool_and_csv(busybox):
    r = run_cli("bench", "startup", "-n", "10", "--warmup", "1", "-c", "2", "--output", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    latency = [row for row in rows if row["section"] == "latency"]
    assert [row["name"] for row in latency] == ["fastbox pool"]
    assert latency[0]["n"] == "10"
    assert PHASE_NAMES <= {row["name"] for row in rows if row["section"] == "phase"}


@pytest.mark.skipif(not shutil.which("bwrap"), reason="bwrap is not installed")
def test_startup_compare_bwrap_adds_a_row(busybox):
    r = run_cli("bench", "startup", "-n", "5", "--warmup", "1", "--compare", "bwrap")
    assert r.returncode == 0, r.stderr
    rows = latency_rows(r.stdout.splitlines())
    assert rows["fastbox"][-1] == "1.00x"
    assert rows["bwrap"][1] == "5" and rows["bwrap"][-1].endswith("x")
    assert "fastbox phases" in r.stdout


@pytest.mark.skipif(not (shutil.which("runc") and shutil.which("crun")),
                    reason="runc and crun are not installed")
def test_startup_compare_runc_crun_one_run(busybox):
    p = subprocess.Popen([FASTBOX, "bench", "startup", "-n", "3", "--warmup", "1", "--compare",
                          "runc,crun", "--output", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, err = p.communicate()
    assert p.returncode == 0, err
    result = json.loads(out)
    assert set(result["contenders"]) == {"fastbox", "runc", "crun"}, result["skipped"]
    assert all(c["n"] == 3 and c["ratio"] > 0 for c in result["contenders"].values())
    assert result["leftovers"] == [] and peer_cgroups(p.pid) == []


def test_startup_compare_skips_a_missing_peer_with_a_note(busybox):
    if shutil.which("podman"):
        pytest.skip("podman is installed here")
    r = run_cli("bench", "startup", "-n", "3", "--warmup", "1", "--compare", "podman")
    assert r.returncode == 0, r.stderr
    assert "skipped podman: podman not installed" in r.stdout


def test_startup_rejects_an_unknown_peer(busybox):
    r = run_cli("bench", "startup", "--compare", "docker")
    assert r.returncode == 125
    assert r.stderr.startswith("fastbox: invalid --compare: unknown peer docker")


@pytest.mark.parametrize("name, magic", [("plot.png", b"\x89PNG"), ("plot.html", b"<!doctype html>")])
def test_startup_plot_writes_a_file(busybox, tmp_path, name, magic):
    pytest.importorskip("matplotlib")
    out = tmp_path / name
    r = run_cli("bench", "startup", "-n", "5", "--warmup", "1", "--plot", out)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(magic) and len(data) > 1000


def test_copyup_prints_a_table(busybox, fb_env):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no static timer")
    r = run_cli("bench", "copyup", "--sizes", "4k,1m", "--rounds", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(line for line in lines if line.startswith("op "))
    assert head.split()[-2:] == ["4k", "1m"]
    for variant in ("volume (no overlay)", "tmpfs upper (--rm)", "disk upper", "disk upper, volatile",
                    "disk upper, metacopy=on"):
        row = next(line for line in lines if line.startswith("write  " + variant + " "))
        assert all(float(x) >= 0 for x in row[len("write  ") + 28:].split())
    assert any(line.startswith("chmod  disk upper, metacopy=on") for line in lines)
    assert any(line.startswith("cheapest first write of 1m") for line in lines)
    # kept containers and the temp store are gone
    store = os.path.join(fb_env.root, "containers")
    assert set(os.listdir(store)) <= {"names"}  # names/: their generated names, all released
    assert not os.path.isdir(os.path.join(store, "names")) or os.listdir(os.path.join(store, "names")) == []
    # .private: fastbox.state.modes; events.log: `fastbox events` (foreground containers too)
    assert sorted(os.listdir(fb_env.root)) == [".private", "containers", "events.log", "images"]


def test_copyup_json(busybox):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no static timer")
    r = run_cli("bench", "copyup", "--sizes", "4k", "--rounds", "1", "--output", "json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["config"]["sizes"] == ["4k"]
    assert {(row["op"], row["variant"]) for row in result["rows"]} >= {
        ("write", "tmpfs upper (--rm)"), ("chmod", "disk upper, metacopy=on")}


def test_burst_prints_throughput(busybox):
    r = run_cli("burst", "-n", "20", "-c", "2", "--memory", "256m", "--cpus", "1",
                "--pids-limit", "1024", "busybox", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert "20 containers in " in r.stdout and "containers/s" in r.stdout
    assert "failures: 0" in r.stdout and "latency: median " in r.stdout
    assert r.stderr == ""  # no progress bar without a terminal


def test_burst_counts_failures_and_keeps_the_commands_dashes(busybox):
    r = run_cli("burst", "-n", "4", "-q", "--output", "json", "busybox", "sh", "-c", "exit 2")
    assert r.returncode == 1
    summary = json.loads(r.stdout)
    assert summary["exit_codes"] == {"2": 4} and summary["failures"] == 4
    assert summary["started"] == 4 and summary["per_second"] > 0


def test_burst_counts_start_failures(busybox):
    r = run_cli("burst", "-n", "3", "busybox", "/no/such/program")
    assert r.returncode == 1
    assert "failures: 3 (failed to start: 3)" in r.stdout
    assert "3 x CommandNotFound" in r.stdout
