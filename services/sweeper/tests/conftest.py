"""Fixtures of the sweeper tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.provider import Provider
from arco_orchestration.db import Database
from arco_sweeper.app import SweeperService, build_sweeper
from arco_sweeper.settings import SweeperSettings
from arco_testkit.clock import FakeClock
from arco_testkit.dispatching import settings_values

MakeSweeper = Callable[..., SweeperService]


@pytest.fixture
def make_sweeper(database: Database, clock: FakeClock) -> MakeSweeper:
    """A sweeper on the test database and clock; memory provider unless given."""

    def make(provider: Provider | None = None, **overrides: Any) -> SweeperService:
        settings = SweeperSettings(**settings_values(**overrides))
        return build_sweeper(settings, database, provider=provider or MemoryProvider(), clock=clock)

    return make
