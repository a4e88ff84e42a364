"""A detached container's log has limits (Docker's json-file max-size / max-file): floods of
NUL bytes, of text and of one endless line stay under them, the files rotate with Docker's
names, `logs` (API and CLI, --tail, -f) reads across the rotated files in order, the
configured default applies without flags and the config file overrides it.

Real containers and the real monitor. Each flood runs to its end before the log is measured
(c.wait()), so nothing depends on timing; the follow tests make the container wait for the
test to see each batch before it writes the next (a handshake through files made with exec),
so a reader can never fall so far behind that rotation drops what it has not read.
"""
import json
import os
import stat
import subprocess
import threading

import pytest
from pipe_lines import Lines

from fastbox import containers

# (reap: an autouse fixture)
from test_lifecycle import (FASTBOX, assert_nothing_left, cli, eventually,  # noqa: F401
                            monitors_of, one_line_error, reap, record_dir, start)

ENTRY_MAX = 16384 * 6 + 128  # the largest entry the monitor writes (fb_monitor.c)
DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE = 10 ** 7, 3  # fastbox/config.py's DEFAULT_LOG_OPTS


def log_files(c):
    """{file name: size} of the container's log files."""
    d = os.path.dirname(c.inspect()["LogPath"])
    return {n: os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)
            if n.startswith("container.log")}


def entries(c):
    """Every entry of every log file, oldest file first."""
    path = c.inspect()["LogPath"]
    names = sorted(log_files(c), key=lambda n: -int(n.rpartition(".")[2]) if n[-1].isdigit() else 0)
    out = []
    for name in names:
        with open(os.path.join(os.path.dirname(path), name), "rb") as f:
            out += [json.loads(line) for line in f]
    return out


def flood(command, **options):
    """A detached container that floods and exits; its log files once it has."""
    c = start(["sh", "-c", command], **options)
    assert c.wait(timeout=300) == 0
    return c, log_files(c)


def assert_within(files, max_size, max_file):
    assert len(files) <= max_file, files
    for name, size in files.items():
        assert size <= max(max_size, ENTRY_MAX), (name, size)
    assert sum(files.values()) <= max_size * max_file + ENTRY_MAX, files


def rotated_names(max_file):
    return {"container.log"} | {f"container.log.{i}" for i in range(1, max_file)}


def numbers(c, **kw):
    return [int(x) for x in c.logs(**kw).split()]


# ------------------------------------------------------------------ floods stay under limits

