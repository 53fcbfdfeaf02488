"""The clock every dispatch decision reads; tests inject their own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``event``; returns whether it was set.

    Unlike Python 3.11's ``asyncio.wait_for``, this never swallows a cancellation that
    arrives as the event is set (cpython gh-86296), so a loop pausing with it always stops
    when its task is cancelled.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
