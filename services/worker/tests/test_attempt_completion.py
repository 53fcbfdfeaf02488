"""The terminal report: SUCCEEDED with the output, FAILED with category, message, stack trace
and metrics, and a ``/completed`` that is retried until the token expires, never dropped
silently."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import structlog
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    Scripted,
    error_body,
    make_envelope,
    now,
    running_worker,
    stamp,
)

from arco_envelope import ErrorCategory, TaskOutput
from arco_worker import TaskContext, TaskFailure, Worker


def _run_one(
    api: FakeCallbackApi, worker: Worker, task_key: str, **envelope: Any
) -> dict[str, Any]:
    with running_worker(worker, api) as running:
        response = running.dispatch(make_envelope(api.base_url, task_key, **envelope))
        assert response.status_code == 202, response.text
        running.wait_idle()
    completed = api.requests("completed")
    assert len({str(r.body) for r in completed}) == 1
    return completed[0].body


def test_success_sends_succeeded_with_the_output_and_metrics(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.busy")
    def busy(ctx: TaskContext) -> TaskOutput:
        total = sum(i * i for i in range(300_000))  # burn some CPU
        return TaskOutput(row_count=total % 1000, output_path="s3://b/k", delta_version=3)

    body = _run_one(api, worker, "test.busy")
    assert body["outcome"] == "SUCCEEDED"
    assert body["output"]["outputPath"] == "s3://b/k"
    assert body["output"]["deltaVersion"] == 3
    assert body["metrics"]["cpuTimeMs"] > 0
    assert body["metrics"]["peakMemoryBytes"] > 1_000_000
    assert "error" not in body
    assert "completedAt" in body


@pytest.mark.parametrize(
    "result",
    [{"rowCount": 7}, {"row_count": 7}, TaskOutput(row_count=7)],
    ids=["wire-names", "field-names", "model"],
)
def test_async_handler_output_forms(api: FakeCallbackApi, result: Any) -> None:
    worker = Worker()

    @worker.task("test.async")
    async def produce(ctx: TaskContext) -> Any:
        return result

    assert _run_one(api, worker, "test.async")["output"] == {"rowCount": 7}


def test_no_output_omits_output(api: FakeCallbackApi) -> None:
    worker = Worker()
    worker.add("test.none", lambda ctx: None)
    body = _run_one(api, worker, "test.none")
    assert body["outcome"] == "SUCCEEDED"
    assert "output" not in body


def test_handler_exception_sends_failed_user_code_with_stack_trace(
    api: FakeCallbackApi,
) -> None:
    worker = Worker()

    def load_rows() -> None:
        raise ValueError("no rows for 2026-01-01")

    @worker.task("test.boom")
    def boom(ctx: TaskContext) -> None:
        load_rows()

    body = _run_one(api, worker, "test.boom")
    assert body["outcome"] == "FAILED"
    error = body["error"]
    assert error["category"] == "USER_CODE"
    assert error["message"] == "ValueError: no rows for 2026-01-01"
    assert "load_rows" in error["stackTrace"]
    assert "Traceback" in error["stackTrace"]
    assert "retryable" not in error  # the category default (retried) applies
    assert body["metrics"]["peakMemoryBytes"] > 0
    assert "output" not in body


@pytest.mark.parametrize(
    ("category", "retryable"),
    [
        (ErrorCategory.DATA_QUALITY, False),
        (ErrorCategory.INFRASTRUCTURE, True),
        (ErrorCategory.CONFIGURATION, False),
        (ErrorCategory.TIMEOUT, True),
        (ErrorCategory.USER_CODE, False),
        (ErrorCategory.DATA_QUALITY, None),
    ],
)
def test_typed_failure_sets_category_and_retryable(
    api: FakeCallbackApi, category: ErrorCategory, retryable: bool | None
) -> None:
    worker = Worker()

    @worker.task("test.typed")
    async def typed(ctx: TaskContext) -> None:
        raise TaskFailure("bad input", category=category, retryable=retryable)

    error = _run_one(api, worker, "test.typed")["error"]
    assert error["category"] == category.value
    assert error["message"] == "bad input"
    assert error.get("retryable") == retryable
    assert "stackTrace" in error


def test_invalid_output_fails_the_task(api: FakeCallbackApi) -> None:
    worker = Worker()
    worker.add("test.bad_output", lambda ctx: {"rowCount": -1})
    body = _run_one(api, worker, "test.bad_output")
    assert body["outcome"] == "FAILED"
    assert body["error"]["category"] == "USER_CODE"
    assert body["error"]["retryable"] is False
    assert "invalid output" in body["error"]["message"]


def test_unknown_task_key_fails_as_configuration(api: FakeCallbackApi) -> None:
    worker = Worker()
    worker.add("test.known", lambda ctx: None)
    body = _run_one(api, worker, "test.unknown")
    assert body["outcome"] == "FAILED"
    assert body["error"]["category"] == "CONFIGURATION"
    assert body["error"]["retryable"] is False
    assert "test.unknown" in body["error"]["message"]


def test_completed_is_retried_until_the_token_expires_and_the_loss_is_logged(
    api: FakeCallbackApi,
) -> None:
    worker = Worker()
    worker.add("test.ok", lambda ctx: None)
    api.set_default("completed", Scripted(503))
    expires = now() + timedelta(seconds=1)
    with structlog.testing.capture_logs() as logs, running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.ok", tokenExpiresAt=stamp(expires)))
        running.wait_idle()
    assert now() >= expires - timedelta(milliseconds=100)
    assert len(api.requests("completed")) > 3  # more than the bounded retries of the others
    undelivered = [e for e in logs if e["event"] == "completion_undelivered"]
    assert len(undelivered) == 1
    assert undelivered[0]["log_level"] == "error"
    assert undelivered[0]["outcome"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("answer", "event"),
    [
        (Scripted(409, error_body("task_already_terminal")), "completion_attempt_over"),
        (Scripted(401, error_body("invalid_token")), "completion_rejected"),
        (Scripted(422, {"error": "invalid_request", "message": "bad"}), "completion_rejected"),
    ],
    ids=["409", "401", "422"],
)
def test_final_completed_rejection_is_not_retried_but_logged(
    api: FakeCallbackApi, answer: Scripted, event: str
) -> None:
    worker = Worker()
    worker.add("test.ok", lambda ctx: None)
    api.script("completed", answer)
    with structlog.testing.capture_logs() as logs, running_worker(worker, api) as running:
        assert running.dispatch(make_envelope(api.base_url)).status_code == 202
        running.wait_idle()
    # The rejected report is never re-sent (a refused success is followed by one FAILED
    # report: see test_a_refused_success_is_reported_failed_not_retryable).
    outcomes = [r.body["outcome"] for r in api.requests("completed")]
    assert outcomes[0] == "SUCCEEDED"
    assert outcomes.count("SUCCEEDED") == 1
    assert event in {e["event"] for e in logs}


@pytest.mark.parametrize("status", [400, 422])
def test_a_refused_success_is_reported_failed_not_retryable(
    api: FakeCallbackApi, status: int
) -> None:
    """Issue 15 finding 5: when the API refuses a SUCCEEDED report as invalid, the worker
    reports the attempt FAILED (not retryable) with the refusal's message, so the task ends
    now instead of waiting RUNNING for the sweeper to retry work that had succeeded."""
    refusal = "invalid_argument: a value is too long or out of range for its field"
    api.script("completed", Scripted(status, error_body("invalid_argument", refusal)))
    worker = Worker()
    worker.add("test.ok", lambda ctx: TaskOutput(materialization_id="m-1", row_count=3))
    with running_worker(worker, api) as running:
        assert running.dispatch(make_envelope(api.base_url)).status_code == 202
        running.wait_idle()
    first, second = (r.body for r in api.requests("completed"))
    assert first["outcome"] == "SUCCEEDED"
    assert second["outcome"] == "FAILED"
    assert "output" not in second
    assert second["error"]["category"] == "USER_CODE"
    assert second["error"]["retryable"] is False
    assert refusal in second["error"]["message"]
    assert (second["attempt"], second["attemptId"]) == (first["attempt"], first["attemptId"])


def test_a_refused_failure_is_not_reported_again(api: FakeCallbackApi) -> None:
    api.script("completed", Scripted(400, error_body("invalid_argument")))
    worker = Worker()

    @worker.task("test.fails")
    def fails(ctx: TaskContext) -> None:
        raise TaskFailure("no", retryable=True)

    with running_worker(worker, api) as running:
        assert running.dispatch(make_envelope(api.base_url, "test.fails")).status_code == 202
        running.wait_idle()
    assert [r.body["outcome"] for r in api.requests("completed")] == ["FAILED"]


def test_an_output_key_longer_than_its_column_is_a_handler_failure(api: FakeCallbackApi) -> None:
    """The wire model holds the column's limit (512), so the worker sees it before the API."""
    worker = Worker()
    worker.add("test.long", lambda ctx: {"materializationId": "m" * 600})
    body = _run_one(api, worker, "test.long")
    assert body["outcome"] == "FAILED"
    assert body["error"]["retryable"] is False
    assert (
        "materializationId" in body["error"]["message"]
        or "materialization_id" in (body["error"]["message"])
    )


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def test_every_callback_body_is_camel_case(api: FakeCallbackApi) -> None:
    """arco-contract 5.1 (issue 15 item 11): callback bodies are camelCase only upstream, so
    the worker never sends a snake_case key (partialProgress is the task's own document)."""
    worker = Worker()

    @worker.task("test.fails")
    def fails(ctx: TaskContext) -> None:
        ctx.report_progress(10, "half", phase="load")
        raise TaskFailure("no", retryable=False)

    worker.add("test.ok", lambda ctx: TaskOutput(materialization_id="m", delta_table="t"))
    with running_worker(worker, api) as running:
        for key in ("test.ok", "test.fails"):
            assert running.dispatch(make_envelope(api.base_url, key)).status_code == 202
        running.wait_idle()
    bodies = [r.body for r in api.requests()]
    assert {r.phase for r in api.requests()} >= {"started", "completed"}
    assert [key for body in bodies for key in _keys(body) if "_" in key] == []
