"""Lookups by primary key read a few pages however many rows the workspace holds, even before
PostgreSQL has statistics for the tables: in a new database (a fresh deployment, CI, a
benchmark) autovacuum first analyzes a table a minute or more after it fills, and until then
the planner rates ``tenant_id = $1 AND workspace_id = $2`` as very selective. It then took an
index that leads with the scope over the primary key, and every callback, claim and held
check read every task of the workspace (docs/performance.md, "Plans without statistics").

Each statement is the one the fact sends (recorded as it runs), planned again with
``EXPLAIN (ANALYZE, BUFFERS)`` as a prepared statement, with a generic and a custom plan, in a
database of its own that is never analyzed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, cast

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from arco_orchestration import delivery, facts
from arco_orchestration.db import Database
from arco_testkit.clock import T0
from arco_testkit.facts import dispatch, enqueue, planned, succeeded
from arco_testkit.plugin import own_postgres_database, without_autovacuum
from arco_testkit.values import SCOPE

pytestmark = pytest.mark.postgres

RUNS = 2_000  # one-task runs of a few assets, as a busy workspace has them
ASSETS = 10
WIDE = 1_000  # and one wide run
FINISHED = 1_500  # runs done of the one-task runs
# A lookup by key reads an index root and leaf and the heap page, per table and per key (a
# callback's locked read touches three tables); a scan of the workspace reads hundreds here.
PAGES_PER_KEY = 15


@pytest.fixture(scope="module")
def unanalyzed() -> Iterator[Database]:
    """A database of this module's own, filled and never analyzed."""
    with own_postgres_database("arco_plans") as database:
        without_autovacuum(database)
        _fill(database)
        yield database


def _fill(database: Database) -> None:
    with database.transaction() as session:
        for index in range(RUNS):
            facts.trigger_run(
                session,
                SCOPE,
                run_id=f"run-{index:05d}",
                plan_id=f"plan-{index}",
                tasks=[planned(f"asset.a{index % ASSETS}")],
                now=T0,
                triggered_by="tester",
            )
        facts.trigger_run(
            session,
            SCOPE,
            run_id="wide",
            plan_id="plan-wide",
            tasks=[planned(f"wide.t{index:05d}") for index in range(WIDE)],
            now=T0,
            triggered_by="tester",
        )
    # Most one-task runs done, as in a busy workspace: each task left an entry for each state
    # it passed through in the state indexes, until the next VACUUM.
    finished = [(f"run-{index:05d}", f"asset.a{index % ASSETS}") for index in range(10, FINISHED)]
    with database.transaction() as session:
        facts.request_dispatches(session, SCOPE, finished, now=T0)
    with database.transaction() as session:
        for run_id, key in finished:
            found = facts.run_with_task(session, SCOPE, run_id, key, lock=facts.RunLock.EXCLUSIVE)
            assert found is not None
            run, task = found
            facts.apply_started(session, run, task, worker_id="w", now=T0)
            facts.apply_completion(session, run, task, succeeded(), now=T0)
    for index in range(5):
        requested = dispatch(database, f"run-{index:05d}", f"asset.a{index % ASSETS}", now=T0)
        enqueue(database, requested.dispatch_id, now=T0, push_delivery=True)


def _recorded(database: Database, work: Callable[[Session], Any]) -> list[tuple[str, Any]]:
    """The SELECTs ``work`` sends, with their parameters; its transaction is rolled back."""
    sent: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        statement, parameters = str(args[2]), args[3]
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.engine.connect() as connection, Session(bind=connection) as session:
            work(session)
            connection.rollback()
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert sent, "the fact sent no SELECT"
    return sent


def _pages(database: Database, statement: str, parameters: Any, mode: str) -> int:
    """Pages the statement reads, planned as a prepared statement in ``mode``."""
    with database.engine.connect() as connection:
        connection.execute(text(f"SET plan_cache_mode = {mode}"))
        raw = cast("psycopg.Connection[Any]", connection.connection.dbapi_connection)
        row = raw.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters, prepare=True
        ).fetchone()
        connection.rollback()
    assert row is not None
    document = row[0]
    plan = (json.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


LOOKUPS: dict[str, tuple[int, Callable[[Session], Any]]] = {
    # name: (keys looked up, the fact)
    "run_with_task locked": (
        1,
        lambda s: facts.run_with_task(
            s, SCOPE, "run-01234", "asset.a4", lock=facts.RunLock.EXCLUSIVE
        ),
    ),
    "run_with_task of a wide run": (
        1,
        lambda s: facts.run_with_task(
            s, SCOPE, "wide", "wide.t00777", lock=facts.RunLock.EXCLUSIVE
        ),
    ),
    "run_with_task share-locked (a start)": (
        1,
        lambda s: facts.run_with_task(s, SCOPE, "wide", "wide.t00778", lock=facts.RunLock.SHARED),
    ),
    "lock_run": (1, lambda s: facts.lock_run(s, SCOPE, "run-01500")),
    "lock_runs": (3, lambda s: facts.lock_runs(s, SCOPE, ["run-00007", "run-00500", "wide"])),
    "get_task": (1, lambda s: facts.get_task(s, SCOPE, "run-01999", "asset.a9")),
    "get_tasks": (
        3,
        lambda s: facts.get_tasks(
            s, SCOPE, [("run-00010", "asset.a0"), ("wide", "wide.t00001"), ("wide", "wide.t00999")]
        ),
    ),
    "open_attempts": (
        2,
        lambda s: delivery.open_attempts(
            s, SCOPE, {("run-00001", "asset.a1", 1), ("wide", "wide.t00500", 1)}
        ),
    ),
    "claim_due_deliveries": (
        5,
        lambda s: delivery.claim_due_deliveries(
            s, SCOPE, owner="planner", now=T0 + timedelta(hours=1), lease=timedelta(1), limit=64
        ),
    ),
}


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
def test_a_lookup_by_key_reads_a_few_pages_without_statistics(
    unanalyzed: Database, lookup: str, mode: str
) -> None:
    keys, work = LOOKUPS[lookup]
    for statement, parameters in _recorded(unanalyzed, work):
        pages = _pages(unanalyzed, statement, parameters, mode)
        assert pages <= PAGES_PER_KEY * keys, f"{lookup} read {pages} pages: {statement}"


def test_the_tables_have_no_statistics(unanalyzed: Database) -> None:
    """What the test above relies on: the planner has nothing but defaults for them."""
    with unanalyzed.engine.connect() as connection:
        analyzed = connection.execute(
            text(
                "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema()"
                " AND tablename IN ('runs', 'tasks')"
            )
        ).scalar_one()
    assert analyzed == 0
