"""Fixtures of the shared dispatch tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arco_dispatch.testing import T0, FakeClock, RecordingWorker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def worker() -> Iterator[RecordingWorker]:
    """A worker endpoint on loopback answering 200 unless a test sets ``responder``."""
    server = RecordingWorker().start()
    yield server
    server.stop()
