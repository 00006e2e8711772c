"""Waiting for a condition with a deadline, instead of a fixed sleep.

A loaded 2-core CI machine can stall any process for seconds; a test that sleeps a fixed time and
then asserts is a race. These poll until the condition holds and fail, naming it, at the deadline.
"""

from __future__ import annotations

import time
from typing import Callable


def poll(predicate: Callable[[], object], timeout: float = 60.0, what: str = "the condition",
         every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


async def wait_until(pilot, predicate: Callable[[], object], timeout: float = 60.0,
                     what: str = "the condition") -> None:
    """`poll` for Pilot tests: the app's event loop runs while waiting."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.05)
