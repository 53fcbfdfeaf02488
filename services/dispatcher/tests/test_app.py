"""The dispatcher's HTTP face: health, readiness, metrics and ``POST /run`` with the
summary body and status codes of arco-orchestration 3.1; with the http provider a run's
dispatches reach the worker through the running pump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatcher.app import create_app
from arco_dispatcher.settings import DispatcherSettings
from arco_orchestration.db import Database
from arco_orchestration.facts import request_dispatch
from arco_orchestration.models import Task
from arco_orchestration.states import DeliveryState
from arco_testkit.clock import FakeClock, wait_until
from arco_testkit.dispatching import CANONICAL_ENVELOPE_KEYS, RecordingWorker, settings_values
from arco_testkit.facts import outbox_by_dispatch_id, planned, trigger
from arco_testkit.values import DISPATCH_SECRET, RUN_TOKEN, SCOPE

SUMMARY_KEYS = {
    "ready_dispatch_emitted",
    "ready_dispatch_skipped",
    "dispatch_actions",
    "dispatch_enqueued",
    "dispatch_deduplicated",
    "dispatch_failed",
    "timer_actions",
    "timer_enqueued",
    "timer_deduplicated",
    "timer_failed",
    "errors",
}

RUN_HEADERS = {"Authorization": f"Bearer {RUN_TOKEN}"}


def client(database: Database, clock: FakeClock, **overrides: Any) -> TestClient:
    overrides.setdefault("dispatch_loop", False)
    provider = None if "dispatch_provider" in overrides else MemoryProvider()
    settings = DispatcherSettings(**settings_values(**overrides))
    return TestClient(
        create_app(settings, database, provider=provider, clock=clock), headers=RUN_HEADERS
    )


def test_health_ready_and_metrics(database: Database, clock: FakeClock) -> None:
    trigger(database, "run1", [planned("extract")])
    with client(database, clock) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"ready": True}
        assert http.get("/version").json()["service"] == "arco-dispatcher"
        assert http.post("/run").status_code == 200
        metrics = http.get("/metrics").text
    assert 'arco_dispatcher_cycles_total{outcome="ok"} 1.0' in metrics
    assert 'arco_dispatcher_enqueues_total{outcome="enqueued"} 1.0' in metrics
    assert 'arco_tasks{state="DISPATCHED"} 1.0' in metrics
    assert "arco_dispatcher_dispatch_latency_seconds_count 1.0" in metrics


def test_run_answers_the_summary_with_200(database: Database, clock: FakeClock) -> None:
    trigger(database, "run1", [planned("a"), planned("b")])
    with client(database, clock) as http:
        response = http.post("/run")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == SUMMARY_KEYS
    assert body["ready_dispatch_emitted"] == body["dispatch_enqueued"] == 2
    assert body["errors"] == []


def test_run_answers_500_with_the_summary_when_an_item_failed(
    database: Database, clock: FakeClock
) -> None:
    trigger(database, "run1", [planned("a"), planned("b")])
    with database.transaction() as session:
        request_dispatch(session, SCOPE, "run1", "a", now=clock())
        session.delete(session.get(Task, ("run1", "a")))
    with client(database, clock) as http:
        response = http.post("/run")
    assert response.status_code == 500
    body = response.json()
    assert set(body) == SUMMARY_KEYS
    assert body["dispatch_enqueued"] == 1
    assert body["errors"] == [
        {
            "kind": "dispatch_unscoped",
            "id": "dispatch:run1:a:1",
            "message": "refusing unscoped dispatch for missing task row: run=run1 task=a",
        }
    ]


def test_run_answers_500_with_an_error_when_the_cycle_cannot_run(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A hard failure (here: a database without the schema) is 500 {"error"}; /ready
    says why."""
    empty = Database.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with client(empty, clock) as http:
            response = http.post("/run")
            ready = http.get("/ready")
    finally:
        empty.dispose()
    assert response.status_code == 500
    assert "no such table" in response.json()["error"]
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert "schema at revision none" in ready.json()["message"]


def test_a_run_reaches_the_worker_through_the_http_push_queue(
    database: Database, clock: FakeClock, worker: RecordingWorker
) -> None:
    """The dispatcher process end to end with the default provider: POST /run enqueues,
    the pump delivers the canonical envelope with the secret header."""
    trigger(database, "run1", [planned("extract", partition_key="date=d:2026-01-01")])
    with client(database, clock, dispatch_provider="http", target_url=worker.url) as http:
        assert http.post("/run").json()["dispatch_enqueued"] == 1
        wait_until(
            lambda: [r.delivery_state for r in outbox_by_dispatch_id(database)] == ["DELIVERED"]
        )
        metrics = http.get("/metrics").text
    [request] = worker.requests()
    assert list(json.loads(request.body)) == CANONICAL_ENVELOPE_KEYS
    assert request.headers["x-arco-dispatch-secret"] == DISPATCH_SECRET
    assert "authorization" not in request.headers
    assert outbox_by_dispatch_id(database)[0].delivery_state == DeliveryState.DELIVERED
    assert 'arco_dispatcher_deliveries_total{outcome="delivered"} 1.0' in metrics
    # The task is still DISPATCHED: the worker holds its attempt; no 429, no capacity learned.
    assert "arco_dispatcher_attempts_held 1.0" in metrics
    assert "arco_dispatcher_deliveries_in_flight 0.0" in metrics
    assert "arco_dispatcher_delivery_limit 64.0" in metrics


def test_run_requires_the_run_token_in_constant_time(database: Database, clock: FakeClock) -> None:
    """Issue 15 finding 4: with ARCO_FLOW_RUN_TOKEN set, POST /run without it, with another
    token or another scheme is 401 and runs nothing; health and metrics stay open (they are
    not published outside the compose network)."""
    trigger(database, "run1", [planned("extract")])
    settings = DispatcherSettings(**settings_values(dispatch_loop=False))
    app = create_app(settings, database, provider=MemoryProvider(), clock=clock)
    with TestClient(app) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {RUN_TOKEN}"},
            {"Authorization": f"Bearer {RUN_TOKEN}x"},
        ):
            response = http.post("/run", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert [t.state for t in planned_tasks(database)] == ["READY"]
        assert http.get("/metrics").status_code == 200
        assert http.post("/run", headers=RUN_HEADERS).status_code == 200
    assert [t.state for t in planned_tasks(database)] == ["DISPATCHED"]


def test_run_is_open_in_the_dev_posture_without_a_token(
    database: Database, clock: FakeClock
) -> None:
    settings = DispatcherSettings(
        **settings_values(dispatch_loop=False, run_token="", environment="dev")
    )
    assert settings.problems() == []
    app = create_app(settings, database, provider=MemoryProvider(), clock=clock)
    with TestClient(app) as http:
        assert http.post("/run").status_code == 200


def planned_tasks(database: Database) -> list[Task]:
    with database.transaction() as session:
        rows = list(session.query(Task).all())
        session.expunge_all()
        return rows
