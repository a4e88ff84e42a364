"""A Docker user's habits, compared with what Docker documents: `ps` columns, STATUS
wording, generated names, --filter/-q/-l/-n/--no-trunc, --format on ps/images/inspect/
stats, multi-name commands, exit codes, prompts, `import -`, `-it` without a terminal,
timestamps, `logs --since/--until`, one-line usage errors."""
import json
import os
import re
import subprocess
import sys
import tarfile
import time

import pytest
from test_lifecycle import ok  # noqa: F401

FASTBOX = os.path.join(os.path.dirname(sys.executable), "fastbox")
RFC3339_NANO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
NAME = re.compile(r"[a-z]+_[a-z]+\d?")


def cli(*args, input=None):
    return subprocess.run([FASTBOX, *map(str, args)], capture_output=True, text=True,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          timeout=120)


def one_line(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastbox: "), r.stderr
    return lines[0]


@pytest.fixture
def three(busybox):
    """up (running), down (exited 3), made (created); removed at the end."""
    ids = {"up": ok(cli("run", "-d", "--name", "up", "busybox", "sleep", "1000")).stdout.strip()}
    assert cli("run", "--name", "down", "busybox", "sh", "-c", "exit 3").returncode == 3
    ids["down"] = ok(cli("inspect", "-f", "{{.Id}}", "down")).stdout.strip()
    ids["made"] = ok(cli("create", "--name", "made", "busybox", "true")).stdout.strip()
    yield ids
    cli("rm", "-f", *ids.values())


# ------------------------------------------------------------------ ps

def test_ps_columns_and_status_wording(three):
    lines = ok(cli("ps", "-a")).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
                                             "STATUS", "PORTS", "NAMES"]
    rows = {line.split()[-1]: line for line in lines[1:]}
    assert set(rows) == {"up", "down", "made"}
    assert re.search(r"\sUp (Less than a second|\d+ seconds?)\s", rows["up"])
    assert re.search(r"\sExited \(3\) (Less than a second|\d+ seconds?) ago\s", rows["down"])
    assert re.search(r"\sCreated\s", rows["made"])
    assert '"sleep 1000"' in rows["up"] and " ago " in rows["up"]
    assert rows["up"].startswith(three["up"][:12] + " ")
    # newest first, as Docker lists them
    assert [line.split()[-1] for line in lines[1:]] == ["made", "down", "up"]
    # without -a: running ones only
    assert [line.split()[-1] for line in ok(cli("ps")).stdout.splitlines()[1:]] == ["up"]


def test_unnamed_containers_get_unique_generated_names(busybox):
    ids = [ok(cli("create", "busybox", "true")).stdout.strip() for _ in range(5)]
    try:
        names = ok(cli("ps", "-a", "--format", "{{.Names}}")).stdout.split()
        assert len(names) == 5 and len(set(names)) == 5
        assert all(NAME.fullmatch(n) for n in names), names
        assert ok(cli("inspect", "-f", "{{.Name}}", ids[0])).stdout.strip() == "/" + \
            ok(cli("ps", "-a", "--filter", f"id={ids[0]}", "--format", "{{.Names}}")).stdout.strip()
        # a generated name is a name: rm by it works
        assert ok(cli("rm", names[0])).stdout == names[0] + "\n"
    finally:
        cli("rm", "-f", *ids)


def test_ps_quiet_latest_last_no_trunc(three):
    assert ok(cli("ps", "-q")).stdout.split() == [three["up"][:12]]
    assert ok(cli("ps", "-aq", "--no-trunc")).stdout.split() == [three["made"], three["down"],
                                                                three["up"]]
    assert ok(cli("ps", "-lq")).stdout.split() == [three["made"][:12]]  # -l: any state
    assert ok(cli("ps", "-n", "2", "-q")).stdout.split() == [three["made"][:12],
                                                            three["down"][:12]]
    full = ok(cli("ps", "--no-trunc")).stdout.splitlines()[1]
    assert full.startswith(three["up"] + " ")


@pytest.mark.parametrize("flt, expected", [
    (["name=up"], ["up"]), (["name=^d"], ["down"]), (["status=exited"], ["down"]),
    (["status=created"], ["made"]), (["exited=3"], ["down"]), (["exited=0"], []),
    (["ancestor=busybox", "status=running"], ["up"]), (["name=up", "name=made"], ["made", "up"]),
])
def test_ps_filters(three, flt, expected):
    args = [a for f in flt for a in ("--filter", f)]
    r = ok(cli("ps", "-a", *args, "--format", "{{.Names}}"))
    assert r.stdout.split() == expected


