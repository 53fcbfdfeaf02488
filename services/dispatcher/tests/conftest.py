"""Fixtures of the dispatcher tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.provider import Provider
from arco_dispatch.testing import T0, FakeClock, RecordingWorker, settings_values
from arco_dispatcher.app import Dispatcher, build_dispatcher
from arco_dispatcher.settings import DispatcherSettings
from arco_orchestration.db import Database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def worker() -> Iterator[RecordingWorker]:
    server = RecordingWorker().start()
    yield server
    server.stop()


def dispatcher_settings(**overrides: Any) -> DispatcherSettings:
    return DispatcherSettings(**settings_values(**overrides))


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def make_dispatcher(database: Database, clock: FakeClock) -> MakeDispatcher:
    """A dispatcher on the test database and clock; memory provider unless given."""

    def make(provider: Provider | None = None, **overrides: Any) -> Dispatcher:
        return build_dispatcher(
            dispatcher_settings(**overrides),
            database,
            provider=provider or MemoryProvider(),
            clock=clock,
        )

    return make
