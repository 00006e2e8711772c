"""Waiting for a condition with a deadline, instead of a fixed sleep: the one copy the tests share.

A loaded 2-core CI machine can stall any process for seconds; a test that sleeps a fixed time and
then asserts is a race. These poll until the condition holds and fail, naming it, at the deadline
(generous: a deadline costs time only when the test fails anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], timeout: float = 120.0, interval: float = 0.05, what: str = "the condition"
) -> Any:
    """Poll `predicate` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def wait_until(pilot, predicate: Callable[[], Any], timeout: float = 120.0, what: str = "the condition") -> None:
    """`wait_for` for Pilot tests: the app's event loop runs while waiting."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.05)
