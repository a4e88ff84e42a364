"""Container statuses and, in one place, which operations each allows."""

CREATED, RUNNING, EXITED = "created", "running", "exited"


def can_start(status):
    """A created container starts; an exited one starts again on its writable layer."""
    return status in (CREATED, EXITED)


def can_kill(status):
    return status == RUNNING


def can_delete(status):
    return status in (CREATED, EXITED)
