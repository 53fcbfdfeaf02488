"""The run API over HTTP (arco-orchestration sections 2 and 6, scenarios 68-75): trigger,
list, detail, cancel, the task views of design D3, and logs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    DAILY,
    RAW,
    RUNS,
    Api,
    Attempt,
    Clock,
    manifest_of,
    user_headers,
)

from arco_envelope import parse_timestamp
from arco_testkit.values import WORKSPACE

CHAIN = manifest_of({"demo.a": [], "demo.b": ["demo.a"], "demo.c": ["demo.b"]})


def api_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["requestId"] == response.headers["x-request-id"]
    return body


# --- trigger --------------------------------------------------------------------------------


def test_trigger_creates_a_pending_run(api: Api) -> None:
    """2.1: 201 `{runId, planId, state: PENDING, created: true, createdAt}`; the run is
    RUNNING in storage with READY (public QUEUED) tasks, labels kept, no outbox row yet
    (2.3)."""
    response = api.trigger({"selection": [RAW], "labels": {"team": "finance"}})
    assert response.status_code == 201
    body = response.json()
    assert list(body) == ["runId", "planId", "state", "created", "createdAt"]
    assert (body["state"], body["created"]) == ("PENDING", True)
    parse_timestamp(body["createdAt"])
    detail = api.detail(body["runId"])
    assert (detail["planId"], detail["workspaceId"], detail["state"]) == (
        body["planId"],
        WORKSPACE,
        "RUNNING",
    )
    assert detail["labels"] == {"team": "finance"}
    task = api.task(body["runId"], RAW)
    assert (task["storedState"], task["state"], task["attempt"]) == ("READY", "QUEUED", 0)
    assert task["dispatches"] == []


def test_trigger_plans_exactly_the_selection(api: Api, deploy: Callable[..., Any]) -> None:
    """Orchestration 8 #70 (`parity_m1_selection_does_not_autofill_tasks`): the selected assets
    only, sorted, no autofill; `includeDownstream`/`includeUpstream` expand over the
    manifest graph, and dependencies are only planned upstreams."""
    deploy(CHAIN)
    only_b = api.detail(api.run(["demo/b"]))
    assert [t["taskKey"] for t in only_b["tasks"]] == ["demo.b"]
    assert only_b["tasks"][0]["state"] == "QUEUED"  # its upstream is not planned
    down = api.detail(api.run(["demo.b"], includeDownstream=True))
    assert [(t["taskKey"], t["state"]) for t in down["tasks"]] == [
        ("demo.b", "QUEUED"),
        ("demo.c", "PENDING"),
    ]
    both = api.detail(api.run(["demo.b"], includeUpstream=True, includeDownstream=True))
    assert [t["taskKey"] for t in both["tasks"]] == ["demo.a", "demo.b", "demo.c"]
    assert both["taskCounts"] == {
        "total": 3,
        "pending": 2,
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"selection": []}, "selection cannot be empty"),
        ({"selection": ["Analytics.Raw"]}, None),
        ({"selection": ["analytics raw"]}, None),
        ({"selection": ["analytics.nope", "analytics.zzz"]}, "unknown asset keys: "),
        ({"selection": [RAW], "labels": {"arco.parent_run_id": "x"}}, "reserved"),
        ({"selection": [RAW], "labels": {"arco.rerun.kind": "SUBSET"}}, "reserved"),
        ({"selection": [RAW], "partitionKey": "date=s:MjAyNC0wMS0xNQ"}, "unpartitioned"),
        (
            {
                "selection": [DAILY],
                "partitionKey": "date=s:MjAyNC0wMS0xNQ",
                "partitions": [{"key": "date", "value": "2024-01-15"}],
            },
            "use either partitionKey or partitions, not both",
        ),
        ({"selection": [RAW], "runKey": "k" * 257}, "runKey exceeds max length (256)"),
        ({"selection": ["a." + "b" * 300]}, "selection item exceeds max length (256)"),
    ],
)
def test_trigger_validation_is_400(api: Api, body: dict[str, Any], message: str | None) -> None:
    """Orchestration 8 #73 and 2.1 validation: empty selection, invalid and unknown asset
    keys, reserved lineage labels, partition rules and limits are 400 with the API error body,
    and no run is created."""
    error = api_error(api.trigger(body), 400)
    assert error["code"] == "BAD_REQUEST"
    if message is not None:
        assert message in error["message"]
    assert api.get(RUNS).json()["runs"] == []


@pytest.mark.parametrize(
    "body",
    [[RAW], {"selection": RAW}, {"selection": [RAW], "includeUpstream": "yes"}, {"labels": []}],
)
def test_trigger_body_shape_errors(api: Api, body: Any) -> None:
    """2.1: a body that does not match the request type is 422 (upstream's JSON extractor)
    with the JSON API error body, and creates no run."""
    response = api.trigger(body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "UNPROCESSABLE_ENTITY"
    assert api.get(RUNS).json()["runs"] == []


def test_trigger_without_a_manifest_is_400(client: TestClient) -> None:
    """2.1 item 4: no manifest deployed is 400 naming the fix."""
    response = client.post(RUNS, json={"selection": [RAW]}, headers=user_headers())
    error = api_error(response, 400)
    assert error["message"] == (
        "no manifest deployed for workspace; deploy a manifest before triggering a run"
    )


def test_trigger_for_another_workspace_is_404(api: Api) -> None:
    """2.1: a path workspace other than the caller's is 404 `workspace not found`."""
    response = api.client.post(
        "/api/v1/workspaces/other-ws/runs", json={"selection": [RAW]}, headers=user_headers()
    )
    assert api_error(response, 404)["message"] == "workspace not found"


def test_run_key_not_reserved_on_400(api: Api) -> None:
    """Orchestration 8 #71: a request that fails with 400 reserves nothing; a later valid
    request with the same key is 201."""
    assert api.trigger({"selection": ["analytics.nope"], "runKey": "nightly"}).status_code == 400
    assert (
        api.trigger(
            {"selection": [RAW], "runKey": "k", "labels": {"arco.rerun.kind": "x"}}
        ).status_code
        == 400
    )
    assert api.trigger({"selection": [RAW], "runKey": "nightly"}).status_code == 201
    assert api.trigger({"selection": [RAW], "runKey": "k"}).status_code == 201


@pytest.mark.parametrize("how", ["body", "header"])
def test_run_key_idempotency_ignores_selection_order(api: Api, how: str) -> None:
    """Orchestration 8 #72: the second call with the selection in another order is 200
    `created: false` with the same ids and the reservation time; a payload mismatch is 409
    with the diagnostics. The key comes from `runKey` or the `Idempotency-Key` header."""

    def send(body: dict[str, Any]) -> Any:
        if how == "body":
            return api.trigger({**body, "runKey": "key-1"})
        return api.trigger(body, headers={"Idempotency-Key": "key-1"})

    first = send({"selection": [DAILY, RAW], "labels": {"b": "2", "a": "1"}})
    assert first.status_code == 201
    again = send({"selection": [RAW, DAILY, RAW], "labels": {"a": "1", "b": "2"}})
    assert again.status_code == 200
    one, two = first.json(), again.json()
    assert (two["runId"], two["planId"], two["createdAt"]) == (
        one["runId"],
        one["planId"],
        one["createdAt"],
    )
    assert (two["created"], two["state"]) == (False, "RUNNING")

    conflict = send({"selection": [RAW]})
    error = api_error(conflict, 409)
    assert error["code"] == "CONFLICT"
    assert error["message"] == "run_key 'key-1' already reserved with different trigger payload"
    details = error["details"]
    assert details["conflictType"] == "RUN_KEY_FINGERPRINT_MISMATCH"
    assert (details["runKey"], details["existingRunId"], details["existingPlanId"]) == (
        "key-1",
        one["runId"],
        one["planId"],
    )
    assert details["existingFingerprint"] != details["requestedFingerprint"]
    assert len(details["requestedFingerprint"]) == 64
    assert details["existingCreatedAt"] == one["createdAt"]
    assert len(api.get(RUNS).json()["runs"]) == 1


def test_run_key_body_wins_over_header_and_replay_shows_current_state(
    api: Api, running: Attempt
) -> None:
    """2.1: `runKey` is taken from the body, else from `Idempotency-Key`; a replay reports the
    run's current public state."""
    first = api.trigger({"selection": [RAW], "runKey": "body-key"}, {"Idempotency-Key": "h"})
    assert first.status_code == 201
    assert api.trigger({"selection": [RAW]}, {"Idempotency-Key": "h"}).status_code == 201
    run_id = first.json()["runId"]
    attempt = api.dispatch(run_id)
    api.succeed(attempt)
    replay = api.trigger({"selection": [RAW], "runKey": "body-key"})
    assert (replay.status_code, replay.json()["state"]) == (200, "SUCCEEDED")


# --- list -----------------------------------------------------------------------------------


@pytest.fixture
def timed(api: Api, make_client: Callable[..., TestClient]) -> tuple[Api, Clock]:
    clock = Clock()
    return Api(make_client(clock=clock), api.database), clock


def test_list_runs_limit_bounds(api: Api) -> None:
    """6.1: limit defaults to 20 and must be 1..200, otherwise 400."""
    for _ in range(21):
        api.run()
    assert len(api.get(RUNS).json()["runs"]) == 20
    assert len(api.get(RUNS, limit=200).json()["runs"]) == 21
    assert len(api.get(RUNS, limit=1).json()["runs"]) == 1
    for limit in (0, 201, -1):
        error = api_error(api.get(RUNS, limit=limit), 400)
        assert error["message"] == "limit must be between 1 and 200"
    assert api.get(RUNS, limit="ten").status_code == 422


def test_list_runs_ordering_and_cursor_paging(timed: tuple[Api, Clock]) -> None:
    """6.1: newest first by triggered_at, ties by run_id ascending; each page holds runs
    strictly after the cursor; `nextCursor` only while more remain; a numeric cursor is a
    legacy offset."""
    api, clock = timed
    created: list[tuple[datetime, str]] = []
    for step in range(7):
        clock.advance(1 if step % 3 else 0)  # several runs share one triggered_at
        created.append((clock.now, api.run()))
    expected = [
        run_id for _, run_id in sorted(created, key=lambda item: (-item[0].timestamp(), item[1]))
    ]
    listed = [run["runId"] for run in api.get(RUNS, limit=200).json()["runs"]]
    assert listed == expected

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get(RUNS, **params).json()
        pages.extend(run["runId"] for run in page["runs"])
        cursor = page.get("nextCursor")
        if cursor is None:
            assert len(page["runs"]) <= 3
            break
        assert len(page["runs"]) == 3
    assert pages == expected
    offset = api.get(RUNS, limit=2, cursor="3").json()
    assert [run["runId"] for run in offset["runs"]] == expected[3:5]


@pytest.mark.parametrize("cursor", ["!!!", "bm90LWpzb24", "e30", "eyJ0cmlnZ2VyZWRfYXQiOiJ4In0"])
def test_list_runs_invalid_cursor(api: Api, cursor: str) -> None:
    """6.1: an invalid cursor is 400 `invalid cursor`."""
    api.run()
    assert api_error(api.get(RUNS, cursor=cursor), 400)["message"] == "invalid cursor"


def test_list_runs_state_filter_and_items(api: Api) -> None:
    """6.1: `state` filters on the public state (invalid value 400); items carry state,
    createdAt, completedAt only when terminal, taskCount, tasksSucceeded, tasksFailed."""
    done = api.dispatch(api.run())
    api.succeed(done)
    failing = api.dispatch(api.run())
    api.fail(failing, retryable=False)
    cancelled = api.run()
    assert api.cancel(cancelled).status_code == 200
    running = api.run()

    def ids(state: str) -> list[str]:
        return [run["runId"] for run in api.get(RUNS, state=state).json()["runs"]]

    assert ids("SUCCEEDED") == [done.run_id]
    assert ids("FAILED") == [failing.run_id]
    assert ids("CANCELLED") == [cancelled]
    assert ids("RUNNING") == [running]
    assert ids("PENDING") == []
    assert api_error(api.get(RUNS, state="running"), 400)["message"] == (
        "invalid state filter: running"
    )
    items = {run["runId"]: run for run in api.get(RUNS).json()["runs"]}
    assert items[done.run_id]["tasksSucceeded"] == 1
    assert items[failing.run_id]["tasksFailed"] == 1
    assert "completedAt" in items[done.run_id]
    assert "completedAt" not in items[running]
    assert set(items[running]) == {
        "runId",
        "state",
        "createdAt",
        "taskCount",
        "tasksSucceeded",
        "tasksFailed",
    }


def test_list_runs_state_filter_pages(timed: tuple[Api, Clock]) -> None:
    """6.1: filtering and paging together still page strictly after the cursor."""
    api, clock = timed
    succeeded = []
    for index in range(6):
        clock.advance(1)
        run_id = api.run()
        if index % 2 == 0:
            api.succeed(api.dispatch(run_id))
            succeeded.append(run_id)
    first = api.get(RUNS, state="SUCCEEDED", limit=2).json()
    second = api.get(RUNS, state="SUCCEEDED", limit=2, cursor=first["nextCursor"]).json()
    assert [r["runId"] for r in first["runs"] + second["runs"]] == succeeded[::-1]
    assert "nextCursor" not in second


# --- detail ---------------------------------------------------------------------------------


def test_run_detail_not_found(api: Api) -> None:
    """6.2: a missing run is 404 `run not found: {id}`."""
    assert api_error(api.get(f"{RUNS}/nope"), 404)["message"] == "run not found: nope"


def test_local_pipeline_uat(api: Api) -> None:
    """Orchestration 8 #68 (`local_pipeline_uat.rs`): deploy, trigger (201 PENDING), the run
    shows the task at attempt 0, dispatch, /started and /completed with VISIBLE output, and
    the run is SUCCEEDED with the delta fields and `outputVisibilityState` VISIBLE."""
    response = api.trigger({"selection": [RAW]})
    assert (response.status_code, response.json()["state"]) == (201, "PENDING")
    run_id = response.json()["runId"]
    assert api.summary(run_id, RAW)["attempt"] == 0
    attempt = api.dispatch(run_id)
    assert api.started(attempt).status_code == 200
    output = {"deltaTable": "t", "deltaVersion": 3, "outputVisibilityState": "VISIBLE"}
    assert api.completed(attempt, extra={"output": output}).status_code == 200
    detail = api.detail(run_id)
    assert detail["state"] == "SUCCEEDED"
    task = detail["tasks"][0]
    assert (task["state"], task["deltaTable"], task["deltaVersion"]) == ("SUCCEEDED", "t", 3)
    assert task["outputVisibilityState"] == "VISIBLE"
    assert "publishedAt" in task
    assert detail["startedAt"] == task["startedAt"]
    assert detail["completedAt"] == task["completedAt"]


def test_retry_uat(api: Api) -> None:
    """Orchestration 8 #69 (`user_acceptance_pipeline.rs`): a failed attempt answers
    `finalState` FAILED; the task is then DISPATCHED at attempt 2 with the previous error kept,
    and the summary attributes the retry."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    error = {"category": "INFRASTRUCTURE", "message": "node lost"}
    response = api.completed(attempt, "FAILED", {"error": error})
    assert response.json()["finalState"] == "FAILED"
    pending = api.task(attempt.run_id, RAW)
    assert (pending["storedState"], pending["state"]) == ("RETRY_WAIT", "PENDING")
    assert "retryNotBefore" in pending
    api.dispatch(attempt.run_id)
    task = api.task(attempt.run_id, RAW)
    assert (task["storedState"], task["attempt"], task["errorMessage"]) == (
        "DISPATCHED",
        2,
        "node lost",
    )
    summary = api.summary(attempt.run_id, RAW)
    assert summary["retryAttribution"] == {"retries": 1, "reason": "prior_attempt_failed"}
    assert api.detail(attempt.run_id)["state"] == "RUNNING"


def test_skip_cascade_and_attribution(api: Api, deploy: Callable[..., Any]) -> None:
    """Orchestration 8 #32 and #75: an upstream that fails for good skips its downstream
    transitively; the summaries attribute each skip (FAILED, then SKIPPED); counts and the run
    state follow."""
    deploy(CHAIN)
    run_id = api.run(["demo.a"], includeDownstream=True)
    attempt = api.dispatch(run_id, "demo.a")
    api.fail(attempt, retryable=False)
    detail = api.detail(run_id)
    tasks = {task["taskKey"]: task for task in detail["tasks"]}
    assert tasks["demo.b"]["skipAttribution"] == {
        "upstreamTaskKey": "demo.a",
        "upstreamResolution": "FAILED",
    }
    assert tasks["demo.c"]["skipAttribution"] == {
        "upstreamTaskKey": "demo.b",
        "upstreamResolution": "SKIPPED",
    }
    assert "completedAt" not in tasks["demo.b"]
    assert detail["state"] == "FAILED"
    assert detail["taskCounts"]["skipped"] == 2
    assert detail["taskCounts"]["failed"] == 1


@pytest.mark.parametrize("order", [["demo.x", "demo.y"], ["demo.y", "demo.x"]])
def test_skip_attribution_is_deterministic_whatever_the_edge_order(
    api: Api,
    deploy: Callable[..., Any],
    make_client: Callable[..., TestClient],
    order: list[str],
) -> None:
    """Orchestration 8 #75: with two failed upstreams resolved at the same instant the
    attribution is the same whatever the manifest's dependency order (earliest, then key)."""
    deploy(manifest_of({"demo.x": [], "demo.y": [], "demo.z": order}))
    clock = Clock()
    fixed = Api(make_client(clock=clock), api.database)
    run_id = fixed.run(["demo.z"], includeUpstream=True)
    x, y = fixed.dispatch(run_id, "demo.x"), fixed.dispatch(run_id, "demo.y")
    fixed.fail(y, retryable=False)
    fixed.fail(x, retryable=False)
    assert fixed.summary(run_id, "demo.z")["skipAttribution"] == {
        "upstreamTaskKey": "demo.x",
        "upstreamResolution": "FAILED",
    }


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_unknown_run_is_404(api: Api) -> None:
    """2.6: run not found is 404 `run not found: {id}`."""
    assert api_error(api.cancel("nope"), 404)["message"] == "run not found: nope"


def test_cancel_with_nothing_running(api: Api, deploy: Callable[..., Any]) -> None:
    """2.6 and orchestration 8 #34: with A READY and B, C BLOCKED everything is CANCELLED at
    once, the run CANCELLED (counters 3/3), answer 200 `{runId, state: CANCELLED,
    cancelledAt}`; a repeat is 200 with the same answer (idempotent)."""
    deploy(CHAIN)
    run_id = api.run(["demo.a"], includeDownstream=True)
    response = api.cancel(run_id, reason="no longer needed")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["runId", "state", "cancelledAt"]
    assert (body["runId"], body["state"]) == (run_id, "CANCELLED")
    detail = api.detail(run_id)
    assert detail["taskCounts"]["cancelled"] == 3
    assert {task["state"] for task in detail["tasks"]} == {"CANCELLED"}
    assert all("completedAt" not in task for task in detail["tasks"])
    assert api.cancel(run_id).json() == body


def test_cancel_with_a_running_task(api: Api) -> None:
    """2.6 and orchestration 8 #35: A RUNNING stays RUNNING, B is CANCELLED, the run is
    publicly CANCELLING; a repeat is 200 CANCELLING; after A ends the repeat still answers 200
    (cancel already requested) with the final state."""
    run_id = api.run([DAILY], includeUpstream=True)
    attempt = api.dispatch(run_id, RAW)
    assert api.started(attempt).status_code == 200
    first = api.cancel(run_id)
    assert first.json()["state"] == "CANCELLING"
    assert api.cancel(run_id).json() == first.json()
    states = {t["taskKey"]: t["state"] for t in api.detail(run_id)["tasks"]}
    assert states == {RAW: "RUNNING", DAILY: "CANCELLED"}
    assert api.completed(attempt).status_code == 200
    final = api.cancel(run_id)
    assert (final.status_code, final.json()["state"]) == (200, "CANCELLED")


def test_cancel_after_upstream_succeeded(api: Api) -> None:
    """Orchestration 8 #36: A SUCCEEDED and B READY: B is CANCELLED, the run CANCELLED with
    succeeded 1 and cancelled 1."""
    run_id = api.run([DAILY], includeUpstream=True)
    api.succeed(api.dispatch(run_id, RAW))
    assert api.cancel(run_id).json()["state"] == "CANCELLED"
    counts = api.detail(run_id)["taskCounts"]
    assert (counts["succeeded"], counts["cancelled"], counts["total"]) == (1, 1, 2)


def test_cancel_terminal_run_is_409(api: Api, running: Attempt) -> None:
    """2.6: a terminal run whose cancel was never requested is 409."""
    assert api.completed(running).status_code == 200
    error = api_error(api.cancel(running.run_id), 409)
    assert error["message"] == f"run {running.run_id} is already in terminal state SUCCEEDED"


def test_cancel_needs_a_json_object(api: Api) -> None:
    """2.6: a JSON body is required (`{}` is fine); other bodies are refused and cancel
    nothing."""
    run_id = api.run()
    path = f"{RUNS}/{run_id}/cancel"
    assert api.client.post(path, headers=user_headers()).status_code == 415
    assert api.client.post(path, json=[], headers=user_headers()).status_code == 400
    assert api.client.post(path, json={"reason": 5}, headers=user_headers()).status_code == 400
    assert api.detail(run_id)["state"] == "RUNNING"


def test_cancel_waiting_retry_is_cancelled(api: Api, running: Attempt) -> None:
    """Design D7: a RETRY_WAIT task of a cancelled run is CANCELLED (not re-dispatched), and a
    retryable failure arriving after the cancel ends the task CANCELLED too."""
    api.fail(running)
    assert api.cancel(running.run_id).json()["state"] == "CANCELLED"
    assert api.task(running.run_id, RAW)["storedState"] == "CANCELLED"


def test_retryable_failure_in_cancelling_run_ends_cancelled(api: Api, running: Attempt) -> None:
    """Design D7: a retryable failure reported after a cancel request ends the task CANCELLED."""
    api.cancel(running.run_id)
    api.fail(running)
    assert api.task(running.run_id, RAW)["storedState"] == "CANCELLED"
    assert api.detail(running.run_id)["state"] == "CANCELLED"


# --- task views (design D3) -----------------------------------------------------------------


def test_task_views_show_the_attempt_history(api: Api, running: Attempt) -> None:
    """D3: `/runs/{id}/tasks` and `/tasks/{key}` show stored and public state, attempt, attempt
    id, timestamps, last heartbeat, error, and the attempt history `DISPATCHED -> RUNNING ->
    terminal` from the event table, per attempt."""
    assert api.heartbeat(running).status_code == 200
    second = api.retry(running)
    assert api.started(second).status_code == 200
    assert api.heartbeat(second).status_code == 200
    assert api.completed(second).status_code == 200
    task = api.task(running.run_id, RAW)
    assert task["attempts"] == [
        {
            "attempt": 1,
            "attemptId": running.attempt_id,
            "states": ["DISPATCHED", "RUNNING", "RETRY_WAIT"],
        },
        {
            "attempt": 2,
            "attemptId": second.attempt_id,
            "states": ["DISPATCHED", "RUNNING", "SUCCEEDED"],
        },
    ]
    assert [event["kind"] for event in task["history"]] == [
        "dispatch_requested",
        "started",
        "completed",
        "dispatch_requested",
        "started",
        "completed",
    ]
    assert (task["storedState"], task["state"], task["attempt"], task["attemptId"]) == (
        "SUCCEEDED",
        "SUCCEEDED",
        2,
        second.attempt_id,
    )
    for field in ("readyAt", "dispatchedAt", "startedAt", "completedAt", "lastHeartbeatAt"):
        parse_timestamp(task[field])
    assert task["taskId"] == running.task_id
    listed = api.get(f"{RUNS}/{running.run_id}/tasks").json()
    assert listed["runId"] == running.run_id
    assert listed["tasks"] == [task]


def test_task_views_not_found(api: Api) -> None:
    """D3: an unknown run or task key is 404."""
    run_id = api.run()
    assert api_error(api.get(f"{RUNS}/nope/tasks"), 404)["message"] == "run not found: nope"
    assert api.get(f"{RUNS}/nope/tasks/{RAW}").status_code == 404
    missing = api.get(f"{RUNS}/{run_id}/tasks/analytics.nope")
    assert api_error(missing, 404)["message"] == f"task not found: {run_id}/analytics.nope"


def test_task_views_in_another_tenant_are_not_found(api: Api) -> None:
    """Every query is scoped: another tenant's caller, with the same workspace name, sees
    nothing."""
    run_id = api.run()
    other = user_headers(tenant="tenant-z")
    for path in (f"{RUNS}/{run_id}", f"{RUNS}/{run_id}/tasks", f"{RUNS}/{run_id}/tasks/{RAW}"):
        assert api.client.get(path, headers=other).status_code == 404
    assert api.client.get(RUNS, headers=other).json()["runs"] == []
    assert api.client.post(f"{RUNS}/{run_id}/cancel", json={}, headers=other).status_code == 404


# --- logs -----------------------------------------------------------------------------------


def upload(api: Api, run_id: str, **body: Any) -> Any:
    return api.client.post(f"{RUNS}/{run_id}/logs", json=body, headers=user_headers())


def test_logs_upload_and_read(api: Api, running: Attempt) -> None:
    """2.5: upload is 201 `{path, sizeBytes}` and create-only (second upload 409); read is
    text/plain, filtered by taskKey, paged with `x-arco-next-cursor`; 404 without logs."""
    run_id = running.run_id
    assert api.get(f"{RUNS}/{run_id}/logs").status_code == 404
    first = upload(api, run_id, taskKey=RAW, attempt=1, stdout="hello\n", stderr="warn é")
    assert first.status_code == 201
    assert first.json() == {
        "path": f"logs/{run_id}/{RAW}/attempt-1.log",
        "sizeBytes": len(b"hello\n") + len("warn é".encode()),
    }
    second = upload(api, run_id, taskKey=RAW, attempt=1, stdout="again")
    assert api_error(second, 409)["code"] == "CONFLICT"
    api.fail(running)
    api.dispatch(run_id)  # attempt 2
    assert upload(api, run_id, taskKey=RAW, attempt=2, stdout="two").status_code == 201

    text = api.get(f"{RUNS}/{run_id}/logs", taskKey=RAW)
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert "hello" in text.text
    assert "warn é" in text.text
    assert "again" not in text.text
    assert "x-arco-next-cursor" not in text.headers
    page = api.get(f"{RUNS}/{run_id}/logs", limit=1)
    cursor = page.headers["x-arco-next-cursor"]
    rest = api.get(f"{RUNS}/{run_id}/logs", limit=5, cursor=cursor)
    assert rest.status_code == 200
    assert "x-arco-next-cursor" not in rest.headers
    assert page.text not in rest.text
    assert api.get(f"{RUNS}/{run_id}/logs", limit=0).status_code == 400
    assert api.get(f"{RUNS}/{run_id}/logs", cursor="abc").status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"attempt": 1},
        {"taskKey": RAW, "attempt": 0},
        {"taskKey": RAW, "attempt": "1"},
        {"taskKey": RAW, "attempt": True},
        {"taskKey": RAW, "attempt": 1, "stdout": 5},
    ],
)
def test_logs_upload_validation(api: Api, body: dict[str, Any]) -> None:
    """2.5: taskKey, attempt >= 1 and string stdout/stderr are required (400)."""
    run_id = api.run()
    assert upload(api, run_id, **body).status_code == 400


