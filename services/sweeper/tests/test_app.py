"""The sweeper's HTTP face: health, readiness, metrics and ``POST /run`` with the summary
body of arco-orchestration 4.4 (scenario 63 end to end)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from arco_dispatch.adapters import make_sender
from arco_dispatch.memory_provider import MemoryProvider
from arco_orchestration.db import Database
from arco_orchestration.facts import request_dispatch
from arco_orchestration.states import OutboxStatus, TaskState
from arco_sweeper.app import create_app
from arco_sweeper.settings import SweeperSettings
from arco_testkit.clock import T0, FakeClock
from arco_testkit.dispatching import flow_settings, settings_values
from arco_testkit.facts import complete, load_task, outbox_row, planned, start, trigger
from arco_testkit.values import RUN_TOKEN, SCOPE

UPSTREAM_KEYS = {
    "repairs_created",
    "redispatch_attempted",
    "redispatch_enqueued",
    "redispatch_deduplicated",
    "redispatch_failed",
    "skipped_due_to_lag",
    "errors",
}

RUN_HEADERS = {"Authorization": f"Bearer {RUN_TOKEN}"}


def client(database: Database, clock: FakeClock, **overrides: Any) -> TestClient:
    overrides.setdefault("sweep_loop", False)
    settings = SweeperSettings(**settings_values(**overrides))
    return TestClient(
        create_app(settings, database, provider=MemoryProvider(), clock=clock), headers=RUN_HEADERS
    )


def test_health_ready_and_metrics(database: Database, clock: FakeClock) -> None:
    trigger(database, "run1", [planned("old")], now=T0 - timedelta(minutes=6))
    with client(database, clock) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"ready": True}
        assert http.get("/version").json()["service"] == "arco-sweeper"
        assert http.post("/run").status_code == 200
        metrics = http.get("/metrics").text
    assert 'arco_sweeper_cycles_total{outcome="ok"} 1.0' in metrics
    assert 'arco_sweeper_repairs_total{action="create_dispatch",rule="R1"} 1.0' in metrics
    assert 'arco_tasks{state="DISPATCHED"} 1.0' in metrics


def test_a_failed_first_attempt_is_bootstrapped_by_the_sweeper_route(
    database: Database, clock: FakeClock
) -> None:
    """63: attempt 1 fails -> RETRY_WAIT with a deadline; POST /run with the clock past it
    -> 200; the task is DISPATCHED at attempt 2 with retry_not_before cleared and a
    PENDING outbox row for attempt 2."""
    trigger(database, "run1", [planned("extract")])
    with database.transaction() as session:
        request = request_dispatch(session, SCOPE, "run1", "extract", now=T0)
    assert request is not None
    make_sender(flow_settings(), database, MemoryProvider()).enqueue_pending(
        request.dispatch_id, now=T0
    )
    start(database, "run1", "extract", now=T0)
    complete(database, "run1", "extract", now=T0, outcome="FAILED")
    failed = load_task(database, "run1", "extract")
    assert (failed.state, failed.retry_not_before) == (
        TaskState.RETRY_WAIT,
        T0 + timedelta(seconds=30),
    )
    clock.advance(timedelta(seconds=31))
    with client(database, clock) as http:
        response = http.post("/run")
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= UPSTREAM_KEYS
    assert body["repairs_created"] == 1
    assert body["repairs"] == [
        {
            "action": "create_dispatch",
            "id": "dispatch:run1:extract:2",
            "rule": "R3",
            "reason": "retry_wait_bootstrap",
        }
    ]
    task = load_task(database, "run1", "extract")
    assert (task.state, task.attempt, task.retry_not_before) == (TaskState.DISPATCHED, 2, None)
    row = outbox_row(database, "dispatch:run1:extract:2")
    assert row is not None
    assert row.status == OutboxStatus.PENDING


def test_run_answers_500_with_the_summary_when_an_item_failed(
    database: Database, clock: FakeClock
) -> None:
    trigger(database, "run1", [planned("stuck")], now=T0 - timedelta(minutes=20))
    with database.transaction() as session:
        request = request_dispatch(session, SCOPE, "run1", "stuck", now=T0 - timedelta(minutes=20))
    assert request is not None
    settings = SweeperSettings(**settings_values(sweep_loop=False))
    queue = MemoryProvider(capacity=0)
    app = create_app(settings, database, provider=queue, clock=clock)
    with TestClient(app, headers=RUN_HEADERS) as http:
        response = http.post("/run")
    assert response.status_code == 500
    body = response.json()
    assert (body["redispatch_attempted"], body["redispatch_failed"]) == (1, 1)
    assert body["errors"] == [
        {"kind": "redispatch_queue_full", "id": request.dispatch_id, "message": "queue full"}
    ]
