"""What ``POST /dispatch`` accepts: a WorkerDispatchEnvelope (canonical or legacy snake_case)
in this worker's scope, with a usable token; everything else is 400 naming every problem,
decided before any callback is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    RunningWorker,
    make_envelope,
    now,
    running_worker,
    stamp,
)

from arco_testkit.clock import wait_until
from arco_worker import TaskContext, Worker
from arco_worker.dispatch_checks import normalize_url

ALL_REQUIRED = {
    "tenantId",
    "workspaceId",
    "taskKey",
    "runId",
    "attempt",
    "attemptId",
    "dispatchId",
    "workerQueue",
    "callbackBaseUrl",
    "taskToken",
    "tokenExpiresAt",
}


def _worker() -> Worker:
    worker = Worker()

    @worker.task("test.ok")
    def ok(ctx: TaskContext) -> dict[str, Any]:
        return {"rowCount": 1, "outputPath": f"s3://bucket/{ctx.run_id}"}

    return worker


@pytest.fixture(scope="module")
def served_worker(fake_api_server: FakeCallbackApi) -> Iterator[RunningWorker]:
    # One worker for the module: every test dispatches a fresh run, so they do not interact.
    with running_worker(_worker(), fake_api_server) as running:
        yield running


@pytest.fixture(autouse=True)
def _settle(served_worker: RunningWorker) -> Iterator[None]:
    # Let each test's runs finish, so the next test's fake API sees only its own callbacks.
    yield
    served_worker.wait_idle()


def _fields(response_body: dict[str, Any]) -> set[str]:
    return {item["field"] for item in response_body["fields"]}


def test_legacy_pre_envelope_payload_is_400_naming_every_missing_field(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    legacy = {"task_key": "test.ok", "run_id": "run-1", "asset": "sales", "partition": "p"}
    response = served_worker.dispatch(legacy)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_envelope"
    assert _fields(body) == ALL_REQUIRED - {"taskKey", "runId"}
    for name in ALL_REQUIRED - {"taskKey", "runId"}:
        assert name in body["message"]
    assert api.requests() == []


def test_empty_object_names_every_required_field(served_worker: RunningWorker) -> None:
    response = served_worker.dispatch({})
    assert response.status_code == 400
    assert _fields(response.json()) == ALL_REQUIRED


def test_wrong_types_are_named(served_worker: RunningWorker, api: FakeCallbackApi) -> None:
    envelope = make_envelope(api.base_url, attempt="1", tokenExpiresAt="2026-01-01T00:00:00")
    response = served_worker.dispatch(envelope)
    assert response.status_code == 400
    assert _fields(response.json()) == {"attempt", "tokenExpiresAt"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{not json", "(body)"), (b"[1, 2]", "(body)"), (b"", "(body)")],
)
def test_non_json_or_non_object_is_400(
    served_worker: RunningWorker, api: FakeCallbackApi, raw: bytes, field: str
) -> None:
    response = served_worker.dispatch(raw)
    assert response.status_code == 400
    assert _fields(response.json()) == {field}
    assert api.requests() == []


def test_both_spellings_of_a_field_is_400(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    envelope = make_envelope(api.base_url, tenant_id="tenant-a")
    response = served_worker.dispatch(envelope)
    assert response.status_code == 400
    assert "duplicate field `tenantId`" in response.json()["fields"][0]["problem"]


def test_legacy_snake_case_envelope_is_accepted(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    canonical = make_envelope(api.base_url)
    snake = {
        "tenant_id": canonical["tenantId"],
        "workspace_id": canonical["workspaceId"],
        "task_key": canonical["taskKey"],
        "run_id": canonical["runId"],
        "attempt": 1,
        "attempt_id": canonical["attemptId"],
        "dispatch_id": canonical["dispatchId"],
        "worker_queue": "default-queue",
        "callback_base_url": canonical["callbackBaseUrl"],
        "task_token": "token-1",
        "token_expires_at": canonical["tokenExpiresAt"],
        "payload": {},
    }
    response = served_worker.dispatch(snake)
    assert response.status_code == 202, response.text
    wait_until(lambda: len(api.requests("completed")) == 1)
    # No taskId: the callbacks go to the legacy task-key path, with camelCase bodies.
    assert {r.task_id for r in api.requests()} == {"test.ok"}
    completed = api.requests("completed")[0].body
    assert completed["attemptId"] == canonical["attemptId"]
    assert completed["outcome"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"tenantId": "tenant-z"}, "tenant_id"),
        ({"workspaceId": "workspace-z"}, "workspace_id"),
        ({"callbackBaseUrl": "http://evil.example"}, "callback_base_url"),
    ],
)
def test_scope_mismatch_is_400_before_any_callback(
    served_worker: RunningWorker, api: FakeCallbackApi, override: dict[str, str], field: str
) -> None:
    response = served_worker.dispatch(make_envelope(api.base_url, **override))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "scope_mismatch"
    assert body["message"] == f"dispatch envelope scope mismatch: {field}"
    assert api.requests() == []


def test_scope_mismatch_names_every_field(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    envelope = make_envelope(
        api.base_url, tenantId="t", workspaceId="w", callbackBaseUrl="http://x"
    )
    response = served_worker.dispatch(envelope)
    assert response.json()["message"] == (
        "dispatch envelope scope mismatch: tenant_id, workspace_id, callback_base_url"
    )


def test_callback_url_is_compared_normalised(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    variant = api.base_url.replace("http://", "HTTP://") + "/"
    envelope = make_envelope(api.base_url, callbackBaseUrl=variant)
    response = served_worker.dispatch(envelope)
    assert response.status_code == 202, response.text
    wait_until(lambda: len(api.requests("completed")) == 1)


def test_normalize_url() -> None:
    assert normalize_url("HTTPS://API.Example:8443/Root/?x=1#y") == "https://api.example:8443/Root"
    assert normalize_url("https://api.example/") == "https://api.example"


def test_expired_token_is_rejected_before_any_callback(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    expired = stamp(now() - timedelta(seconds=1))
    response = served_worker.dispatch(make_envelope(api.base_url, tokenExpiresAt=expired))
    assert response.status_code == 400
    assert _fields(response.json()) == {"tokenExpiresAt"}
    assert api.requests() == []


@pytest.mark.parametrize("timeout", [0, 1, 29])
def test_heartbeat_timeout_below_30_is_rejected_before_any_callback(
    served_worker: RunningWorker, api: FakeCallbackApi, timeout: int
) -> None:
    response = served_worker.dispatch(make_envelope(api.base_url, heartbeatTimeoutSec=timeout))
    assert response.status_code == 400
    assert _fields(response.json()) == {"heartbeatTimeoutSec"}
    assert api.requests() == []


def test_attempt_zero_is_rejected_before_any_callback(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    response = served_worker.dispatch(make_envelope(api.base_url, attempt=0))
    assert response.status_code == 400
    assert _fields(response.json()) == {"attempt"}
    assert api.requests() == []


def test_heartbeat_timeout_absent_or_30_is_accepted(
    served_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    envelope = make_envelope(api.base_url, heartbeatTimeoutSec=30)
    assert served_worker.dispatch(envelope).status_code == 202
    envelope = make_envelope(api.base_url)
    del envelope["heartbeatTimeoutSec"]
    assert served_worker.dispatch(json.dumps(envelope).encode()).status_code == 202
