"""On PostgreSQL the running dispatcher analyzes busy tables whose planner statistics fell
behind (a new database filling up), and counts it in its metrics; with the interval 0 it
leaves them to autovacuum."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatcher.app import create_app
from arco_dispatcher.settings import DispatcherSettings
from arco_orchestration.db import Database
from arco_orchestration.planner_statistics import MIN_CHANGED_ROWS, stale_tables
from arco_testkit.clock import FakeClock, wait_until
from arco_testkit.dispatching import settings_values
from arco_testkit.facts import planned, trigger
from arco_testkit.plugin import flush_table_counts, own_postgres_database, without_autovacuum

pytestmark = pytest.mark.postgres

ANALYZED_TASKS = 'arco_dispatcher_tables_analyzed_total{table="tasks"}'


def _client(database: Database, clock: FakeClock, interval: float) -> TestClient:
    settings = DispatcherSettings(
        **settings_values(dispatch_loop=False, statistics_interval_secs=interval)
    )
    return TestClient(create_app(settings, database, provider=MemoryProvider(), clock=clock))


def _fill(database: Database) -> None:
    for index in range(MIN_CHANGED_ROWS + 1):
        trigger(database, f"run-{index:05d}", [planned("asset.a")])
    flush_table_counts(database)


def test_the_dispatcher_analyzes_tables_that_fell_behind(clock: FakeClock) -> None:
    with own_postgres_database("arco_dispatcher_stats") as database:
        without_autovacuum(database)
        with _client(database, clock, interval=0.05) as http:
            _fill(database)
            wait_until(
                lambda: ANALYZED_TASKS in http.get("/metrics").text,
                timeout=30,
                what="the dispatcher to analyze tasks",
            )
            assert "tasks" not in stale_tables(database.engine)


def test_interval_zero_leaves_statistics_to_autovacuum(clock: FakeClock) -> None:
    with own_postgres_database("arco_dispatcher_stats") as database:
        without_autovacuum(database)
        with _client(database, clock, interval=0) as http:
            _fill(database)
            assert "tasks" in stale_tables(database.engine)
            metrics = http.get("/metrics").text
        assert ANALYZED_TASKS not in metrics
        assert "tasks" in stale_tables(database.engine)
