"""Wait for a condition, never for a fixed time: a test is as fast as the thing it waits for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10, interval: float = 0.02, what: str = "") -> T:
    """Call `predicate` until it returns something truthy, and return that; fail after `timeout` s.

    `interval` is only how often it looks: the wait ends on the first look that succeeds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what or getattr(predicate, '__name__', 'a condition')}")
        time.sleep(interval)
