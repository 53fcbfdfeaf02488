"""The callback fast path (``FastPath`` with ``callback_routes.fast_routes()``) answers
exactly as the routed endpoints would: the same route label in the metrics, the
application's own error answers (503 while the database is away, 500 with the request id on
a bug), and everything that is not a ``POST`` to a callback route goes on to FastAPI's router
(405, 404)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import Api, Attempt, api_settings, bearer, sqlite_only
from services.api.tests.test_edge_hardening import request_series
from structlog.testing import capture_logs

from arco_api.app import create_app
from arco_orchestration import callbacks
from arco_orchestration.db import Database

pytestmark = sqlite_only


def test_callbacks_are_counted_under_their_route_template(
    client: TestClient, api: Api, running: Attempt
) -> None:
    assert api.started(running).status_code == 200
    assert api.completed(running).status_code == 200
    series = request_series(client)
    assert {"method": "POST", "route": "/api/v1/tasks/{task_id}/started", "status": "200"} in (
        series
    )
    assert {"method": "POST", "route": "/api/v1/tasks/{task_id}/completed", "status": "200"} in (
        series
    )


def test_other_methods_and_paths_go_to_the_router(client: TestClient, running: Attempt) -> None:
    path = f"/api/v1/tasks/{running.task_id}/started"
    assert client.get(path, headers=bearer(running.token())).status_code == 405
    assert client.post(f"{path}/", headers=bearer(running.token())).status_code == 404
    assert client.post(f"{path}/extra", headers=bearer(running.token())).status_code == 404
    assert client.post("/api/v1/tasks//started", headers=bearer(running.token())).status_code == (
        404
    )


def test_an_unreachable_database_gets_503_on_a_callback(tmp_path: Path, running: Attempt) -> None:
    unreachable = Database.from_url(f"sqlite:///{tmp_path / 'missing' / 'arco.db'}")
    app = create_app(api_settings(), unreachable)
    with capture_logs() as logs, TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            f"/api/v1/tasks/{running.task_id}/started",
            json=running.body(),
            headers=bearer(running.token()),
        )
    unreachable.dispose()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == "UNAVAILABLE"
    errors = [line for line in logs if line["event"] == "server_error"]
    assert [(e["status"], e["route"]) for e in errors] == [(503, "/api/v1/tasks/{task_id}/started")]


def test_a_bug_in_a_callback_is_a_500_with_the_request_id(
    app: FastAPI, api: Api, running: Attempt, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> callbacks.CallbackResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(callbacks, "handle_started", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            f"/api/v1/tasks/{running.task_id}/started",
            json=running.body(),
            headers={**bearer(running.token()), "X-Request-Id": "req-42"},
        )
    assert response.status_code == 500
    assert response.json() == {
        "code": "INTERNAL",
        "message": "internal error: RuntimeError",
        "requestId": "req-42",
    }
    assert response.headers["x-request-id"] == "req-42"


def test_the_fast_path_serves_under_a_mount_prefix(database: Database, running: Attempt) -> None:
    outer = FastAPI()
    outer.mount("/arco", create_app(api_settings(), database))
    with TestClient(outer) as client:
        response = client.post(
            f"/arco/api/v1/tasks/{running.task_id}/started",
            json=running.body(),
            headers=bearer(running.token()),
        )
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged"] is True
