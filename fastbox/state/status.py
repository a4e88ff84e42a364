"""Container statuses and, in one place, which operations each allows."""

CREATED, RUNNING, EXITED = "created", "running", "exited"


def can_start(status):
    """A created container starts; an exited one starts again on its writable layer."""
    return status in (CREATED, EXITED)


def can_kill(status):
    return status == RUNNING


def can_delete(status):
    return status in (CREATED, EXITED)


def restarting(record):
    """Docker's "restarting": an exited container whose monitor (now the restarter,
    under the monitor's pid) waits out --restart's back-off before starting it again.
    A restarter that died meanwhile left the flag, not a restart."""
    if record["status"] != EXITED or not record.get("restarting"):
        return False
    from fastbox.state import process
    return process.alive(record.get("monitor_pid"), record.get("monitor_start"))


def docker_state(record):
    """The State Docker shows: created, restarting, running, paused or exited."""
    if record["status"] == RUNNING and record.get("paused"):
        return "paused"
    return "restarting" if restarting(record) else record["status"]
