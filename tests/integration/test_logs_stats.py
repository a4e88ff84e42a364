"""What the monitor records and what the cgroups account: `logs` (Docker's json-file
format, both streams, timestamps, --tail, -t, -f), `stats` (memory, cpu, pids, limits)
and `top`, through the API and the CLI.

Order across stdout and stderr is only defined when the writes are ordered in time, so
the ordering test makes the container wait for the test to see each line before it
writes the next (a handshake through files created with exec), never on sleeps.
"""
import datetime
import json
import os
import re
import subprocess
import threading

import pytest
from pipe_lines import Lines

from fastbox import containers
from fastbox.runtime import stats as cg_stats

from test_lifecycle import (FASTBOX, GO, cli, eventually, one_line_error,  # noqa: F401
                            reap, start, touch_go, wait_for_log)  # (reap: an autouse fixture)

RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
MIB = 1024 * 1024


def waiter(name):
    return f"while [ ! -e /{name} ]; do sleep 0.02; done"


def log_entries(c):
    """The raw json-file entries (none while the monitor has not created the file)."""
    try:
        with open(c.inspect()["LogPath"], "rb") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def parse_time(text):
    return datetime.datetime.strptime(text[:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


@pytest.fixture
def ordered(busybox):
    """A container that wrote o1 (stdout), e1 (stderr), o2, e2 in that order, each only
    after the test had seen the previous one in the log; then it waits for /end."""
    c = start(["sh", "-c", f"echo o1; {waiter('g1')}; echo e1 >&2; {waiter('g2')}; echo o2; "
                           f"{waiter('g3')}; echo e2 >&2; {waiter('end')}; exit 0"], name="ordered")
    try:
        for line, gate in (("o1", "g1"), ("e1", "g2"), ("o2", "g3"), ("e2", None)):
            eventually(lambda: any(e["log"] == line + "\n" for e in log_entries(c)),
                       what=f"{line} logged")
            if gate:
                assert c.exec_run(["touch", "/" + gate]).exit_code == 0
        yield c
    finally:
        c.remove(force=True)


# ------------------------------------------------------------------ the log file

def test_log_is_json_lines_with_stream_and_time_in_order(ordered):
    entries = log_entries(ordered)
    assert [(e["stream"], e["log"]) for e in entries] == [
        ("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n"), ("stderr", "e2\n")]
    for e in entries:
        assert set(e) == {"log", "stream", "time"}
        assert RFC3339_NANO.match(e["time"]), e["time"]
    times = [parse_time(e["time"]) for e in entries]
    assert times == sorted(times)
    created = datetime.datetime.fromisoformat(ordered.attrs["created_at"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert created - datetime.timedelta(seconds=1) <= times[0] <= times[-1] <= now


def test_logs_api_streams(ordered):
    assert ordered.logs() == b"o1\ne1\no2\ne2\n"
    assert ordered.logs(stderr=False) == b"o1\no2\n"
    assert ordered.logs(stdout=False) == b"e1\ne2\n"
    assert ordered.logs(tail=1) == b"e2\n"


def test_logs_cli_writes_each_stream_to_its_own(ordered):
    r = cli("logs", "ordered")
    assert (r.returncode, r.stdout, r.stderr) == (0, "o1\no2\n", "e1\ne2\n")
    r = cli("logs", ordered.id[:12])
    assert r.stdout == "o1\no2\n"


def test_logs_timestamps(ordered):
    entries = log_entries(ordered)
    r = cli("logs", "-t", "ordered")
    out = r.stdout.splitlines()
    err = r.stderr.splitlines()
    assert out == [f"{e['time']} {e['log'].rstrip()}" for e in entries if e["stream"] == "stdout"]
    assert err == [f"{e['time']} {e['log'].rstrip()}" for e in entries if e["stream"] == "stderr"]
    assert r.stdout == cli("logs", "--timestamps", "ordered").stdout
    assert ordered.logs(timestamps=True).decode().splitlines() == [
        f"{e['time']} {e['log'].rstrip()}" for e in entries]


def test_logs_tail(busybox):
    c = start(["sh", "-c", f"seq 1 10; {GO}"])
    try:
        wait_for_log(c, "10\n")
        assert cli("logs", "--tail", "3", c.id).stdout == "8\n9\n10\n"
        assert cli("logs", "-n", "1", c.id).stdout == "10\n"
        assert cli("logs", "--tail", "0", c.id).stdout == ""
        assert cli("logs", "--tail", "100", c.id).stdout == "".join(f"{i}\n" for i in range(1, 11))
        assert c.logs(tail=2) == b"9\n10\n"
        r = cli("logs", "--tail", "2", "-t", c.id)
        assert [line.split(" ", 1)[1] for line in r.stdout.splitlines()] == ["9", "10"]
    finally:
        c.remove(force=True)


def test_logs_of_a_created_and_of_a_missing_container(busybox):
    c = containers.create("busybox", ["echo", "never"], name="idle")
    r = cli("logs", "idle")
    assert (r.returncode, r.stdout) == (0, "")
    assert c.logs() == b""
    c.remove()
    r = cli("logs", "nosuch")
    assert r.returncode == 1
    one_line_error(r)


def test_logs_survive_the_container(busybox):
    c = start(["sh", "-c", "echo before-exit; echo err-before-exit >&2; exit 3"])
    assert c.wait() == 3
    r = cli("logs", c.id)
    assert (r.stdout, r.stderr) == ("before-exit\n", "err-before-exit\n")
    c.remove()


def test_long_lines_are_split_and_partial_lines_flushed(busybox):
    c = start(["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline at exit'"])
    assert c.wait() == 0
    entries = log_entries(c)
    assert "".join(e["log"] for e in entries) == "x" * 40000 + "\nno newline at exit"
    assert all(len(e["log"].encode()) <= 16384 for e in entries)
    assert entries[-1]["log"] == "no newline at exit"
    assert c.logs() == b"x" * 40000 + b"\nno newline at exit"
    c.remove()


def test_special_characters_round_trip(busybox):
    text = 'quote " backslash \\ tab \t cr \r bell \a utf-8 é 日本 end'
    c = start(["sh", "-c", 'printf "%s\\n" "$1"', "_", text])
    assert c.wait() == 0
    assert c.logs() == (text + "\n").encode()
    r = subprocess.run([FASTBOX, "logs", c.id], capture_output=True, stdin=subprocess.DEVNULL)
    assert r.stdout == (text + "\n").encode()
    c.remove()


def test_non_utf8_output_does_not_break_logs(busybox):
    """A container may write any bytes; `logs` must still print the rest (Docker replaces
    invalid UTF-8 with U+FFFD) rather than fail on the whole log."""
    c = start(["sh", "-c", "echo first; printf 'a\\377b\\n'; echo last"])
    assert c.wait() == 0
    r = subprocess.run([FASTBOX, "logs", c.id], capture_output=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == b"first" and lines[-1] == b"last"
    assert lines[1].startswith(b"a") and lines[1].endswith(b"b")
    assert c.logs().startswith(b"first\na")
    c.remove()


def test_tty_container_logs(busybox):
    c = start(["sh", "-c", "test -t 1 && echo on-a-tty; echo to-stderr >&2"], tty=True)
    assert c.wait() == 0
    entries = log_entries(c)
    assert {e["stream"] for e in entries} == {"stdout"}  # a terminal has one stream
    assert c.logs().replace(b"\r\n", b"\n") == b"on-a-tty\nto-stderr\n"
    c.remove()


# ------------------------------------------------------------------ following

def test_logs_follow_cli(busybox):
    c = start(["sh", "-c", f"echo first; {waiter('g1')}; echo second; echo err-second >&2; "
                           f"{waiter('g2')}; echo last; exit 6"], name="followed")
    p = None
    try:
        wait_for_log(c, "first")
        p = subprocess.Popen([FASTBOX, "logs", "-f", "followed"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out, err = Lines(p.stdout), Lines(p.stderr)
        assert out.readline() == "first\n"
        touch_go_file(c, "g1")
        assert out.readline() == "second\n"
        assert err.readline() == "err-second\n"
        assert p.poll() is None, "logs -f ended while the container runs"
        touch_go_file(c, "g2")
        assert out.readline() == "last\n"
        assert p.wait(timeout=60) == 0  # ends once the container has exited
        assert out.rest() == "" and err.rest() == ""
        assert c.wait() == 6
    finally:
        _end(p)
        c.remove(force=True)


def _end(p):
    if p is None:
        return
    if p.poll() is None:
        p.kill()
    p.wait()
    for pipe in (p.stdout, p.stderr):
        if pipe:
            pipe.close()


def touch_go_file(c, name):
    assert c.exec_run(["touch", "/" + name]).exit_code == 0


def test_logs_follow_with_tail_and_timestamps_cli(busybox):
    c = start(["sh", "-c", f"seq 1 5; {GO}; echo six"])
    p = None
    try:
        wait_for_log(c, "5\n")
        p = subprocess.Popen([FASTBOX, "logs", "-f", "-t", "--tail", "2", c.id],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        out = Lines(p.stdout)
        got = [out.readline(), out.readline()]
        assert [line.split(" ", 1)[1] for line in got] == ["4\n", "5\n"]
        assert RFC3339_NANO.match(got[0].split(" ", 1)[0])
        touch_go(c)
        assert out.readline().split(" ", 1)[1] == "six\n"
        assert p.wait(timeout=60) == 0
    finally:
        _end(p)
        c.remove(force=True)


def test_logs_follow_api(busybox):
    c = start(["sh", "-c", f"echo one; {GO}; echo two >&2; exit 0"])
    wait_for_log(c, "one")
    chunks = c.logs(follow=True)
    assert next(chunks) == ("stdout", b"one\n")
    touch_go(c)
    assert list(chunks) == [("stderr", b"two\n")]  # and the iterator ends at exit
    c.remove()


def test_logs_follow_right_after_start(busybox):
    """Following a container the moment run() returns must not miss its output: the
    log file may not exist yet, but the container is running."""
    for _ in range(10):
        c = start(["sh", "-c", f"echo hello; {GO}; echo bye"])
        chunks = c.logs(follow=True)
        got = []
        t = threading.Thread(target=lambda: got.extend(chunks))
        t.start()
        try:
            wait_for_log(c, "hello")
            touch_go(c)
            t.join(60)
            assert not t.is_alive()
            assert got == [("stdout", b"hello\n"), ("stdout", b"bye\n")], got
        finally:
            c.remove(force=True)
            t.join(60)


# ------------------------------------------------------------------ stats and top

def test_stats_memory_rises_when_the_container_allocates(probe):
    c = start(["sh", "-c", f"echo ready; {GO}; sleep 1000 | /probe memhog 50 hold"],
              image=probe.image, name="hog")
    try:
        wait_for_log(c, "ready")
        before = c.stats()["memory_usage"]
        assert before is not None and before < 40 * MIB
        touch_go(c)
        wait_for_log(c, "done")
        after = c.stats()
        assert after["memory_usage"] - before >= 45 * MIB, (before, after)
        r = cli("stats", "--no-stream", "hog")
        assert r.returncode == 0, r.stderr
        row = next(line for line in r.stdout.splitlines() if line.startswith(c.id[:12]))
        assert "hog" in row
        usage = re.search(r"([\d.]+)(B|KiB|MiB|GiB) /", row)
        value = float(usage.group(1)) * {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB}[usage.group(2)]
        assert value >= 45 * MIB, row
    finally:
        c.remove(force=True)


def test_stats_limits_and_pids(busybox):
    c = start(["sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"], memory="64m", pids_limit=50)
    try:
        wait_for_log(c, "ready")
        s = eventually(lambda: (lambda s: s if s["pids"] == 3 else None)(c.stats()),
                       what="3 pids")
        assert s["memory_limit"] == 64 * MIB
        assert s["pids_limit"] == 50
        r = cli("stats", "--no-stream", c.id)
        row = next(line for line in r.stdout.splitlines() if line.startswith(c.id[:12]))
        assert "/ 64MiB" in row and row.split()[-1] == "3"
    finally:
        c.remove(force=True)


def test_stats_cpu_usage_grows_when_busy(busybox):
    c = start(["sh", "-c", "while :; do :; done"], cpus=0.5)
    try:
        first = c.stats()
        later = eventually(lambda: (lambda s: s if s["cpu_ns"] > first["cpu_ns"] else None)(c.stats()),
                           what="cpu time used")
        assert cg_stats.cpu_percent(first, later) > 0
        r = cli("stats", "--no-stream")  # no name: every running container
        assert c.id[:12] in r.stdout
    finally:
        c.remove(force=True)


def test_top_lists_the_containers_processes(busybox):
    c = start(["sh", "-c", "sleep 1000 & echo ready; exec sleep 999"], name="topped")
    try:
        wait_for_log(c, "ready")
        # by name: a forked shell shows as `sh -c ...` until it has exec'd its sleep
        eventually(lambda: {r["command"] for r in c.top()} == {"sleep 1000", "sleep 999"},
                   what="2 processes")
        assert c.exec_run(["sh", "-c", "sleep 998 </dev/null >/dev/null 2>&1 &"]).exit_code == 0
        want = {"sleep 1000", "sleep 999", "sleep 998"}
        rows = eventually(lambda: (lambda r: r if {x["command"] for x in r} == want else None)(
            c.top()), what="the exec'd process in top")
        by_cmd = {r["command"]: r for r in rows}
        assert len(rows) == 3
        assert by_cmd["sleep 999"]["pid"] == c.pid
        assert by_cmd["sleep 999"]["ppid"] == c.inspect()["MonitorPid"]
        assert by_cmd["sleep 1000"]["ppid"] == c.pid
        assert all(r["uid"] == "0" for r in rows)
        r = cli("top", "topped")
        assert r.returncode == 0
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["UID", "PID", "PPID", "S", "CMD"]
        assert any(line.split()[1] == str(c.pid) and line.endswith("sleep 999") for line in lines[1:])
        assert len(lines) == 4
    finally:
        c.remove(force=True)
