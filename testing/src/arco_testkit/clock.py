"""One clock origin for every suite, a clock that moves only when told to, and polling with a
deadline (tests never sleep a fixed time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""The origin of every fake clock and fixed fact time."""

DEFAULT_TIMEOUT = 15.0


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: every fact gets an explicit server time."""
    return T0 + timedelta(seconds=seconds)


class FakeClock:
    """A clock that moves only when told to (thread-safe: services read it from threads)."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    @property
    def now(self) -> datetime:
        return self()

    @now.setter
    def now(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta, or seconds)."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it holds; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