def test_nul_flood_stays_under_the_default_limit(busybox):
    """No flags: 50 MB of NUL bytes (300 MB as JSON) keep to 10m x 3; unlimited before."""
    c, files = flood("head -c 50000000 /dev/zero")
    try:
        assert_within(files, DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE)
        assert set(files) == rotated_names(DEFAULT_MAX_FILE)
        assert c.inspect()["HostConfig"]["LogConfig"] == {
            "Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
        # The newest output is what is kept, and it is NUL bytes.
        assert set(c.logs(tail=3)) == {0}
    finally:
        c.remove()


def test_text_flood_rotates_with_dockers_names(busybox):
    c, files = flood("seq 1 200000", log_opts={"max-size": "100k", "max-file": 4})
    try:
        assert set(files) == rotated_names(4)
        assert_within(files, 100_000, 4)
        for name in rotated_names(4) - {"container.log"}:  # full when rotated
            assert files[name] > 100_000 - 200, (name, files[name])
        got = numbers(c)
        assert got[-1] == 200000
        assert got == list(range(got[0], 200001)), "the newest lines, in order, none missing"
        assert len(got) > 4000  # roughly 4 x 100 kB of 75-byte entries
        # One line per entry: a short line is never cut where a read of the pipe ended.
        assert all(e["log"].endswith("\n") for e in entries(c))
    finally:
        c.remove()


def test_one_endless_line_cannot_bypass_the_limit(busybox):
    c, files = flood("head -c 20000000 /dev/zero | tr '\\0' a", log_opts=["max-size=200k",
                                                                           "max-file=2"])
    try:
        assert set(files) == rotated_names(2)
        assert_within(files, 200_000, 2)
        kept = entries(c)
        assert all(len(e["log"]) <= 16384 and not e["log"].endswith("\n") for e in kept)
        assert c.logs() == b"a" * sum(len(e["log"]) for e in kept)
    finally:
        c.remove()


def configure(fb_env, monkeypatch, settings):
    """This test's fastbox config file."""
    path = os.path.join(fb_env.tmp, "config.json")
    with open(path, "w") as f:
        f.write(settings if isinstance(settings, str) else json.dumps(settings))
    monkeypatch.setenv("FASTBOX_CONFIG", path)
    return path


def test_max_size_alone_keeps_one_file(busybox, fb_env, monkeypatch):
    """Without a max-file, here or in the default, there is one file: it starts over."""
    configure(fb_env, monkeypatch, {"log-opts": {}})
    c, files = flood("seq 1 100000", log_opts=["max-size=50k"])
    try:
        assert set(files) == {"container.log"}
        assert_within(files, 50_000, 1)
        got = numbers(c)
        assert got == list(range(got[0], 100001))
    finally:
        c.remove()


def test_long_lines_are_cut_between_utf8_characters(busybox):
    """A 40 kB line of 2-byte characters, offset by one byte, comes back intact."""
    c, _ = flood("printf x; i=0; while [ $i -lt 20000 ]; do printf '\\303\\251'; i=$((i+1)); done",
                 log_opts=["max-size=1m"])
    try:
        assert c.logs() == b"x" + "é".encode() * 20000
        assert len(entries(c)) == 3  # 16 KiB pieces
    finally:
        c.remove()


# ------------------------------------------------------------------ reading across files

def test_logs_tail_and_cli_read_across_files(busybox):
    c, files = flood("seq 1 20000", log_opts={"max-size": "30k", "max-file": "5"})
    try:
        with open(c.inspect()["LogPath"], "rb") as f:
            in_current = len(f.readlines())
        n = in_current + 100  # more than the current file holds
        assert numbers(c, tail=n) == list(range(20001 - n, 20001))
        r = cli("logs", "--tail", str(n), c.id)
        assert r.returncode == 0 and r.stdout.split() == [str(i) for i in range(20001 - n, 20001)]
        r = cli("logs", c.id)
        all_kept = [int(x) for x in r.stdout.split()]
        assert all_kept == numbers(c) and all_kept == list(range(all_kept[0], 20001))
        r = cli("logs", "-t", "--tail", "2", c.id)
        assert [line.split(" ", 1)[1] for line in r.stdout.splitlines()] == ["19999", "20000"]
    finally:
        c.remove()


BATCHES, PER_BATCH = 6, 300


def batches_script():
    """Batch i is PER_BATCH numbers, written once /g<i-1> exists: ~22 kB of log each, two
    or three rotations of 10k files, never so many that 3 files drop what a reader that had
    read all before the batch has not read yet."""
    return "; ".join(f"while [ ! -e /g{i - 1} ]; do sleep 0.02; done; "
                     f"seq {(i - 1) * PER_BATCH + 1} {i * PER_BATCH}"
                     for i in range(1, BATCHES + 1))


def test_logs_follow_goes_on_across_rotation(busybox):
    c = start(["sh", "-c", batches_script() + "; echo end"],
              log_opts=["max-size=10k", "max-file=3"])
    got = []

    def follow():
        for stream, data in c.logs(follow=True):
            got.append((stream, data))
            n = int(data) if data != b"end\n" else 0
            if n % PER_BATCH == 0 and 0 < n < BATCHES * PER_BATCH:
                assert c.exec_run(["touch", f"/g{n // PER_BATCH}"]).exit_code == 0

    t = threading.Thread(target=follow)
    t.start()
    try:
        assert c.exec_run(["touch", "/g0"]).exit_code == 0
        t.join(120)
        assert not t.is_alive(), f"following stopped after {got[-1:]}"
        assert got == [("stdout", b"%d\n" % i) for i in range(1, BATCHES * PER_BATCH + 1)] + [
            ("stdout", b"end\n")]
        assert set(log_files(c)) == rotated_names(3)
    finally:
        c.remove(force=True)
        t.join(60)


def test_cli_logs_follow_goes_on_across_rotation(busybox):
    c = start(["sh", "-c", batches_script() + "; echo end"],
              log_opts=["max-size=10k", "max-file=3"])
    p = subprocess.Popen([FASTBOX, "logs", "-f", c.id], stdout=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        lines = Lines(p.stdout)
        assert c.exec_run(["touch", "/g0"]).exit_code == 0
        for i in range(1, BATCHES * PER_BATCH + 1):
            assert lines.readline() == f"{i}\n"
            if i % PER_BATCH == 0 and i < BATCHES * PER_BATCH:
                assert c.exec_run(["touch", f"/g{i // PER_BATCH}"]).exit_code == 0
        assert lines.readline() == "end\n"
        assert p.wait(timeout=60) == 0, "logs -f ends when the container does"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        c.remove(force=True)


# ------------------------------------------------------------------ configuration

def test_config_file_overrides_the_default(busybox, fb_env, monkeypatch):
    configure(fb_env, monkeypatch, {"log-opts": {"max-size": "40k", "max-file": "2"}})
    c, files = flood("seq 1 50000")
    try:
        assert c.inspect()["HostConfig"]["LogConfig"]["Config"] == {"max-size": "40k",
                                                                    "max-file": "2"}
        assert set(files) == rotated_names(2)
        assert_within(files, 40_000, 2)
    finally:
        c.remove()
    # A container's own option replaces the default's for its key only.
    c, files = flood("seq 1 50000", log_opts=["max-file=3"])
    try:
        assert set(files) == rotated_names(3)
        assert_within(files, 40_000, 3)
    finally:
        c.remove()


def test_cli_run_and_create_take_log_opt(busybox):
    r = cli("run", "-d", "--log-opt", "max-size=20k", "--log-opt", "max-file=2", "busybox",
            "seq", "1", "20000")
    assert r.returncode == 0, r.stderr
    c = containers.get(r.stdout.strip())
    try:
        c.wait(timeout=60)
        assert c.inspect()["HostConfig"]["LogConfig"]["Config"] == {"max-file": "2",
                                                                    "max-size": "20k"}
        assert set(log_files(c)) == rotated_names(2)
    finally:
        c.remove()
    r = cli("create", "--log-opt", "max-size=1m", "busybox", "true")
    assert r.returncode == 0, r.stderr
    c = containers.get(r.stdout.strip())
    assert c.inspect()["HostConfig"]["LogConfig"]["Config"] == {"max-file": "3", "max-size": "1m"}
    c.remove()


@pytest.mark.parametrize("opt, what", [
    ("max-size=lots", "max-size"), ("max-size=0", "max-size"), ("max-file=0", "max-file"),
    ("max-file=x", "max-file"), ("nokey", "KEY=VALUE"), ("compress=true", "unknown log opt"),
])
def test_bad_log_opt_is_a_one_line_error(busybox, opt, what):
    for verb in ("run", "create"):
        r = cli(verb, "-d" if verb == "run" else "--rm", "--log-opt", opt, "busybox", "true")
        assert r.returncode == (125 if verb == "run" else 1), r.stderr
        assert what in one_line_error(r)
    assert containers.list_containers(all=True) == []


def test_max_file_without_max_size_is_an_error(busybox, fb_env, monkeypatch):
    configure(fb_env, monkeypatch, {"log-opts": {}})  # no default limit
    r = cli("run", "-d", "--log-opt", "max-file=3", "busybox", "true")
    assert r.returncode == 125
    assert "max-file needs max-size" in one_line_error(r)
    assert containers.list_containers(all=True) == []


def test_bad_config_file_is_a_one_line_error(busybox, fb_env, monkeypatch):
    path = configure(fb_env, monkeypatch, {"log-opts": {"max-size": "huge"}})
    r = cli("run", "-d", "busybox", "true")
    assert r.returncode == 125 and path in one_line_error(r)
    r = cli("run", "--rm", "busybox", "echo", "hi")  # a foreground run has no log: not read
    assert (r.returncode, r.stdout) == (0, "hi\n")


# ------------------------------------------------------------------ files

def test_log_files_are_root_only(busybox):
    c, files = flood("seq 1 5000", log_opts=["max-size=10k", "max-file=3"])
    try:
        d = os.path.dirname(c.inspect()["LogPath"])
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == 0o600, name
        # A log from before logs were root's alone is tightened when the monitor reopens it.
        os.chmod(c.inspect()["LogPath"], 0o644)
        c.start()
        c.wait(timeout=60)
        assert stat.S_IMODE(os.stat(c.inspect()["LogPath"]).st_mode) == 0o600
    finally:
        c.remove()


def test_rm_container_leaves_no_rotated_file(busybox):
    c = start(["sh", "-c", "seq 1 20000; ls /"], remove=True,
              log_opts=["max-size=10k", "max-file=4"])
    eventually(lambda: not os.path.exists(record_dir(c.id)), timeout=60, what="the record removed")
    eventually(lambda: monitors_of(c.id) == [], what="the monitor gone")
    assert_nothing_left(c.id)


def test_restarted_container_continues_its_limited_log(busybox):
    """A position taken before a restart still names the new run's start after rotations."""
    c, _ = flood("if [ -e /ran ]; then echo second; else touch /ran; seq 1 3000; fi",
                 log_opts=["max-size=20k", "max-file=2"])
    try:
        position = c.log_position()
        c.start()
        c.wait(timeout=60)
        assert_within(log_files(c), 20_000, 2)
        assert b"".join(d for _, d in c.logs(follow=True, offset=position)) == b"second\n"
        assert c.logs(tail=2) == b"3000\nsecond\n"
    finally:
        c.remove()


def test_logs_read_during_a_flood_are_whole_and_in_order(busybox):
    """Reading while the monitor rotates (hundreds of times a second): every read is a run
    of consecutive lines, never one with a file missing in the middle or read twice."""
    c = start(["sh", "-c", "seq 1 100000000"], log_opts=["max-size=200k", "max-file=4"])
    try:
        reads = 0
        while reads < 30:
            got = [int(x) for x in c.logs().split()]
            if len(got) > 1:
                assert got == list(range(got[0], got[0] + len(got))), "a gap or a repeat"
                reads += 1
        c.kill()
        c.wait(timeout=60)
        assert_within(log_files(c), 200_000, 4)
    finally:
        c.remove(force=True)
