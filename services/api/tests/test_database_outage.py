"""While the database is unreachable the API answers 503 with Retry-After (clients retry:
callbacks are idempotent), never a bare 500, and every 5xx leaves a ``server_error`` log
line (the chaos suite tells outage errors from real ones by them)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    api_settings,
    user_headers,
)
from structlog.testing import capture_logs

from arco_api.app import create_app
from arco_orchestration.db import Database
from arco_testkit.values import WORKSPACE


def test_an_unreachable_database_gets_503_and_a_server_error_line(tmp_path: Path) -> None:
    # SQLite cannot open a file in a directory that does not exist: every query fails
    # the way a database that went away does (OperationalError).
    unreachable = Database.from_url(f"sqlite:///{tmp_path / 'missing' / 'arco.db'}")
    app = create_app(api_settings(), unreachable)
    with capture_logs() as logs, TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(f"/api/v1/workspaces/{WORKSPACE}/runs", headers=user_headers())
    unreachable.dispose()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == "UNAVAILABLE"
    errors = [line for line in logs if line["event"] == "server_error"]
    assert [(e["status"], e["route"]) for e in errors] == [
        (503, "/api/v1/workspaces/{workspace_id}/runs")
    ]