def test_ps_filter_by_id_and_status_without_a(three):
    r = ok(cli("ps", "-f", f"id={three['down'][:6]}", "-f", "status=exited", "-q"))
    assert r.stdout.split() == [three["down"][:12]]  # a status filter looks at all states


def test_ps_bad_filter_and_unknown_field_are_errors(three):
    r = cli("ps", "--filter", "colour=red")
    assert r.returncode == 1 and "invalid filter 'colour'" in one_line(r)
    r = cli("ps", "--format", "{{.Nope}}")
    assert r.returncode == 1 and "Nope" in one_line(r) and r.stdout == ""


def test_ps_format_templates(three):
    r = ok(cli("ps", "-a", "--format", "{{.Names}}:{{.State}}"))
    assert sorted(r.stdout.split()) == ["down:exited", "made:created", "up:running"]
    rows = [json.loads(line) for line in ok(cli("ps", "--format", "{{json .}}")).stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["Names"] == "up" and rows[0]["ID"] == three["up"][:12]
    assert set(rows[0]) >= {"Command", "CreatedAt", "ID", "Image", "Labels", "Mounts", "Names",
                            "Ports", "RunningFor", "State", "Status"}
    table = ok(cli("ps", "--format", "table {{.Names}}\\t{{.Status | upper}}")).stdout.splitlines()
    assert table[0].split() == ["NAMES", "STATUS"] and table[1].startswith("up ")
    assert " UP " in table[1] + " "


# ------------------------------------------------------------------ images, inspect, stats

def test_images_repository_argument_and_format(busybox):
    r = ok(cli("images", "busybox", "--format", "{{.Repository}}:{{.Tag}}"))
    assert r.stdout.split() == ["busybox:latest"]
    assert ok(cli("images", "no-such-repo", "-q")).stdout == ""
    lines = ok(cli("images", "busybox")).stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    row = json.loads(ok(cli("images", "busybox:latest", "--format", "json")).stdout)
    assert row["Repository"] == "busybox" and row["Tag"] == "latest" and len(row["ID"]) == 12
    r = cli("images", "--format", "{{.Nope}}")
    assert r.returncode == 1 and "Nope" in one_line(r)


def test_inspect_format_multi_name_and_no_such_object(three):
    r = cli("inspect", "-f", "{{.Name}} {{.State.Status}} {{.State.ExitCode}}", "up", "nosuch",
            "down")
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["/up running 0", "/down exited 3"]
    assert one_line(r) == "fastbox: No such object: nosuch"
    r = cli("inspect", "nosuch")
    assert (r.returncode, r.stdout) == (1, "[]\n") and "No such object: nosuch" in r.stderr
    assert ok(cli("inspect", "-f", "{{.Id}}", "busybox")).stdout.startswith("sha256:")  # an image
    r = cli("inspect", "-f", "{{.Nope}}", "up")
    assert r.returncode == 1 and "Nope" in one_line(r)
    assert ok(cli("inspect", "-f", "{{json .State.Running}}", "up")).stdout == "true\n"


def test_timestamps_are_rfc3339_with_nanoseconds(three):
    state = json.loads(ok(cli("inspect", "down")).stdout)[0]
    for value in (state["Created"], state["State"]["StartedAt"], state["State"]["FinishedAt"]):
        assert RFC3339_NANO.fullmatch(value), value
    up = json.loads(ok(cli("inspect", "up")).stdout)[0]
    assert RFC3339_NANO.fullmatch(up["State"]["StartedAt"])
    assert up["State"]["FinishedAt"] == "0001-01-01T00:00:00Z"  # Docker's zero time
    made = json.loads(ok(cli("inspect", "made")).stdout)[0]
    assert made["State"]["StartedAt"] == "0001-01-01T00:00:00Z" and made["State"]["ExitCode"] == 0


def test_stats_format(three):
    r = ok(cli("stats", "--no-stream", "--format", "{{.Name}} {{.MemPerc}} {{.PIDs}}", "up"))
    name, mem, pids = r.stdout.split()
    assert name == "up" and mem.endswith("%") and pids == "1"
    rows = [json.loads(line) for line in
            ok(cli("stats", "--no-stream", "--format", "json")).stdout.splitlines()]
    assert [row["Name"] for row in rows] == ["up"]
    assert set(rows[0]) >= {"ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO",
                            "PIDs", "Container"}
    r = cli("stats", "--no-stream", "--format", "{{.Nope}}")
    assert r.returncode == 1 and "Nope" in one_line(r)


# ------------------------------------------------------------------ behaviour

def test_multi_name_commands_go_on_past_a_bad_name(busybox):
    for name in ("a1", "a2"):
        ok(cli("create", "--name", name, "busybox", "true"))
    r = cli("rm", "a1", "nosuch", "a2")
    assert r.returncode == 1
    assert r.stdout.split() == ["a1", "a2"]
    assert r.stderr.splitlines() == ["fastbox: no such container: nosuch"]
    assert ok(cli("ps", "-aq")).stdout == ""
    ids = [ok(cli("run", "-d", "busybox", "sleep", "1000")).stdout.strip() for _ in range(2)]
    r = cli("kill", ids[0], "nosuch", ids[1])
    assert r.returncode == 1 and r.stdout.split() == ids
    r = cli("stop", "nosuch", ids[0])
    assert r.returncode == 1 and r.stdout.split() == [ids[0]]
    r = cli("wait", ids[0], "nosuch", ids[1])
    assert r.returncode == 1 and r.stdout.split() == ["137", "137"]
    ok(cli("rm", *ids))


def test_start_of_a_running_container_is_a_no_op(three):
    pid = ok(cli("inspect", "-f", "{{.State.Pid}}", "up")).stdout
    r = cli("start", "up")
    assert (r.returncode, r.stdout, r.stderr) == (0, "up\n", "")
    assert ok(cli("inspect", "-f", "{{.State.Pid}}", "up")).stdout == pid


def test_prune_asks_unless_forced(three):
    r = cli("container", "prune", input="n\n")
    assert r.returncode == 0 and "[y/N]" in r.stdout and "Deleted" not in r.stdout
    r = cli("container", "prune")  # stdin at its end: no
    assert r.returncode == 0 and "Deleted" not in r.stdout
    assert len(ok(cli("ps", "-aq")).stdout.split()) == 3
    r = ok(cli("container", "prune", input="y\n"))
    lines = r.stdout.split("Deleted Containers:\n", 1)[1].splitlines()
    assert sorted(lines[:2]) == sorted([three["down"], three["made"]]) and lines[2] == ""
    assert "Total reclaimed space:" in r.stdout
    assert ok(cli("ps", "-aq")).stdout.split() == [three["up"][:12]]


def test_image_prune_asks_too(busybox):
    r = cli("image", "prune")
    assert r.returncode == 0 and "[y/N]" in r.stdout and "Total reclaimed" not in r.stdout


def test_import_dash_reads_stdin(busybox, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("from stdin\n")
    tar_path = tmp_path / "r.tar"
    with tarfile.open(tar_path, "w") as t:
        t.add(root, arcname=".")
    with open(tar_path, "rb") as f:
        r = subprocess.run([FASTBOX, "import", "-", "fromstdin:1"], stdin=f, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("sha256:")
    assert ok(cli("images", "fromstdin", "-q")).stdout.strip() == r.stdout.strip()[7:19]
    ok(cli("rmi", "fromstdin:1"))


def test_it_refuses_a_stdin_that_is_not_a_terminal(busybox):
    r = cli("run", "-it", "--rm", "busybox", "true")
    assert r.returncode == 1 and one_line(r) == "fastbox: the input device is not a TTY"
    r = cli("run", "-t", "--rm", "busybox", "true")  # -t alone is allowed, as in Docker
    assert r.returncode == 0
    cid = ok(cli("run", "-d", "busybox", "sleep", "1000")).stdout.strip()
    try:
        r = cli("exec", "-it", cid, "true")
        assert r.returncode == 1 and one_line(r) == "fastbox: the input device is not a TTY"
    finally:
        cli("rm", "-f", cid)


def test_logs_since_until(busybox):
    cid = ok(cli("run", "-d", "busybox", "sh", "-c", "echo early; sleep 2; echo late")).stdout.strip()
    try:
        ok(cli("wait", cid))
        stamped = ok(cli("logs", "-t", cid)).stdout.splitlines()
        assert [line.split(" ", 1)[1] for line in stamped] == ["early", "late"]
        late_at = stamped[1].split(" ", 1)[0]
        assert ok(cli("logs", "--since", late_at, cid)).stdout == "late\n"
        assert ok(cli("logs", "--until", late_at, cid)).stdout == "early\n"
        assert ok(cli("logs", "--since", "1h", cid)).stdout == "early\nlate\n"
        assert ok(cli("logs", "--until", str(time.time() - 3600), cid)).stdout == ""
        r = cli("logs", "--since", "someday", cid)
        assert r.returncode == 1 and "--since" in one_line(r)
    finally:
        cli("rm", "-f", cid)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("args, code, pattern", [
    (["rn"], 1, r"fastbox: 'rn' is not a fastbox command\. Did you mean 'run'\?"),
    (["xyzzy"], 1, r"fastbox: 'xyzzy' is not a fastbox command; see 'fastbox --help'"),
    (["image", "lss"], 1, r"fastbox: 'lss' is not a 'fastbox image' command\. Did you mean 'ls'\?"),
    (["ps", "--formt", "x"], 125, r"fastbox: unknown flag: --formt \(did you mean --format\?\); "
                                  r"see 'fastbox ps --help'"),
    (["rm"], 1, r"fastbox: 'fastbox rm' requires at least 1 argument \(CONTAINER\.\.\.\); .*"),
    (["run"], 125, r"fastbox: 'fastbox run' requires at least 1 argument \(an image\); .*"),
    (["run", "--rmm", "busybox"], 125, r"fastbox: unknown flag: --rmm \(did you mean --rm\?\); .*"),
    (["exec"], 125, r"fastbox: 'fastbox exec' requires at least 2 arguments .*"),
    (["ps", "-n", "many"], 125, r"fastbox: invalid value for '--last' / '-n': .*"),
    (["logs"], 1, r"fastbox: 'fastbox logs' requires at least 1 argument \(CONTAINER\); .*"),
])
def test_usage_errors_are_one_line_with_a_hint(fb_env, args, code, pattern):
    r = cli(*args)
    assert r.returncode == code, (r.returncode, r.stderr)
    assert re.fullmatch(pattern, one_line(r)), r.stderr
    assert r.stdout == ""


def test_more_multi_name_commands_go_on(busybox):
    # ends at SIGTERM: restart's stop would wait out its 10 s for a plain `sleep` as PID 1
    cid = ok(cli("run", "-d", "busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")).stdout.strip()
    try:
        for verb in ("pause", "unpause", "restart"):
            r = cli(verb, "nosuch", cid)
            assert r.returncode == 1 and r.stdout.split() == [cid], (verb, r.stderr)
            assert r.stderr.splitlines() == ["fastbox: no such container: nosuch"]
        r = cli("rmi", "no-such-image:1", "also-missing:2")
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 2
    finally:
        cli("rm", "-f", cid)


def test_volume_ls_format(fb_env):
    ok(cli("volume", "create", "--label", "tier=db", "vol1"))
    try:
        assert ok(cli("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}")).stdout \
            == "vol1 local tier=db\n"
        row = json.loads(ok(cli("volume", "ls", "--format", "json")).stdout)
        assert row["Name"] == "vol1" and row["Scope"] == "local"
        lines = ok(cli("volume", "ls")).stdout.splitlines()
        assert re.split(r"\s{2,}", lines[0]) == ["DRIVER", "VOLUME NAME"] and lines[1].split() == \
            ["local", "vol1"]
        r = cli("volume", "ls", "--format", "{{.Nope}}")
        assert r.returncode == 1 and "Nope" in one_line(r)
    finally:
        cli("volume", "rm", "vol1")


def test_exec_errors_exit_1_as_docker_exec(busybox):
    r = cli("exec", "nosuch", "true")
    assert r.returncode == 1 and "no such container: nosuch" in one_line(r)
    made = ok(cli("create", "busybox", "true")).stdout.strip()
    try:
        r = cli("exec", made, "true")
        assert r.returncode == 1 and "not running" in one_line(r)
    finally:
        cli("rm", made)
