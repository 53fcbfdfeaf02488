"""Candidate scans use the state indexes, so a sweep's cost follows its candidates, not
the table size (design D7)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from arco_orchestration import scans
from arco_orchestration.db import Database
from arco_orchestration.facts import request_dispatch
from arco_orchestration.models import Run
from arco_testkit.clock import T0
from arco_testkit.facts import age, is_postgres, planned, start, trigger
from arco_testkit.values import SCOPE

SCANS: dict[str, tuple[Callable[[Session], object], str]] = {
    "ready": (
        lambda s: scans.ready_tasks(s, SCOPE, ready_before=T0),
        "ix_tasks_state_ready_at",
    ),
    "retry": (lambda s: scans.due_retries(s, SCOPE, now=T0), "ix_tasks_state_retry_not_before"),
    "dispatched": (
        lambda s: scans.dispatched_before(s, SCOPE, before=T0),
        "ix_tasks_state_dispatched_at",
    ),
    "running": (
        lambda s: scans.silent_running(s, SCOPE, deadline_before=T0),
        "ix_tasks_state_heartbeat_deadline",
    ),
    "cancelled": (
        lambda s: scans.unstarted_of_cancelled_runs(s, SCOPE),
        "ix_tasks_state_tenant_id_workspace_id",
    ),
    "pending": (
        lambda s: scans.pending_dispatches(s, SCOPE),
        "ix_dispatch_outbox_status_created_at",
    ),
}


def _query_plan(database: Database, scan: Callable[[Session], object]) -> str:
    """SQLite's plan of the SELECT that ``scan`` runs."""
    selects: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.transaction() as session:
            scan(session)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = selects
    with database.engine.connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return " | ".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize("name", sorted(SCANS))
def test_each_scan_searches_its_index(database: Database, name: str) -> None:
    if is_postgres(database):
        pytest.skip("the plan is read with SQLite's EXPLAIN QUERY PLAN")
    scan, index = SCANS[name]
    plan = _query_plan(database, scan)
    assert plan.startswith("SEARCH "), plan
    assert f"USING INDEX {index}" in plan, plan
    assert "SCAN " not in plan, plan


def test_scans_find_exactly_their_candidates(database: Database) -> None:
    tasks = [planned("ready_old"), planned("ready_new"), planned("started"), planned("sent")]
    trigger(database, "run1", tasks)
    age(database, "run1", "ready_old", ready_at=timedelta(minutes=6))
    with database.transaction() as session:
        for key in ("started", "sent"):
            request_dispatch(session, SCOPE, "run1", key, now=T0 - timedelta(minutes=11))
    start(database, "run1", "started", now=T0 - timedelta(minutes=10))
    with database.transaction() as session:
        ready = scans.ready_tasks(session, SCOPE, ready_before=T0 - timedelta(minutes=5))
        every_ready = scans.ready_tasks(session, SCOPE)
        dispatched = scans.dispatched_before(session, SCOPE, before=T0 - timedelta(minutes=10))
        silent = scans.silent_running(session, SCOPE, deadline_before=T0 - timedelta(seconds=30))
        pending = scans.pending_dispatches(session, SCOPE)
    assert [r.task_key for r in ready] == ["ready_old"]
    assert ready[0].at == T0 - timedelta(minutes=6)
    assert [r.task_key for r in every_ready] == ["ready_old", "ready_new"]
    assert [(r.task_key, r.attempt) for r in dispatched] == [("sent", 1)]
    assert [r.task_key for r in silent] == ["started"]
    assert pending == ["dispatch:run1:sent:1"]


def test_the_cancel_scan_finds_unstarted_tasks_of_cancel_requested_runs(
    database: Database,
) -> None:
    """A legacy state the API's cancel never leaves behind (it ends such tasks at once)."""
    trigger(database, "run1", [planned("a")])
    trigger(database, "run2", [planned("b")])
    with database.transaction() as session:
        run = session.get(Run, "run1")
        assert run is not None
        run.cancel_requested = True
        run.cancel_requested_at = T0
    with database.transaction() as session:
        found = scans.unstarted_of_cancelled_runs(session, SCOPE)
    assert [(r.run_id, r.task_key, r.at) for r in found] == [("run1", "a", T0)]
