"""When the http push queue tries a failed delivery again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# A worker may ask for a pause, but not for longer than this.
MAX_RETRY_AFTER = timedelta(hours=1)


def delivery_backoff(
    attempt: int, *, minimum: timedelta, maximum: timedelta, rng: random.Random
) -> timedelta:
    """Exponential backoff with equal jitter after failed delivery ``attempt`` (1-based):
    half of ``min(maximum, minimum * 2^(attempt-1))`` plus a random share of the other half,
    so retries both grow and spread out."""
    ceiling = min(maximum, minimum * (1 << min(max(attempt, 1) - 1, 30)))
    half = ceiling / 2
    return half + half * rng.random()


def retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """The pause a ``Retry-After`` header asks for (delta-seconds or an HTTP-date), capped
    at :data:`MAX_RETRY_AFTER`; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(timedelta(seconds=int(text)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when - now, timedelta(0)), MAX_RETRY_AFTER)
