"""--restart carried out: what a monitor becomes once its container exited under a
restart policy (fastbox-monitor --then): decide whether to start it again, wait Docker's
back-off, start it (a new monitor takes over), exit. `python -I -m fastbox.restarter ID
CONTAINERS_DIR`. It keeps the monitor's pid: the janitor sees the owner alive. Also
after_sweep, for a container whose monitor was killed. It starts containers, so it sits
beside fastbox.containers; the decisions are fastbox.runtime.restart_policy's."""
import os
import sys
import time


def main(cid, root):
    from fastbox.errors import FastboxError
    from fastbox.runtime import restart_policy
    from fastbox.state.store import StateStore
    # The janitor's entry lock came with the monitor's fds: the start below takes it anew.
    os.closerange(3, 1 << 16)
    store = StateStore(root)
    try:
        record = store.get(cid)
    except FastboxError:
        return 0
    spec = record.get("spec") or {}
    count = record.get("restart_count", 0)
    if not restart_policy.should_restart(spec.get("restart"), record.get("exit_code"), count,
                                         record.get("stopped_by_user")):
        return 0
    delay = restart_policy.delay(record.get("restart_delay"), _ran_for(record))
    try:
        store.update(cid, restart_delay=delay, restarting=True)
    except FastboxError:
        return 0
    if not _wait(store, cid, delay):
        _done(store, cid)
        return 0
    from fastbox import containers
    try:
        # "restarting" stays until the new run is recorded (or this fails): a stop that
        # comes meanwhile waits for that run and stops it (Container.stop)
        store.update(cid, restart_count=count + 1)
        containers.Container(cid, store).start(by_policy=True)
    except FastboxError as e:
        _done(store, cid, None if "no restart" in str(e) else f"restart failed: {e}")
    return 0


def _done(store, cid, error=None):
    """No restart after all (stopped, removed, or the start failed)."""
    from fastbox.errors import FastboxError
    try:
        store.update(cid, restarting=False, **({"error": error} if error else {}))
    except FastboxError:
        pass


def after_sweep(store, record):
    """A container whose monitor died (the janitor killed what was left of it): started
    again if its policy says so, as dockerd restarts its containers when it comes back."""
    from fastbox.runtime.restart_policy import should_restart
    spec = record.get("spec") or {}
    if not should_restart(spec.get("restart"), record.get("exit_code"),
                          record.get("restart_count", 0), record.get("stopped_by_user")):
        return
    from fastbox import containers
    try:
        c = containers.Container(record["id"], store)
        store.update(record["id"], restart_count=record.get("restart_count", 0) + 1)
        c.start(by_policy=True)
    except Exception:  # noqa: BLE001 - the sweeping command must go on whatever happens
        pass


def _wait(store, cid, delay):
    """Sleep the back-off, looking at the record meanwhile: False if a user stopped,
    started or removed the container."""
    from fastbox.errors import FastboxError
    deadline = time.monotonic() + delay
    while True:
        try:
            record = store.get(cid)
        except FastboxError:
            return False
        if record.get("stopped_by_user") or record["status"] != "exited":
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


def _ran_for(record):
    import datetime
    import re

    def parse(text):  # RFC 3339, its fraction cut to microseconds
        return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1",
                                                      text.replace("Z", "+00:00")))
    try:
        start, end = parse(record["started_at"]), parse(record["finished_at"])
        return (end - start).total_seconds()
    except (KeyError, TypeError, ValueError):
        return 0.0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
