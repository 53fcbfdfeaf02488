"""Retry timing of the http push queue."""

from __future__ import annotations

import random
from datetime import timedelta

from arco_dispatch.backoff import MAX_RETRY_AFTER, delivery_backoff, retry_after
from arco_testkit.clock import T0

MINIMUM = timedelta(seconds=1)
MAXIMUM = timedelta(seconds=300)


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)  # noqa: S311 - jitter needs no cryptography
    for attempt, ceiling in ((1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)):
        pauses = {
            delivery_backoff(attempt, minimum=MINIMUM, maximum=MAXIMUM, rng=rng) for _ in range(20)
        }
        assert all(
            timedelta(seconds=ceiling) / 2 <= p <= timedelta(seconds=ceiling) for p in pauses
        )
        assert len(pauses) > 1  # jittered


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7", now=T0) == timedelta(seconds=7)
    assert retry_after(" 0 ", now=T0) == timedelta(0)
    assert retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=T0) == timedelta(seconds=30)
    assert retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=T0) == timedelta(0)
    assert retry_after("999999", now=T0) == MAX_RETRY_AFTER
    assert retry_after(None, now=T0) is None
    assert retry_after("soon", now=T0) is None
