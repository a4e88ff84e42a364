"""Container statuses and, in one place, which operations each allows."""

CREATED, RUNNING, EXITED = "created", "running", "exited"


def can_start(status):
    return status == CREATED


def can_kill(status):
    return status == RUNNING


def can_delete(status):
    return status in (CREATED, EXITED)
