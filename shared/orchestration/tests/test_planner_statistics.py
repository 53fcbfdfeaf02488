"""The busy tables of a new database are analyzed as they grow from empty, about at each
doubling, and not again while they hold still (planner_statistics)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.planner_statistics import MIN_CHANGED_ROWS, refresh_stale, stale_tables
from arco_testkit.clock import T0
from arco_testkit.facts import planned
from arco_testkit.plugin import flush_table_counts, own_postgres_database, without_autovacuum
from arco_testkit.values import SCOPE


@pytest.fixture
def fresh() -> Iterator[Database]:
    with own_postgres_database("arco_stats") as database:
        without_autovacuum(database)
        yield database


def _trigger(database: Database, first: int, count: int) -> None:
    with database.transaction() as session:
        for index in range(first, first + count):
            facts.trigger_run(
                session,
                SCOPE,
                run_id=f"run-{index:05d}",
                plan_id=f"plan-{index}",
                tasks=[planned("asset.a")],
                now=T0,
                triggered_by="tester",
            )


def _analyzed(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(
            connection.execute(
                text(
                    "SELECT relname FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND last_analyze IS NOT NULL"
                )
            ).scalars()
        )


@pytest.mark.postgres
def test_a_table_growing_from_empty_is_analyzed_at_each_doubling(fresh: Database) -> None:
    _trigger(fresh, 0, MIN_CHANGED_ROWS // 2)
    flush_table_counts(fresh)
    assert stale_tables(fresh.engine) == []  # too few rows to matter

    _trigger(fresh, MIN_CHANGED_ROWS // 2, MIN_CHANGED_ROWS)
    flush_table_counts(fresh)
    assert {"runs", "tasks"} <= set(stale_tables(fresh.engine))
    refreshed = refresh_stale(fresh.engine)
    assert {"runs", "tasks"} <= set(refreshed)
    assert set(refreshed) <= _analyzed(fresh)
    assert stale_tables(fresh.engine) == []

    # Fewer new rows than the table held: the statistics still fit.
    known = MIN_CHANGED_ROWS * 3 // 2
    _trigger(fresh, known, known // 2)
    flush_table_counts(fresh)
    assert "tasks" not in stale_tables(fresh.engine)
    # As many again as it held: analyzed again.
    _trigger(fresh, known * 3 // 2, known)
    flush_table_counts(fresh)
    assert {"runs", "tasks"} <= set(refresh_stale(fresh.engine))


def test_other_databases_have_nothing_to_analyze(database: Database) -> None:
    if database.engine.dialect.name == "postgresql":
        pytest.skip("the PostgreSQL case has a database of its own above")
    assert stale_tables(database.engine) == []
    assert refresh_stale(database.engine) == []
