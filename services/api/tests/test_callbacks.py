"""Worker callbacks over HTTP: the handler tests of arco-contract 8.9/8.10 and the callback
scenarios 1-26 of arco-orchestration section 8, plus the duplicate and late-callback rules of
arco-orchestration 5.6. Each test names the upstream test or scenario it re-expresses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    DAILY,
    RAW,
    Api,
    Attempt,
    Clock,
    debug_headers,
    error_of,
    forge,
    scoped_claims,
    sqlite_only,
    unscoped_token,
)

from arco_envelope import callback_task_id, format_timestamp, parse_timestamp
from arco_orchestration import callbacks, facts

DELTA_OUTPUT: dict[str, Any] = {
    "materializationId": "mat-1",
    "rowCount": 42,
    "deltaTable": "analytics.daily_sales",
    "deltaVersion": 7,
    "deltaPartition": "date=2024-01-15",
}


def events(api: Api, attempt: Attempt, kind: str) -> list[Any]:
    return [event for event in api.events(attempt.run_id, attempt.task_key) if event.kind == kind]


# --- /started -------------------------------------------------------------------------------


def test_handle_task_started_success(api: Api) -> None:
    """8.10 #1 `test_handle_task_started_success`, orchestration 8 #1: 200, acknowledged, one
    TaskStarted fact; a repeat for the RUNNING attempt is still 200 and writes nothing."""
    attempt = api.dispatch(api.run())
    response = api.started(attempt)
    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged"] is True
    assert list(body) == ["acknowledged", "serverTime"]
    parse_timestamp(body["serverTime"])
    assert api.task(attempt.run_id, RAW)["storedState"] == "RUNNING"
    before = api.snapshot(attempt.run_id)

    again = api.started(attempt)
    assert again.status_code == 200
    assert api.snapshot(attempt.run_id) == before
    assert len(events(api, attempt, "started")) == 1


def test_handle_task_started_not_found(api: Api) -> None:
    """8.10 #2 `test_handle_task_started_not_found`, orchestration 8 #2: a taskId that does not
    resolve is 404 `task_not_found`."""
    run_id = api.run()
    ghost = Attempt(run_id, "analytics.no_such_asset", 1, "att-x")
    status, code, message = error_of(api.started(ghost))
    assert (status, code) == (404, "task_not_found")
    assert message == f"task_not_found: Task not found: {ghost.task_id}"


def test_started_ct1_path_of_another_run_than_the_token_scope_is_not_found(api: Api) -> None:
    """arco-contract 5.6: with run scope, a `ct1_` id of another run is 404 (a token whose
    taskId names run A's task but whose runId says run B)."""
    run_a, run_b = api.run(), api.run()
    attempt_b = api.dispatch(run_b)
    path = callback_task_id(run_a, RAW)
    forged = Attempt(run_b, RAW, attempt_b.attempt, attempt_b.attempt_id)
    # A token naming run A's task id but scoped to run B: claim == path, run differs.
    token = forge(scoped_claims(forged, taskId=path))
    status, code, _ = error_of(api.started(forged, task_id=path, token=token))
    assert (status, code) == (404, "task_not_found")


def test_parquet_task_lookup_resolves_opaque_callback_task_id(api: Api) -> None:
    """8.9 #5 `parquet_task_lookup_resolves_opaque_callback_task_id`: with `extract` in two
    runs, ct1(run-2, extract) resolves to run-2 (and run-1 is untouched)."""
    run_1, run_2 = api.run(), api.run()
    api.dispatch(run_1)
    attempt = api.dispatch(run_2)
    before = api.snapshot(run_1)
    assert api.started(attempt).status_code == 200
    assert api.task(run_2, RAW)["storedState"] == "RUNNING"
    assert api.snapshot(run_1) == before


def test_task_lookup_rejects_ambiguous_legacy_task_key(api: Api) -> None:
    """8.9 #7 `parquet_task_lookup_rejects_ambiguous_legacy_task_key`, #8
    `task_callback_response_maps_ambiguous_legacy_task_id_to_bad_request`, 8.10 #3
    `test_handle_task_started_ambiguous_legacy_task_id_is_bad_request`, orchestration 8 #3:
    a bare task key in two runs, looked up without run scope (a legacy unscoped token), is 400
    `task_id_ambiguous` naming the opaque taskId."""
    api.dispatch(api.run())
    api.dispatch(api.run())
    attempt = Attempt("unused", RAW, 1, "att-1")
    response = api.started(attempt, task_id=RAW, token=unscoped_token(RAW))
    status, code, message = error_of(response)
    assert (status, code) == (400, "task_id_ambiguous")
    assert message == (f"task_id_ambiguous: Legacy task id is ambiguous; use opaque taskId: {RAW}")
    assert "opaque taskId" in message


def test_parquet_task_lookup_uses_run_id_scope_for_repeated_task_keys(api: Api) -> None:
    """8.9 #13 `test_parquet_task_lookup_uses_run_id_scope_for_repeated_task_keys`: unscoped,
    the repeated key is ambiguous; with run scope run-b it resolves to run-b's task, which is
    RUNNING at attempt 2."""
    run_a, run_b = api.run(), api.run()
    api.dispatch(run_a)
    first = api.dispatch(run_b)
    assert api.started(first).status_code == 200
    second = api.retry(first)
    assert api.started(second).status_code == 200

    unscoped = api.started(second, task_id=RAW, token=unscoped_token(RAW))
    assert error_of(unscoped)[:2] == (400, "task_id_ambiguous")

    legacy_scoped = forge(scoped_claims(second, taskId=RAW))
    response = api.heartbeat(second, task_id=RAW, token=legacy_scoped)
    assert response.status_code == 200, response.text
    task = api.task(run_b, RAW)
    assert (task["storedState"], task["attempt"]) == ("RUNNING", 2)
    assert "lastHeartbeatAt" in task
    assert "lastHeartbeatAt" not in api.task(run_a, RAW)


def test_handle_task_started_legacy_path_validates_canonical_callback_task_id(api: Api) -> None:
    """8.10 #4, orchestration 8 #4, re-expressed over HTTP: the token is validated against the
    canonical `ct1_` id, so a canonical token is accepted on the canonical path. Over HTTP a
    canonical token on a *legacy* path never reaches the validator: step 5.5/4 rejects it with
    401 `task_id_mismatch` (the claim must equal the path segment), and nothing is written."""
    attempt = api.dispatch(api.run())
    before = api.snapshot(attempt.run_id)
    status, code, message = error_of(api.started(attempt, task_id=RAW))
    assert (status, code, message) == (401, "invalid_token", "invalid_token: task_id_mismatch")
    assert api.snapshot(attempt.run_id) == before
    assert api.started(attempt).status_code == 200


def test_handle_task_started_legacy_path_accepts_legacy_task_key_token(api: Api) -> None:
    """8.10 #5, orchestration 8 #5 and #67, 8.12
    `run_dispatch_callback_path_advances_task_state`: a scoped token whose taskId is the task
    key works on the legacy task-key path (run scope from the token): started, then completed
    SUCCEEDED with delta output, leaves the task SUCCEEDED with the lineage recorded."""
    attempt = api.dispatch(api.run())
    token = forge(scoped_claims(attempt, taskId=RAW))
    assert api.started(attempt, task_id=RAW, token=token).status_code == 200
    body = attempt.body(outcome="SUCCEEDED", output=DELTA_OUTPUT)
    response = api.callback("completed", attempt, body, task_id=RAW, token=token)
    assert response.status_code == 200, response.text
    summary = api.summary(attempt.run_id, RAW)
    assert summary["state"] == "SUCCEEDED"
    assert (summary["deltaTable"], summary["deltaVersion"], summary["deltaPartition"]) == (
        "analytics.daily_sales",
        7,
        "date=2024-01-15",
    )


def test_handle_task_started_terminal(api: Api, running: Attempt) -> None:
    """8.10 #6 `test_handle_task_started_terminal`, orchestration 8 #6: /started on a
    SUCCEEDED task is 409 `task_already_terminal` with `state`."""
    assert api.completed(running).status_code == 200
    response = api.started(running)
    status, code, message = error_of(response)
    assert (status, code) == (409, "task_already_terminal")
    assert response.json()["state"] == "SUCCEEDED"
    assert message == "task_already_terminal: Task is already in terminal state: SUCCEEDED"


def test_task_started_reports_attempt_already_completed_for_a_redelivered_retry_wait_attempt(
    api: Api, running: Attempt
) -> None:
    """8.10 #7, orchestration 8 #7: RETRY_WAIT and the same attempt is 409
    `attempt_already_completed`, state RETRY_WAIT, expected = received = 1."""
    api.fail(running)
    before = api.snapshot(running.run_id)
    response = api.started(running)
    status, code, message = error_of(response)
    assert (status, code) == (409, "attempt_already_completed")
    body = response.json()
    assert (body["state"], body["expectedAttempt"], body["receivedAttempt"]) == (
        "RETRY_WAIT",
        1,
        1,
    )
    assert message == (
        "attempt_already_completed: Attempt 1 already reported a terminal result; "
        "task state is RETRY_WAIT"
    )
    assert api.snapshot(running.run_id) == before


def test_task_started_allows_the_next_attempt_after_a_retry_wait_completion(
    api: Api, running: Attempt
) -> None:
    """8.10 #8, orchestration 8 #8: after RETRY_WAIT the task is DISPATCHED at attempt 2, and
    /started for attempt 2 is 200."""
    second = api.retry(running)
    assert second.attempt == 2
    assert api.task(running.run_id, RAW)["storedState"] == "DISPATCHED"
    assert api.started(second).status_code == 200
    assert api.task(running.run_id, RAW)["storedState"] == "RUNNING"


def test_handle_task_started_attempt_mismatch(api: Api, running: Attempt) -> None:
    """8.10 #10, orchestration 8 #9: stored attempt 2, body attempt 1 (token of attempt 2) is
    409 `attempt_mismatch`, expected 2, received 1."""
    second = api.retry(running)
    response = api.started(second, body=second.body(attempt=1))
    status, code, message = error_of(response)
    assert (status, code) == (409, "attempt_mismatch")
    body = response.json()
    assert (body["expectedAttempt"], body["receivedAttempt"]) == (2, 1)
    assert message == "attempt_mismatch: Expected attempt 2, received 1"


def test_handle_task_started_attempt_id_mismatch(api: Api) -> None:
    """8.10 #11, orchestration 8 #10: a wrong attemptId in the body is 409
    `attempt_id_mismatch` with expected and received ids."""
    attempt = api.dispatch(api.run())
    response = api.started(attempt, body=attempt.body(attemptId="att-2"))
    status, code, message = error_of(response)
    assert (status, code) == (409, "attempt_id_mismatch")
    body = response.json()
    assert (body["expectedAttemptId"], body["receivedAttemptId"]) == (attempt.attempt_id, "att-2")
    assert (
        message == f"attempt_id_mismatch: Expected attempt_id {attempt.attempt_id}, received att-2"
    )


def test_handle_task_started_cancel_requested(api: Api, running: Attempt) -> None:
    """8.10 #12, orchestration 8 #11: /started for a non-terminal task of a cancel-requested
    run is 409 `task_already_terminal` with state CANCELLED."""
    assert api.cancel(running.run_id).json()["state"] == "CANCELLING"
    response = api.started(running)
    status, code, _ = error_of(response)
    assert (status, code) == (409, "task_already_terminal")
    assert response.json()["state"] == "CANCELLED"
    assert api.task(running.run_id, RAW)["storedState"] == "RUNNING"


def test_handle_task_started_cancelled_task_conflicts(api: Api) -> None:
    """8.10 #13, orchestration 8 #12: a DISPATCHED task cancelled with its run gives 409 with
    state CANCELLED, and no fact is written."""
    attempt = api.dispatch(api.run())
    assert api.cancel(attempt.run_id).json()["state"] == "CANCELLED"
    before = api.snapshot(attempt.run_id)
    response = api.started(attempt)
    assert error_of(response)[:2] == (409, "task_already_terminal")
    assert response.json()["state"] == "CANCELLED"
    assert api.snapshot(attempt.run_id) == before
    assert events(api, attempt, "started") == []


# --- /heartbeat -----------------------------------------------------------------------------


def test_handle_heartbeat_with_cancel(api: Api, running: Attempt) -> None:
    """8.10 #14, orchestration 8 #13: 200 with shouldCancel false and no cancelReason, then
    after a cancel request shouldCancel true and cancelReason `user_requested`."""
    quiet = api.heartbeat(running)
    assert quiet.status_code == 200
    assert list(quiet.json()) == ["acknowledged", "shouldCancel", "serverTime"]
    assert quiet.json()["shouldCancel"] is False

    api.cancel(running.run_id, reason="stop")
    response = api.heartbeat(running)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["acknowledged", "shouldCancel", "cancelReason", "serverTime"]
    assert (body["acknowledged"], body["shouldCancel"], body["cancelReason"]) == (
        True,
        True,
        "user_requested",
    )


def test_handle_heartbeat_attempt_id_mismatch(api: Api, running: Attempt) -> None:
    """8.10 #15, orchestration 8 #14: 409 `attempt_id_mismatch`."""
    before = api.snapshot(running.run_id)
    response = api.heartbeat(running, body=running.body(attemptId="att-other"))
    assert error_of(response)[:2] == (409, "attempt_id_mismatch")
    assert api.snapshot(running.run_id) == before


@sqlite_only
@pytest.mark.parametrize("progress", [101, 200, 255, 256, -1, 50.5, "50"])
def test_handle_heartbeat_invalid_progress_pct(
    api: Api, running: Attempt, progress: object
) -> None:
    """8.10 #16, orchestration 8 #15, arco-contract 8.1 #8, re-expressed over HTTP: the JSON
    layer rejects progressPct outside 0..100 (and non-integers) first, so the answer is 422
    `invalid_request` naming progressPct (design D9), and nothing is written."""
    before = api.snapshot(running.run_id)
    response = api.heartbeat(running, body=running.body(progressPct=progress))
    status, code, message = error_of(response)
    assert (status, code) == (422, "invalid_request")
    assert "progressPct" in message
    assert any("progressPct" in item["loc"] for item in response.json()["detail"])
    assert api.snapshot(running.run_id) == before


def test_handle_heartbeat_terminal_returns_gone(api: Api, running: Attempt) -> None:
    """8.10 #17, orchestration 8 #16: a heartbeat on a SUCCEEDED task is 410 `task_expired`
    with state SUCCEEDED."""
    assert api.completed(running).status_code == 200
    response = api.heartbeat(running)
    status, code, message = error_of(response)
    assert (status, code, message) == (
        410,
        "task_expired",
        "task_expired: Task is no longer active",
    )
    assert response.json()["state"] == "SUCCEEDED"


def test_handle_heartbeat_sets_server_timestamp(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """8.10 #18, orchestration 8 #17: the heartbeat is recorded at the server's receipt time,
    whatever heartbeatAt the worker sent; progress and message are kept (8.9 #2)."""
    clock = Clock()
    timed = Api(make_client(clock=clock), api.database)
    attempt = timed.dispatch(timed.run())
    assert timed.started(attempt).status_code == 200
    clock.advance(42)
    skewed = format_timestamp(datetime(2001, 1, 1, tzinfo=UTC))
    response = timed.heartbeat(
        attempt, body=attempt.body(heartbeatAt=skewed, progressPct=50, message="half way")
    )
    assert response.status_code == 200
    assert parse_timestamp(response.json()["serverTime"]) == clock.now
    task = timed.task(attempt.run_id, RAW)
    assert parse_timestamp(task["lastHeartbeatAt"]) == clock.now
    assert (task["progressPct"], task["progressMessage"]) == (50, "half way")


def test_heartbeat_is_accepted_before_started_and_in_retry_wait(api: Api) -> None:
    """arco-contract 5.5 "out of order" and arco-orchestration 5.4: a heartbeat in DISPATCHED
    (before /started) and in RETRY_WAIT for the same attempt is 200 and changes no state."""
    attempt = api.dispatch(api.run())
    assert api.heartbeat(attempt).status_code == 200
    assert api.task(attempt.run_id, RAW)["storedState"] == "DISPATCHED"
    api.fail(attempt)
    response = api.heartbeat(attempt)
    assert response.status_code == 200
    assert response.json()["shouldCancel"] is False
    assert api.task(attempt.run_id, RAW)["storedState"] == "RETRY_WAIT"


# --- server time ----------------------------------------------------------------------------


@pytest.mark.parametrize("skew_days", [3650, -3650])
def test_callback_events_are_timed_from_server_receipt_not_worker_clocks(
    api: Api, make_client: Callable[..., TestClient], skew_days: int
) -> None:
    """8.10 #9, orchestration 8 #18 (and 5.6 "clock skew"): worker timestamps off by ten years
    never become event time; the callback is accepted and the skew is counted."""
    clock = Clock()
    client = make_client(clock=clock)
    timed = Api(client, api.database)
    attempt = timed.dispatch(timed.run())
    worker_time = format_timestamp(clock.now + timedelta(days=skew_days))
    assert timed.started(attempt, body=attempt.body(startedAt=worker_time)).status_code == 200
    beat = timed.callback("heartbeat", attempt, attempt.body(heartbeatAt=worker_time))
    assert beat.status_code == 200
    clock.advance(5)
    body = attempt.body(outcome="SUCCEEDED", completedAt=worker_time)
    assert timed.callback("completed", attempt, body).status_code == 200
    history = timed.task(attempt.run_id, RAW)["history"]
    times = {event["kind"]: parse_timestamp(event["at"]) for event in history}
    assert times["started"] == clock.now - timedelta(seconds=5)
    assert times["completed"] == clock.now
    metrics = client.get("/metrics").text
    assert 'arco_api_worker_clock_skew_total{phase="started"} 1.0' in metrics
    assert 'arco_api_worker_clock_skew_total{phase="heartbeat"} 1.0' in metrics
    assert 'arco_api_worker_clock_skew_total{phase="completed"} 1.0' in metrics


# --- /completed -----------------------------------------------------------------------------


def test_handle_task_completed_success(api: Api) -> None:
    """8.10 #19, orchestration 8 #19, 8.9 #3/#4: SUCCEEDED with delta output is 200
    `finalState` SUCCEEDED; one completion fact; the task keeps asset, partition and the delta
    lineage, and the run the manifest's code version."""
    response = api.trigger(
        {"selection": [DAILY], "partitionKey": "date=s:MjAyNC0wMS0xNQ"},
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["runId"]
    attempt = api.dispatch(run_id, DAILY)
    assert api.started(attempt).status_code == 200
    completed = api.completed(attempt, extra={"output": DELTA_OUTPUT})
    assert completed.status_code == 200
    body = completed.json()
    assert list(body) == ["acknowledged", "finalState", "serverTime"]
    assert (body["acknowledged"], body["finalState"]) == (True, "SUCCEEDED")
    assert len(events(api, attempt, "completed")) == 1
    task = api.task(run_id, DAILY)
    assert (task["assetKey"], task["partitionKey"]) == (DAILY, "date=d:2024-01-15")
    assert task["output"] == DELTA_OUTPUT
    summary = api.summary(run_id, DAILY)
    assert (summary["deltaTable"], summary["deltaVersion"], summary["deltaPartition"]) == (
        "analytics.daily_sales",
        7,
        "date=2024-01-15",
    )
    assert summary["executionLineageRef"] == (
        f'{{"runId":"{run_id}","taskKey":"{DAILY}","attempt":1,"materializationId":"mat-1",'
        '"deltaTable":"analytics.daily_sales","deltaVersion":7,'
        '"deltaPartition":"date=2024-01-15"}'
    )
    assert api.snapshot(run_id, DAILY)["run"]["code_version"] == "01M8EENQ2YH5T6GYKK1GHWHZYZ"


def test_lineage_ref_partition_falls_back_to_the_task_partition_key(api: Api) -> None:
    """arco-orchestration 6.2 `executionLineageRef`: without deltaPartition the ref carries the
    task's partition key."""
    response = api.trigger({"selection": [DAILY], "partitionKey": "date=s:MjAyNC0wMS0xNQ"})
    run_id = response.json()["runId"]
    attempt = api.dispatch(run_id, DAILY)
    assert api.completed(attempt, extra={"output": {"rowCount": 1}}).status_code == 200
    ref = api.summary(run_id, DAILY)["executionLineageRef"]
    assert ref.endswith('"deltaPartition":"date=d:2024-01-15"}')


def test_handle_task_completed_writes_completion_and_visibility_as_single_event(
    api: Api, running: Attempt
) -> None:
    """8.10 #20 and #22, orchestration 8 #20 and #43: output visibility PENDING plus
    publishedAt ride in the single completion fact; the run stays publicly RUNNING."""
    output = {"outputVisibilityState": "PENDING", "publishedAt": "2026-01-01T00:00:00Z"}
    assert api.completed(running, extra={"output": output}).status_code == 200
    assert [e.kind for e in api.events(running.run_id)].count("completed") == 1
    assert api.summary(running.run_id, RAW)["outputVisibilityState"] == "PENDING"
    assert api.detail(running.run_id)["state"] == "RUNNING"


def test_handle_task_completed_emits_legacy_compatible_completion_without_visibility(
    api: Api, running: Attempt
) -> None:
    """8.10 #21, orchestration 8 #21 and #43: without a visibility state there is none, and
    the run is publicly SUCCEEDED."""
    assert api.completed(running, extra={"output": {"rowCount": 3}}).status_code == 200
    assert "outputVisibilityState" not in api.summary(running.run_id, RAW)
    assert api.detail(running.run_id)["state"] == "SUCCEEDED"


@pytest.mark.parametrize(("visibility", "public"), [("VISIBLE", "SUCCEEDED"), ("FAILED", "FAILED")])
def test_required_output_visibility_gates_the_public_run_state(
    api: Api, running: Attempt, visibility: str, public: str
) -> None:
    """arco-orchestration 8 #43 and #68: VISIBLE keeps the run SUCCEEDED (with publishedAt),
    FAILED makes it publicly FAILED."""
    output = {"outputVisibilityState": visibility, "publishError": "denied"}
    assert api.completed(running, extra={"output": output}).status_code == 200
    detail = api.detail(running.run_id)
    assert detail["state"] == public
    assert detail["tasks"][0]["outputVisibilityState"] == visibility


def test_handle_task_completed_attempt_id_mismatch(api: Api, running: Attempt) -> None:
    """8.10 #23, orchestration 8 #22: a wrong attemptId on /completed is 409 and writes
    nothing."""
    before = api.snapshot(running.run_id)
    body = running.body(outcome="SUCCEEDED", attemptId="att-stale")
    response = api.callback("completed", running, body)
    assert error_of(response)[:2] == (409, "attempt_id_mismatch")
    assert api.snapshot(running.run_id) == before


def test_handle_task_completed_failure(api: Api, running: Attempt) -> None:
    """8.10 #24, orchestration 8 #23, 8.9 #9: FAILED with a USER_CODE error is 200
    `finalState` FAILED (the task itself waits for a retry)."""
    error = {"category": "USER_CODE", "message": "boom", "retryable": True, "stackTrace": "tb"}
    response = api.completed(running, "FAILED", {"error": error})
    assert response.status_code == 200
    assert response.json()["finalState"] == "FAILED"
    task = api.task(running.run_id, RAW)
    assert task["storedState"] == "RETRY_WAIT"
    assert task["error"] == error
    assert task["errorMessage"] == "boom"


def test_handle_task_completed_allows_partial_output_on_failure(api: Api, running: Attempt) -> None:
    """8.10 #25, orchestration 8 #23: FAILED with a partial output is still 200 FAILED."""
    extra = {
        "output": {"rowCount": 5},
        "error": {"category": "DATA_QUALITY", "message": "bad rows"},
        "metrics": {"cpuTimeMs": 10},
        "partialProgress": {"done": 5},
        "cancelledDuringPhase": "write",
    }
    response = api.completed(running, "FAILED", extra)
    assert response.status_code == 200
    assert response.json()["finalState"] == "FAILED"
    task = api.task(running.run_id, RAW)
    assert task["storedState"] == "FAILED"
    assert task["output"] == {"rowCount": 5}
    assert task["metrics"] == {"cpuTimeMs": 10}


def test_completed_request_accepts_legacy_result_alias(api: Api, running: Attempt) -> None:
    """arco-contract 8.1 #9 `completed_request_accepts_legacy_result_alias` over HTTP: `result`
    is read as `output`; sending both is 422."""
    both = running.body(outcome="SUCCEEDED", output={"rowCount": 1}, result={"rowCount": 1})
    assert error_of(api.callback("completed", running, both))[:2] == (422, "invalid_request")
    response = api.completed(running, extra={"result": {"rowCount": 1}})
    assert response.status_code == 200
    assert api.task(running.run_id, RAW)["output"] == {"rowCount": 1}


def test_completed_before_started_is_accepted(api: Api) -> None:
    """arco-orchestration 1.2 and arco-contract 5.5: a completion from DISPATCHED (the worker
    skipped /started) is accepted."""
    attempt = api.dispatch(api.run())
    assert api.completed(attempt).status_code == 200
    assert api.detail(attempt.run_id)["state"] == "SUCCEEDED"


def test_handle_task_started_invalid_token(api: Api, running: Attempt) -> None:
    """8.10 #26, orchestration 8 #24: a rejected token is 401 `invalid_token`."""
    response = api.started(running, token="not-a-jwt")
    status, code, message = error_of(response)
    assert (status, code) == (401, "invalid_token")
    assert message == "invalid_token: invalid input: invalid task token: InvalidToken"


CATEGORY_DEFAULTS = [
    ("USER_CODE", None, "RETRY_WAIT"),
    ("INFRASTRUCTURE", None, "RETRY_WAIT"),
    ("TIMEOUT", None, "RETRY_WAIT"),
    ("DATA_QUALITY", None, "FAILED"),
    ("CONFIGURATION", None, "FAILED"),
    ("CANCELLED", None, "FAILED"),
    ("DATA_QUALITY", True, "RETRY_WAIT"),
    ("USER_CODE", False, "FAILED"),
]


@pytest.mark.parametrize(("category", "retryable", "stored"), CATEGORY_DEFAULTS)
def test_error_category_default_retryable(
    api: Api, running: Attempt, category: str, retryable: bool | None, stored: str
) -> None:
    """Orchestration 8 #25, 8.11 #5 `test_error_category_default_retryable` and #6
    `test_task_error_effective_retryable`, over HTTP: USER_CODE, INFRASTRUCTURE and TIMEOUT
    retry by default, the rest do not, and an explicit `retryable` wins; the stored error
    carries the effective value."""
    error: dict[str, Any] = {"category": category, "message": "x"}
    if retryable is not None:
        error["retryable"] = retryable
    response = api.completed(running, "FAILED", {"error": error})
    assert response.status_code == 200
    assert response.json()["finalState"] == "FAILED"
    task = api.task(running.run_id, RAW)
    assert task["storedState"] == stored
    expected_retryable = stored == "RETRY_WAIT"
    assert task["error"]["retryable"] is expected_retryable


def test_failed_completion_without_error_object_is_retryable(api: Api, running: Attempt) -> None:
    """arco-orchestration 1.2 T7: a FAILED completion with no error object retries."""
    assert api.completed(running, "FAILED").status_code == 200
    assert api.task(running.run_id, RAW)["storedState"] == "RETRY_WAIT"


def test_callback_result_status_codes(
    api: Api, running: Attempt, make_client: Callable[..., TestClient], monkeypatch: Any
) -> None:
    """Orchestration 8 #26, 8.11 #8 `test_callback_result_status_codes`, over HTTP: Ok 200,
    BadRequest 400, Unauthorized 401, NotFound 404, Conflict 409, Gone 410, Internal 500 (with
    the API error body `{code: INTERNAL, message}`)."""
    assert api.heartbeat(running).status_code == 200
    assert api.heartbeat(running, body=running.body(attempt=0)).status_code == 400
    assert api.heartbeat(running, token="x").status_code == 401
    ghost = Attempt(running.run_id, "analytics.ghost", 1, "a")
    assert api.heartbeat(ghost).status_code == 404
    assert api.heartbeat(running, body=running.body(attempt=2)).status_code == 409
    assert api.completed(running).status_code == 200
    assert api.heartbeat(running).status_code == 410

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("state load failed")

    monkeypatch.setattr(callbacks, "handle_heartbeat", broken)
    client = make_client()
    client_500 = TestClient(client.app, raise_server_exceptions=False)
    response = client_500.post(
        f"/api/v1/tasks/{running.task_id}/heartbeat",
        json=running.body(),
        headers={"Authorization": f"Bearer {running.token()}"},
    )
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "INTERNAL"
    assert body["requestId"] == response.headers["x-request-id"]


# --- duplicates and late callbacks (arco-orchestration 5.6) ---------------------------------


def test_duplicate_completed_after_success_is_conflict(api: Api, running: Attempt) -> None:
    """5.6: a duplicate /completed after SUCCEEDED is 409 `task_already_terminal`; the run
    counters moved once."""
    assert api.completed(running).status_code == 200
    response = api.completed(running, "FAILED")
    assert error_of(response)[:2] == (409, "task_already_terminal")
    run = api.snapshot(running.run_id)["run"]
    assert (run["tasks_completed"], run["tasks_succeeded"], run["tasks_failed"]) == (1, 1, 0)


def test_duplicate_completed_in_retry_wait_is_accepted_and_ignored(
    api: Api, running: Attempt
) -> None:
    """5.6: after a retryable failure (RETRY_WAIT, same attempt) a second /completed, even
    with another outcome, is 200 echoing the new outcome but changes nothing."""
    api.fail(running)
    before = api.snapshot(running.run_id)
    response = api.completed(running, "SUCCEEDED")
    assert response.status_code == 200
    assert response.json()["finalState"] == "SUCCEEDED"
    assert api.snapshot(running.run_id) == before


def test_late_callbacks_after_attempts_are_exhausted(api: Api, running: Attempt) -> None:
    """5.6: once the task FAILED for good, /heartbeat is 410 and /completed and /started are
    409 `task_already_terminal`."""
    api.fail(running, retryable=False)
    assert error_of(api.heartbeat(running))[:2] == (410, "task_expired")
    assert error_of(api.completed(running))[:2] == (409, "task_already_terminal")
    assert error_of(api.started(running))[:2] == (409, "task_already_terminal")


def test_cancel_flow_worker_reports_cancelled(api: Api) -> None:
    """5.6 "Cancellation flow" and orchestration 8 #33: a running worker learns shouldCancel,
    reports CANCELLED, the downstream task is cancelled and the run ends CANCELLED."""
    run_id = api.run([DAILY], includeUpstream=True)
    attempt = api.dispatch(run_id, RAW)
    assert api.started(attempt).status_code == 200
    assert api.cancel(run_id).json()["state"] == "CANCELLING"
    assert api.heartbeat(attempt).json()["shouldCancel"] is True
    response = api.completed(attempt, "CANCELLED", {"cancelledDuringPhase": "execute"})
    assert response.json()["finalState"] == "CANCELLED"
    detail = api.detail(run_id)
    assert detail["state"] == "CANCELLED"
    assert "completedAt" in detail
    assert {task["taskKey"]: task["state"] for task in detail["tasks"]} == {
        DAILY: "CANCELLED",
        RAW: "CANCELLED",
    }


def test_completed_is_never_blocked_by_cancellation(api: Api, running: Attempt) -> None:
    """5.5 step 14 and 1.4: /completed SUCCEEDED after a cancel request makes the task
    SUCCEEDED, and a run with nothing cancelled ends SUCCEEDED."""
    api.cancel(running.run_id)
    assert api.completed(running).status_code == 200
    assert api.detail(running.run_id)["state"] == "SUCCEEDED"


def test_debug_mode_legacy_path_runs_a_task_to_success(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """8.12 `api_integration.rs::test_arco_flow_deploy_run_callbacks_and_logs` and 8.9 #6
    `parquet_task_lookup_accepts_unambiguous_legacy_task_key`: in debug mode the legacy
    task-key path with `Bearer test-token` and the debug headers accepts started and completed
    (the key is in one run only), and the task becomes SUCCEEDED."""
    debug = Api(make_client(environment="dev", debug=True), api.database)
    attempt = debug.dispatch(debug.run())
    headers = debug_headers()
    ok = debug.started(attempt, task_id=RAW, token="test-token", headers=headers)
    assert ok.status_code == 200, ok.text
    done = debug.completed(attempt, task_id=RAW, token="test-token", headers=headers)
    assert done.status_code == 200, done.text
    assert debug.summary(attempt.run_id, RAW)["state"] == "SUCCEEDED"


def reap(api: Api, attempt: Attempt) -> None:
    """The sweeper's heartbeat-timeout reaper (R4) failing a silent attempt."""
    with api.database.transaction() as session:
        assert facts.fail_attempt(
            session,
            api.scope,
            attempt.run_id,
            attempt.task_key,
            attempt=attempt.attempt,
            attempt_id=attempt.attempt_id,
            reason="heartbeat_timeout_anti_entropy",
            now=datetime.now(UTC),
        )


def test_late_callbacks_after_the_reaper_moved_the_task_to_retry_wait(
    api: Api, running: Attempt
) -> None:
    """arco-orchestration 5.6 "Late callbacks after the heartbeat-timeout reaper": the task is
    RETRY_WAIT at the same attempt: /heartbeat 200 (shouldCancel false), /completed 200 but
    ignored (the reaper took the attempt's completion), /started 409
    `attempt_already_completed`."""
    reap(api, running)
    task = api.task(running.run_id, RAW)
    assert (task["storedState"], task["errorMessage"]) == (
        "RETRY_WAIT",
        "heartbeat_timeout_anti_entropy",
    )
    assert api.heartbeat(running).json()["shouldCancel"] is False
    before = api.snapshot(running.run_id)
    assert api.completed(running).status_code == 200
    after = api.snapshot(running.run_id)
    assert after["events"] == before["events"]
    assert after["task"]["state"] == "RETRY_WAIT"
    assert error_of(api.started(running))[:2] == (409, "attempt_already_completed")
    assert [e["kind"] for e in api.task(running.run_id, RAW)["history"]][-1] == "reaped"


def test_late_callbacks_after_the_reaper_exhausted_the_attempts(api: Api) -> None:
    """5.6: when the reaper's failure exhausts the attempts (FAILED): /heartbeat 410, /completed
    and /started 409 `task_already_terminal`."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    for _ in range(2):
        reap(api, attempt)
        attempt = api.dispatch(attempt.run_id)
        assert api.started(attempt).status_code == 200
    reap(api, attempt)
    assert api.task(attempt.run_id, RAW)["storedState"] == "FAILED"
    assert error_of(api.heartbeat(attempt))[:2] == (410, "task_expired")
    assert error_of(api.completed(attempt))[:2] == (409, "task_already_terminal")
    assert error_of(api.started(attempt))[:2] == (409, "task_already_terminal")
    assert api.detail(attempt.run_id)["state"] == "FAILED"


@pytest.mark.parametrize(("attempts", "delay"), [(1, 30), (2, 60)])
def test_retry_deadline_follows_the_server_clock(
    api: Api, make_client: Callable[..., TestClient], attempts: int, delay: int
) -> None:
    """Orchestration 8 #40-#42 over HTTP: a retryable failure of attempt n waits 30 * 2^(n-1)
    seconds from the server's receipt time, whatever completedAt the worker sent."""
    clock = Clock()
    timed = Api(make_client(clock=clock), api.database)
    attempt = timed.dispatch(timed.run())
    for _ in range(attempts - 1):
        attempt = timed.retry(attempt)
    clock.advance(7)
    skewed = format_timestamp(clock.now + timedelta(days=3650))
    body = attempt.body(outcome="FAILED", completedAt=skewed)
    assert timed.callback("completed", attempt, body).status_code == 200
    task = timed.task(attempt.run_id, RAW)
    assert parse_timestamp(task["retryNotBefore"]) == clock.now + timedelta(seconds=delay)


def test_retry_deadline_follows_the_configured_backoff_base(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """ARCO_RETRY_BACKOFF_BASE_SECS (the API's setting) is the base the /completed route
    hands to the completion fact: 2 s here instead of upstream's 30 s."""
    clock = Clock()
    timed = Api(make_client(clock=clock, retry_backoff_base_secs=2), api.database)
    attempt = timed.dispatch(timed.run())
    assert timed.callback("completed", attempt, attempt.body(outcome="FAILED")).status_code == 200
    task = timed.task(attempt.run_id, RAW)
    assert parse_timestamp(task["retryNotBefore"]) == clock.now + timedelta(seconds=2)
