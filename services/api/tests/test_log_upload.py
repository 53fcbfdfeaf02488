"""Who may upload an attempt's logs, and for what (design D16; issue 15 item 8).

A worker uploads with the attempt's own task token: that token covers exactly its run, task
and attempt (403 otherwise). Users may upload too (upstream's worker uses its API key). Either
way only for a task of the run whose attempt was already dispatched: nobody claims an
attempt's create-only slot before its worker does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from services.api.tests.api_test_support import (
    DAILY,
    RAW,
    RUNS,
    Api,
    Attempt,
    bearer,
    forge,
    scoped_claims,
    unscoped_token,
    user_headers,
)


def _upload(api: Api, run_id: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    response: httpx.Response = api.client.post(f"{RUNS}/{run_id}/logs", json=body, headers=headers)
    return response


def _logs(api: Api, run_id: str) -> httpx.Response:
    return api.get(f"{RUNS}/{run_id}/logs")


def test_a_task_token_uploads_its_own_attempts_logs(api: Api, running: Attempt) -> None:
    response = _upload(
        api,
        running.run_id,
        bearer(running.token()),
        taskKey=RAW,
        attempt=1,
        stdout="hello from the task\n",
        stderr="",
    )
    assert response.status_code == 201, response.text
    assert response.json()["path"] == f"logs/{running.run_id}/{RAW}/attempt-1.log"
    assert "hello from the task" in _logs(api, running.run_id).text


def test_a_task_token_may_not_upload_for_another_task_attempt_or_run(
    api: Api, running: Attempt
) -> None:
    other_run = api.dispatch(api.run())
    token = bearer(running.token())
    refused = [
        _upload(api, running.run_id, token, taskKey=DAILY, attempt=1),
        _upload(api, running.run_id, token, taskKey=RAW, attempt=2),
        _upload(api, other_run.run_id, token, taskKey=RAW, attempt=1),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "FORBIDDEN"
        assert "only its own attempt" in response.json()["message"]
    # The legitimate owners' slots are still free.
    assert _logs(api, running.run_id).status_code == 404
    assert _logs(api, other_run.run_id).status_code == 404


def test_an_unscoped_task_token_cannot_upload(api: Api, running: Attempt) -> None:
    response = _upload(
        api, running.run_id, bearer(unscoped_token(running.task_id)), taskKey=RAW, attempt=1
    )
    assert response.status_code == 403
    assert "without run and attempt claims" in response.json()["message"]


def test_an_expired_or_forged_task_token_is_401(api: Api, running: Attempt) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    expired = forge(scoped_claims(running, now=past))
    forged = forge(scoped_claims(running), key="not-the-task-secret")
    for token in (expired, forged):
        response = _upload(api, running.run_id, bearer(token), taskKey=RAW, attempt=1)
        assert response.status_code == 401, response.text
    assert _logs(api, running.run_id).status_code == 404


def test_a_task_token_of_another_workspace_is_404(api: Api, running: Attempt) -> None:
    token = forge(scoped_claims(running, workspaceId="workspace-z"))
    response = _upload(api, running.run_id, bearer(token), taskKey=RAW, attempt=1)
    assert response.status_code == 404
    assert response.json()["message"] == "workspace not found"


def test_logs_only_for_tasks_of_the_run(api: Api, running: Attempt) -> None:
    """Issue 15 item 8: the old code stored logs for any task key a user named."""
    for key in ("no.such_task", DAILY):  # DAILY is in the manifest, not in this run
        response = _upload(api, running.run_id, user_headers(), taskKey=key, attempt=1)
        assert response.status_code == 404, response.text
        assert f"task {key} is not part of run {running.run_id}" in response.json()["message"]
    assert _logs(api, running.run_id).status_code == 404


def test_logs_only_for_attempts_already_dispatched(api: Api) -> None:
    """Issue 15 item 8: the old code let a user claim attempt slots not yet dispatched."""
    run_id = api.run([DAILY], includeUpstream=True)  # raw READY, daily BLOCKED behind it
    for key, attempt in ((RAW, 1), (DAILY, 1)):
        response = _upload(api, run_id, user_headers(), taskKey=key, attempt=attempt)
        assert response.status_code == 409, response.text
        assert "has not been dispatched" in response.json()["message"]
    first = api.dispatch(run_id)
    response = _upload(api, run_id, user_headers(), taskKey=RAW, attempt=2)
    assert response.status_code == 409
    assert _upload(api, run_id, bearer(first.token()), taskKey=RAW, attempt=1).status_code == 201
    second = api.retry(first)  # attempt 1 failed, attempt 2 dispatched
    assert _upload(api, run_id, bearer(second.token()), taskKey=RAW, attempt=2).status_code == 201
    text = _logs(api, run_id).text
    assert f"=== {RAW} attempt 1" in text
    assert f"=== {RAW} attempt 2" in text
