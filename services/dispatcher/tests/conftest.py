"""Fixtures of the dispatcher tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.provider import Provider
from arco_dispatcher.app import Dispatcher, build_dispatcher
from arco_dispatcher.settings import DispatcherSettings
from arco_orchestration.db import Database
from arco_testkit.clock import FakeClock
from arco_testkit.dispatching import settings_values


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