def test_logs_for_an_unknown_run(api: Api) -> None:
    """2.5: uploading to a run that does not exist is 404."""
    assert upload(api, "nope", taskKey=RAW, attempt=1).status_code == 404


def test_logs_upload_over_two_mebibytes_is_413(api: Api) -> None:
    """2.5: at most 2 MiB in total."""
    run_id = api.run()
    response = upload(api, run_id, taskKey=RAW, attempt=1, stdout="x" * (2 * 1024 * 1024))
    assert response.status_code == 413


def test_runs_created_at_follow_the_server_clock(timed: tuple[Api, Clock]) -> None:
    """2.1/6.1: createdAt is the server's trigger time."""
    api, clock = timed
    clock.now = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    run_id = api.run()
    assert api.detail(run_id)["createdAt"] == "2026-05-01T08:30:00Z"
    clock.advance(timedelta(hours=1).total_seconds())
    assert api.get(RUNS).json()["runs"][0]["createdAt"] == "2026-05-01T08:30:00Z"


def test_task_view_shows_the_dispatch_until_it_is_consumed(api: Api) -> None:
    """D3 delivery status and orchestration 2.3/2.4 (#37/#38 over HTTP): nothing in the outbox
    at trigger time; a dispatch shows a PENDING row for attempt 1 with the `dispatch:` id; the
    worker's /started consumes it."""
    run_id = api.run()
    assert api.task(run_id, RAW)["dispatches"] == []
    attempt = api.dispatch(run_id)
    task = api.task(run_id, RAW)
    assert (task["storedState"], task["state"], task["attemptId"]) == (
        "DISPATCHED",
        "QUEUED",
        attempt.attempt_id,
    )
    [row] = task["dispatches"]
    assert (row["dispatchId"], row["attempt"], row["status"]) == (
        f"dispatch:{run_id}:{RAW}:1",
        1,
        "PENDING",
    )
    assert api.started(attempt).status_code == 200
    assert api.task(run_id, RAW)["dispatches"] == []
