"""Values the database cannot hold (a string longer than its column, an integer beyond its
range) are the client's input: 400 with the route's error body, nothing stored, never a
500. PostgreSQL enforces the limits; SQLite stores any length, so these run there only."""

from __future__ import annotations

import pytest
from services.api.tests.api_test_support import Api, Attempt, user_headers

TOO_LONG = "x" * 600  # keys and ids are VARCHAR(512) and narrower


@pytest.fixture(autouse=True)
def _postgres_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce column lengths")


def test_a_log_upload_with_an_overlong_task_key_or_huge_attempt_is_refused(api: Api) -> None:
    # No task of the run has such a key, no such attempt was dispatched: refused before
    # anything is written (404 and 409), never a 500.
    run_id = api.run()
    path = f"/api/v1/workspaces/{api.scope.workspace_id}/runs/{run_id}/logs"
    for body, status in (
        ({"taskKey": TOO_LONG, "attempt": 1}, 404),
        ({"taskKey": "analytics.raw_orders", "attempt": 2**40}, 409),
    ):
        response = api.client.post(path, json=body, headers=user_headers())
        assert response.status_code == status, response.text
    listed = api.client.get(path, params={"taskKey": "raw", "attempt": 1}, headers=user_headers())
    assert listed.status_code == 404


def test_a_completion_with_an_overlong_output_field_is_422_and_changes_nothing(
    api: Api, running: Attempt
) -> None:
    """The wire model carries the column's limit (issue 15 finding 5): the worker learns which
    field is too long from a 422, never a 400 from the database after the model accepted it."""
    response = api.completed(running, extra={"output": {"materializationId": TOO_LONG}})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert "output.materializationId" in response.json()["message"]
    assert api.task(running.run_id, running.task_key)["state"] == "RUNNING"
    assert api.completed(running).status_code == 200
