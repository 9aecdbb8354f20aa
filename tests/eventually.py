"""The one "eventually" helper: poll a check until it holds, or fail saying what and why.

Asynchronous systems under test (workers, emulators, servers in threads or processes)
settle in their own time. Tests wait for the state they need with `eventually` instead
of sleeping a guessed time, and when a test must show that something did *not* happen,
it first waits on a barrier that proves the thing it fears had its chance (the duplicate
was delivered, the later event was processed), then asserts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 30.0,
               interval: float = 0.05) -> T:
    """The first truthy result of `check()`; exceptions count as "not yet".

    Raises `AssertionError` after `timeout` seconds naming `what` and the last result or
    error, so a red test says what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # noqa: BLE001 - not ready yet; kept for the message
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval)


__all__ = ["eventually"]
