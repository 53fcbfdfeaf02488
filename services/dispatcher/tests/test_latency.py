"""The latency mechanism of design D4, asserted without timing thresholds: a READY task is
enqueued by the cycle that saw it, and a PostgreSQL NOTIFY ends the loop's pause (the
figures belong to the benchmarks)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from services.dispatcher.tests.conftest import MakeDispatcher

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.runner import INTERVAL
from arco_dispatcher.app import Dispatcher, create_app
from arco_dispatcher.settings import DispatcherSettings
from arco_envelope import cloud_task_name
from arco_orchestration.db import Database
from arco_testkit.clock import FakeClock, wait_until
from arco_testkit.dispatching import settings_values
from arco_testkit.facts import is_postgres, planned, trigger

AN_HOUR_MS = 3_600_000


def test_the_cycle_that_sees_a_ready_task_enqueues_it(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    queue = MemoryProvider()
    dispatcher = make_dispatcher(queue)
    trigger(database, "run1", [planned("extract")])
    summary = dispatcher.cycle.run()
    assert summary.ready_dispatch_emitted == summary.dispatch_enqueued == 1
    assert [m.name for m in queue.peek()] == [cloud_task_name("dispatch:run1:extract:1")]


def test_a_notify_wakes_the_loop(database: Database, clock: FakeClock) -> None:
    """The loop's pause is an hour, so only the trigger's NOTIFY can make the next cycle
    run; it enqueues the new task."""
    if not is_postgres(database):
        pytest.skip("SQLite has no NOTIFY: the loop polls every ARCO_FLOW_DISPATCH_POLL_MS")
    queue = MemoryProvider()
    settings = DispatcherSettings(**settings_values(dispatch_interval_ms=AN_HOUR_MS))
    app = create_app(settings, database, provider=queue, clock=clock)
    dispatcher: Dispatcher = app.state.dispatcher
    assert dispatcher.listener is not None
    runner = dispatcher.runner
    with TestClient(app):
        wait_until(dispatcher.listener.listening.is_set)
        wait_until(lambda: runner.cycles >= 1 and runner.paused)
        cycles_before = runner.cycles
        trigger(database, "run1", [planned("extract")])
        wait_until(lambda: len(queue.peek()) == 1)
    assert runner.cycles > cycles_before
    assert runner.wakeups["notify"] >= 1
    assert runner.wakeups[INTERVAL] == 0


def test_sqlite_polls_at_the_short_poll_interval() -> None:
    settings = DispatcherSettings(**settings_values())
    assert settings.pause(notifications=False).total_seconds() == 0.1
    assert settings.pause(notifications=True).total_seconds() == 1.0
