"""Helpers shared by tests in every directory (`tests/` is on sys.path through the root conftest.py)."""

from __future__ import annotations

import time


def wait_until(condition, timeout_s: float = 20.0, what: str = "condition") -> bool:
    """Poll until `condition()` is true; the generous timeout only guards against a hang.

    Raises AssertionError on timeout; returns True so that `assert wait_until(...)` also reads naturally.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)
    return True
