"""--restart: whether a container that exited starts again, and after how long
(Docker's back-off: 100 ms doubling per restart, capped at 1 min, reset once a run
lasted 10 s)."""

BACKOFF_START, BACKOFF_MAX, RESET_AFTER = 0.1, 60.0, 10.0


def mark_stopped(store, cid):
    """A user stopped it (stop, kill, rm -f): no restart for this exit, and none for
    unless-stopped until it is started again."""
    try:
        store.update(cid, stopped_by_user=True)
    except Exception:  # noqa: BLE001 - a --rm container's record may be gone already
        pass


def should_restart(policy, exit_code, restart_count, stopped_by_user):
    name, _, limit = (policy or "no").partition(":")
    if stopped_by_user or name == "no":
        return False
    if name == "on-failure":
        return exit_code != 0 and (not limit or restart_count < int(limit))
    return name in ("always", "unless-stopped")


def delay(previous_delay, ran_for):
    """Seconds to wait before the next start."""
    if ran_for >= RESET_AFTER or not previous_delay:
        return BACKOFF_START
    return min(previous_delay * 2, BACKOFF_MAX)
