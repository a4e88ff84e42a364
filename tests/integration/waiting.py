"""Waiting for the system under test without fixed sleeps: poll, with a generous bound
that is there only so a broken product fails instead of hanging."""
import time


def eventually(predicate, timeout=30.0, interval=0.01, what="condition"):
    """Poll predicate until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
