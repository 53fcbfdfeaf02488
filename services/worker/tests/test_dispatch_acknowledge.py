"""Acknowledging a dispatch (design D6): ``/started`` first, then 202 with the handler in the
background, or 200 / 503 / 429 without running anything."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    RunningWorker,
    Scripted,
    error_body,
    free_port,
    make_envelope,
    running_worker,
)

from arco_envelope import ATTEMPT_OVER_CODES
from arco_testkit.clock import wait_until
from arco_worker import TaskContext, Worker
from arco_worker.dedupe import DeliveryState


class Gate:
    """Lets a test hold handlers inside their run and count how often they ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs: list[str] = []

    def handler(self, ctx: TaskContext) -> dict[str, Any]:
        self.runs.append(ctx.dispatch_id)
        self.release.wait(10)
        return {"rowCount": len(self.runs)}


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.release.set()


@pytest.fixture
def gated(api: FakeCallbackApi, gate: Gate) -> Iterator[RunningWorker]:
    worker = Worker()
    worker.add("test.gate", gate.handler)
    with running_worker(worker, api, ARCO_WORKER_CONCURRENCY="2") as running:
        yield running


def test_started_accepted_answers_202_and_runs_in_the_background(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    envelope = make_envelope(api.base_url, "test.gate")
    response = gated.dispatch(envelope)
    # 202 came back while the handler is still held: the run is in the background.
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    wait_until(lambda: gate.runs == [envelope["dispatchId"]])
    started = api.requests("started")
    assert len(started) == 1
    assert started[0].authorization == "Bearer token-1"
    assert started[0].content_type == "application/json"
    assert started[0].task_id == envelope["taskId"]
    assert started[0].body["attempt"] == 1
    assert started[0].body["attemptId"] == envelope["attemptId"]
    assert started[0].body["workerId"] == "worker-test"
    assert "startedAt" in started[0].body
    gate.release.set()
    wait_until(lambda: len(api.requests("completed")) == 1)
    assert api.requests("completed")[0].body["output"] == {"rowCount": 1}


def test_duplicate_delivery_while_running_is_503_with_retry_after(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    envelope = make_envelope(api.base_url, "test.gate")
    assert gated.dispatch(envelope).status_code == 202
    duplicate = gated.dispatch(envelope)
    assert duplicate.status_code == 503
    assert duplicate.headers["Retry-After"] == "1"
    assert duplicate.json()["error"] == "dispatch_in_flight"
    gate.release.set()
    gated.wait_idle()
    assert gate.runs == [envelope["dispatchId"]]
    assert len(api.requests("started")) == 1


def test_duplicate_delivery_after_finishing_is_200_and_runs_nothing(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    gate.release.set()
    envelope = make_envelope(api.base_url, "test.gate")
    assert gated.dispatch(envelope).status_code == 202
    gated.wait_idle()
    again = gated.dispatch(envelope)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert gate.runs == [envelope["dispatchId"]]
    assert len(api.requests("started")) == 1
    assert len(api.requests("completed")) == 1


@pytest.mark.parametrize("code", sorted(ATTEMPT_OVER_CODES))
def test_started_409_attempt_over_code_answers_200_and_runs_nothing(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate, code: str
) -> None:
    # The message text is the server's real wording (no code inside): only `error` counts.
    api.script(
        "started",
        Scripted(409, error_body(code, "Task is already in terminal state: SUCCEEDED")),
    )
    envelope = make_envelope(api.base_url, "test.gate")
    response = gated.dispatch(envelope)
    assert response.status_code == 200
    assert response.json()["status"] == "attempt_over"
    gated.wait_idle()
    assert gate.runs == []
    assert [r.phase for r in api.requests()] == ["started"]
    # Remembered as finished: a redelivery runs nothing either.
    assert gated.dispatch(envelope).status_code == 200
    assert [r.phase for r in api.requests()] == ["started"]


def test_started_409_code_only_in_message_is_not_attempt_over(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    api.script("started", Scripted(409, error_body("conflict", "task_already_terminal")))
    response = gated.dispatch(make_envelope(api.base_url, "test.gate"))
    assert response.status_code == 502
    assert gate.runs == []


def test_started_401_answers_200_and_runs_nothing(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    api.script("started", Scripted(401, error_body("invalid_token", "ExpiredSignature")))
    envelope = make_envelope(api.base_url, "test.gate")
    response = gated.dispatch(envelope)
    assert response.status_code == 200
    assert response.json()["status"] == "token_rejected"
    gated.wait_idle()
    assert gate.runs == []
    assert [r.phase for r in api.requests()] == ["started"]


def test_started_5xx_after_retries_answers_503_and_a_redelivery_runs(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    api.script("started", Scripted(500), Scripted(502), Scripted(503))  # 3 = max attempts
    envelope = make_envelope(api.base_url, "test.gate")
    response = gated.dispatch(envelope)
    assert response.status_code == 503
    assert response.json()["error"] == "callback_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert len(api.requests("started")) == 3
    assert gate.runs == []
    # A failed /started does not poison dedupe: the queue's redelivery runs the task.
    assert gated.service.registry.state(envelope["dispatchId"]) is DeliveryState.NEW
    gate.release.set()
    assert gated.dispatch(envelope).status_code == 202
    gated.wait_idle()
    assert gate.runs == [envelope["dispatchId"]]


def test_started_5xx_then_success_is_retried(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    gate.release.set()
    api.script("started", Scripted(503, headers={"Retry-After": "0"}), Scripted(500))
    response = gated.dispatch(make_envelope(api.base_url, "test.gate"))
    assert response.status_code == 202
    assert len(api.requests("started")) == 3


def test_started_network_error_answers_503(api: FakeCallbackApi, gate: Gate) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    worker = Worker()
    worker.add("test.gate", gate.handler)
    with running_worker(worker, api, ARCO_FLOW_API_URL=unreachable) as running:
        response = running.dispatch(make_envelope(unreachable, "test.gate"))
    assert response.status_code == 503
    assert response.json()["error"] == "callback_unavailable"
    assert gate.runs == []


def test_other_started_rejection_answers_502_and_stays_redeliverable(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    api.script("started", Scripted(404, error_body("task_not_found")))
    envelope = make_envelope(api.base_url, "test.gate")
    assert gated.dispatch(envelope).status_code == 502
    assert gated.service.registry.state(envelope["dispatchId"]) is DeliveryState.NEW
    assert gate.runs == []


def test_concurrency_limit_answers_429_with_retry_after(
    gated: RunningWorker, api: FakeCallbackApi, gate: Gate
) -> None:
    first, second, third = (make_envelope(api.base_url, "test.gate") for _ in range(3))
    assert gated.dispatch(first).status_code == 202
    assert gated.dispatch(second).status_code == 202
    busy = gated.dispatch(third)
    assert busy.status_code == 429
    assert int(busy.headers["Retry-After"]) > 0
    assert busy.json()["error"] == "worker_busy"
    # Nothing was sent for the refused dispatch, and it is not remembered.
    assert api.requests(task_id=third["taskId"]) == []
    assert gated.service.registry.state(third["dispatchId"]) is DeliveryState.NEW
    gate.release.set()
    gated.wait_idle()
    assert gated.dispatch(third).status_code == 202
