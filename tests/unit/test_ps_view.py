"""`ps` as `docker ps` shows it: go-units' durations, STATUS wording, filters, generated
names, and RFC 3339 timestamps with nanoseconds."""
import re

import pytest

from fastbox.cli import ps_view
from fastbox.errors import SpecError
from fastbox.state import names, timestamps


@pytest.mark.parametrize("seconds, text", [
    (0.2, "Less than a second"), (1, "1 second"), (45, "45 seconds"), (60, "About a minute"),
    (119, "About a minute"), (300, "5 minutes"), (3600, "About an hour"),
    (5 * 3600, "5 hours"), (47 * 3600, "47 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration_as_go_units(seconds, text):
    assert ps_view.human_duration(seconds) == text


NOW = 1_800_000_000.0


def at(seconds_ago):
    return timestamps.format_ns(int((NOW - seconds_ago) * 1e9))


def record(**fields):
    base = {"id": "a" * 64, "name": "web", "image": "busybox", "image_id": "sha256:" + "b" * 64,
            "status": "running", "exit_code": None, "created_at": at(600),
            "started_at": at(300), "finished_at": None, "command": ["sleep", "60"],
            "spec": {"labels": {"env": "prod", "tier": "web"}}}
    base.update(fields)
    return base


def test_status_wording():
    assert ps_view.status_text(record(), NOW) == "Up 5 minutes"
    assert ps_view.status_text(record(status="exited", exit_code=137, finished_at=at(120)),
                               NOW) == "Exited (137) 2 minutes ago"
    assert ps_view.status_text(record(status="created", started_at=None), NOW) == "Created"


def test_row_fields():
    row = ps_view.ContainerRow(record(command=["sh", "-c", "echo a long command here"]), now=NOW)
    assert row.ID == "a" * 12
    assert row.Command == '"sh -c echo a long c…"'
    assert row.RunningFor == "10 minutes ago"
    assert row.Labels == "env=prod,tier=web"
    assert row.Label("env") == "prod"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", row.CreatedAt)
    full = ps_view.ContainerRow(record(command=["sh", "-c", "echo a long command here"]),
                                trunc=False, now=NOW)
    assert full.ID == "a" * 64 and full.Command == '"sh -c echo a long command here"'
    assert sorted(row.template_data()) == sorted(ps_view.FIELDS)


@pytest.mark.parametrize("filters, expected", [
    (["name=web"], True), (["name=^we"], True), (["name=db"], False),
    (["name=db", "name=web"], True),  # one key: or
    (["name=web", "status=exited"], False),  # two keys: and
    (["id=aaaa"], True), (["id=b"], False),
    (["status=running"], True), (["label=env"], True), (["label=env=prod"], True),
    (["label=env=dev"], False), (["ancestor=busybox"], True), (["ancestor=bbbbbbbb"], True),
    (["ancestor=alpine"], False), (["exited=0"], False),
])
def test_filters(filters, expected):
    assert ps_view.matches(record(), ps_view.parse_filters(filters)) is expected


def test_exited_filter():
    r = record(status="exited", exit_code=137)
    assert ps_view.matches(r, ps_view.parse_filters(["exited=137"]))
    assert not ps_view.matches(r, ps_view.parse_filters(["exited=0"]))


@pytest.mark.parametrize("bad", ["nope=1", "status=sleeping", "exited=x", "name"])
def test_bad_filters_are_errors(bad):
    with pytest.raises(SpecError):
        ps_view.parse_filters([bad])


def test_generated_names_are_docker_style_and_unique(tmp_path):
    from fastbox.state.store import StateStore
    store = StateStore(root=str(tmp_path))
    taken = {names.reserve_generated(store, f"{i:064d}") for i in range(300)}
    assert len(taken) == 300
    assert all(re.fullmatch(r"[a-z]+_[a-z]+\d?", n) for n in taken)
    assert all(not n.startswith("boring_wozniak") for n in taken)


def test_timestamps_are_rfc3339_with_nanoseconds():
    now = timestamps.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", now)
    assert timestamps.parse("2026-12-07T04:31:04.123456789Z") == pytest.approx(1796617864.123456789)
    assert timestamps.parse("2026-12-07T05:31:04+01:00") == 1796617864.0


def test_since_until_forms():
    assert timestamps.point_in_time("10m", now=NOW) == NOW - 600
    assert timestamps.point_in_time("1h30m", now=NOW) == NOW - 5400
    assert timestamps.point_in_time("1700000000.5") == 1700000000.5
    assert timestamps.point_in_time("2026-12-07T04:31:04Z") == 1796617864.0
    with pytest.raises(ValueError):
        timestamps.point_in_time("soon")


def test_restarting_wording_only_while_its_restarter_lives():
    """Docker's "Restarting (CODE) N seconds ago" (State "restarting") while the process
    that waits out the back-off (it keeps the monitor's pid) lives; a flag left by one
    that died reads as the exit it is."""
    import os
    from fastbox.state import process
    me = os.getpid()
    waiting = record(status="exited", exit_code=3, finished_at=at(2), restarting=True,
                     monitor_pid=me, monitor_start=process.start_time(me))
    assert ps_view.status_text(waiting, NOW) == "Restarting (3) 2 seconds ago"
    assert ps_view.ContainerRow(waiting, now=NOW).State == "restarting"
    assert ps_view.matches(waiting, ps_view.parse_filters(["status=restarting"]))
    dead = dict(waiting, monitor_start=waiting["monitor_start"] + 1)  # not that process
    assert ps_view.status_text(dead, NOW) == "Exited (3) 2 seconds ago"
    assert ps_view.matches(dead, ps_view.parse_filters(["status=exited"]))
