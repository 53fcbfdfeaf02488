"""Unauthenticated system routes (arco-orchestration 2.5, design D13) and request ids on every
answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from services.api.tests.api_test_support import Api, Attempt, api_settings, user_headers

from arco_api.app import create_app
from arco_orchestration.db import Database


def test_health(client: TestClient) -> None:
    """2.5: `GET /health` is 200 `{"status":"ok"}` without credentials."""
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready(client: TestClient) -> None:
    """2.5 and D13: `GET /ready` is 200 `{"ready": true}` when the schema is at head."""
    response = client.get("/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


def test_ready_is_503_when_the_schema_is_not_at_head(tmp_path: Path) -> None:
    """Issue 3: 503 with a reason that names the migrate command."""
    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with TestClient(create_app(api_settings(), database)) as client:
            response = client.get("/ready")
    finally:
        database.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert "arco-orchestration migrate" in body["message"]


def test_version(client: TestClient, make_client: Callable[..., TestClient]) -> None:
    """2.5: `GET /version` names the service, its package version and the code version."""
    body = make_client(code_version="abc123").get("/version").json()
    assert body["service"] == "arco-api"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", body["packageVersion"])
    assert body["codeVersion"] == "abc123"


def test_metrics(api: Api, running: Attempt, make_client: Callable[..., TestClient]) -> None:
    """2.5 and D13: Prometheus text with callbacks by phase and status, tasks by state and
    request latency; 404 in the public posture."""
    assert api.completed(running).status_code == 200
    text = api.client.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    assert 'arco_api_callbacks_total{phase="started",status="200"} 1.0' in body
    assert 'arco_api_callbacks_total{phase="completed",status="200"} 1.0' in body
    assert 'arco_tasks{state="SUCCEEDED"} 1.0' in body
    assert "arco_api_runs_triggered_total 1.0" in body
    assert "arco_api_request_seconds_bucket" in body
    public = make_client(environment="prod", api_public=True)
    assert public.get("/metrics").status_code == 404


def test_request_id_on_every_answer(client: TestClient) -> None:
    """Issue 3 / arco-contract 4: every response carries `X-Request-Id` (echoed, else a new
    ULID), including 401, 404 of an unknown path, 405 and 422, and the error body repeats it."""
    assert client.get("/health", headers={"X-Request-Id": "abc"}).headers["x-request-id"] == "abc"
    for response in (
        client.get("/health"),
        client.get("/api/v1/workspaces/w/runs"),
        client.get("/no/such/path"),
        client.delete("/health"),
        client.get("/api/v1/workspaces/workspace-b/runs?limit=x", headers=user_headers()),
    ):
        request_id = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", request_id), response.status_code
        if response.status_code >= 400:
            assert response.json()["requestId"] == request_id


def test_unknown_path_is_a_json_404(client: TestClient) -> None:
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
