"""Worker callback rules under the run lock: task resolution, token scope checks, and the
409/410 answers of /started, /heartbeat and /completed (arco-orchestration 5.1, 5.3-5.6;
section 8 items 1-25 as far as they are stored-state rules, and 30, 31, 42, 43)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from arco_envelope import (
    CallbackErrorCode,
    HeartbeatRequest,
    TaskCompletedRequest,
    TaskStartedRequest,
    callback_task_id,
    format_timestamp,
)
from arco_envelope.tokens import TaskTokenClaims
from arco_orchestration import callbacks, facts
from arco_orchestration.callbacks import CallbackResult, ResolvedTask
from arco_orchestration.db import Database
from arco_orchestration.models import Task
from arco_orchestration.states import RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    cancel_run,
    cancelled,
    complete,
    dispatch,
    failed,
    finish,
    load_run,
    load_task,
    planned,
    run_task,
    set_cancel_requested,
    succeeded,
    task_events,
    trigger,
)
from arco_testkit.values import OTHER_WORKSPACE, SCOPE

FAR_PAST = "2016-01-01T00:00:00Z"  # ten years off the server clock
FAR_FUTURE = "2036-01-01T00:00:00Z"


def tid(run_id: str, key: str) -> str:
    return callback_task_id(run_id, key)


def claims_for(task: Task, **overrides: Any) -> TaskTokenClaims:
    """Claims of a token minted for the task's current attempt, with ``overrides``."""
    data: dict[str, Any] = {
        "taskId": tid(task.run_id, task.task_key),
        "tenantId": SCOPE.tenant_id,
        "workspaceId": SCOPE.workspace_id,
        "runId": task.run_id,
        "attempt": task.attempt,
        "attemptId": task.attempt_id,
        "exp": 4_000_000_000,
    }
    data.update(overrides)
    return TaskTokenClaims.from_dict(data)


def body_of(task: Task, **extra: Any) -> dict[str, Any]:
    return {"attempt": task.attempt, "attemptId": task.attempt_id, "workerId": "w-1", **extra}


def started(
    database: Database,
    path: str,
    body: dict[str, Any],
    *,
    now: datetime,
    claims: TaskTokenClaims | None = None,
) -> CallbackResult:
    with database.transaction() as session:
        return callbacks.handle_started(
            session, SCOPE, path, claims, TaskStartedRequest.from_dict(body), now=now
        )


def heartbeat(
    database: Database,
    path: str,
    body: dict[str, Any],
    *,
    now: datetime,
    claims: TaskTokenClaims | None = None,
) -> CallbackResult:
    with database.transaction() as session:
        return callbacks.handle_heartbeat(
            session, SCOPE, path, claims, HeartbeatRequest.from_dict(body), now=now
        )


def completed(
    database: Database,
    path: str,
    body: dict[str, Any],
    *,
    now: datetime,
    claims: TaskTokenClaims | None = None,
) -> CallbackResult:
    with database.transaction() as session:
        return callbacks.handle_completed(
            session, SCOPE, path, claims, TaskCompletedRequest.from_dict(body), now=now
        )


def assert_error(result: CallbackResult, status: int, code: CallbackErrorCode) -> None:
    assert result.status == status
    assert result.body["error"] == code.value
    assert result.body["message"].startswith(f"{code.value}: ")
    assert not result.applied


def resolve(database: Database, path: str, run_scope: str | None) -> ResolvedTask | CallbackResult:
    with database.transaction() as session:
        return callbacks.resolve_task(session, SCOPE, path, run_scope)


# --- task resolution (5.1 step 3, section 5.6) ----------------------------------------------


def test_resolve_opaque_task_id_with_and_without_run_scope(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    path = tid("run-1", "a.b")
    assert resolve(database, path, None) == ResolvedTask("run-1", "a.b")
    assert resolve(database, path, "run-1") == ResolvedTask("run-1", "a.b")


def test_resolve_opaque_task_id_outside_the_run_scope_is_not_found(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    path = tid("run-1", "a.b")
    result = resolve(database, path, "run-2")
    assert isinstance(result, CallbackResult)
    assert result.status == 404
    assert result.body == {
        "error": "task_not_found",
        "message": f"task_not_found: Task not found: {path}",
    }


def test_resolve_legacy_key_with_run_scope_is_a_key_of_that_run(database: Database) -> None:
    # no lookup: the scoped run decides, and a missing task is found missing later
    assert resolve(database, "a.b", "run-9") == ResolvedTask("run-9", "a.b")


def test_resolve_legacy_key_without_run_scope(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b"), planned("c.d")])
    trigger(database, "run-2", [planned("c.d")], scope=OTHER_WORKSPACE)
    assert resolve(database, "a.b", None) == ResolvedTask("run-1", "a.b")
    # the other workspace's run does not make c.d ambiguous
    assert resolve(database, "c.d", None) == ResolvedTask("run-1", "c.d")
    missing = resolve(database, "x.y", None)
    assert isinstance(missing, CallbackResult)
    assert missing.status == 404
    assert missing.body["message"] == "task_not_found: Task not found: x.y"


def test_scenario_2_started_for_an_unknown_task_is_not_found(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    path = tid("run-1", "zz.top")
    result = started(
        database, path, {"attempt": 1, "attemptId": "att_x", "workerId": "w"}, now=at(1)
    )
    assert_error(result, 404, CallbackErrorCode.TASK_NOT_FOUND)
    assert result.body["message"] == f"task_not_found: Task not found: {path}"
    other_scope = tid("run-1", "a.b")
    with database.transaction() as session:
        body = TaskStartedRequest.from_dict({"attempt": 1, "attemptId": "x", "workerId": "w"})
        result = callbacks.handle_started(
            session, OTHER_WORKSPACE, other_scope, None, body, now=at(1)
        )
    assert_error(result, 404, CallbackErrorCode.TASK_NOT_FOUND)


def test_scenario_3_ambiguous_legacy_task_key_is_refused(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    trigger(database, "run-2", [planned("a.b")])
    result = started(database, "a.b", {"attempt": 1, "attemptId": "x", "workerId": "w"}, now=at(1))
    assert_error(result, 400, CallbackErrorCode.TASK_ID_AMBIGUOUS)
    assert result.body == {
        "error": "task_id_ambiguous",
        "message": "task_id_ambiguous: Legacy task id is ambiguous; use opaque taskId: a.b",
    }
    assert "opaque taskId" in result.body["message"]


# --- token scope (5.1 step 4) ---------------------------------------------------------------


def running_task(database: Database) -> Task:
    trigger(database, "run-1", [planned("a.b")])
    run_task(database, "run-1", "a.b", now=at(1))
    return load_task(database, "run-1", "a.b")


def stored_task() -> Task:
    """A task row as loaded from storage, RUNNING at attempt 1 (the check reads no more)."""
    return Task(
        run_id="run-1",
        task_key="a.b",
        tenant_id=SCOPE.tenant_id,
        workspace_id=SCOPE.workspace_id,
        state=TaskState.RUNNING.value,
        attempt=1,
        attempt_id="att_af5c419a69061299a227e6a9",
    )


def test_token_scope_accepts_claims_of_the_current_attempt() -> None:
    task = stored_task()
    path = tid("run-1", "a.b")
    assert callbacks.token_scope_problem(claims_for(task), SCOPE, task, path) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"taskId": tid("run-1", "x.y")}, "task_id_mismatch"),
        ({"tenantId": "tenant-x"}, "tenant_mismatch"),
        ({"workspaceId": "workspace-x"}, "workspace_mismatch"),
        ({"runId": None}, "missing_scope_claims"),
        ({"attempt": None}, "missing_scope_claims"),
        ({"attemptId": None}, "missing_scope_claims"),
        ({"runId": "run-2"}, "run_id_mismatch"),
        ({"attempt": 2}, "attempt_mismatch"),
        ({"attemptId": "att_000000000000000000000000"}, "attempt_id_mismatch"),
        # several problems: the first in upstream order is reported
        ({"taskId": tid("run-1", "x.y"), "tenantId": "tenant-x"}, "task_id_mismatch"),
        ({"tenantId": "tenant-x", "workspaceId": "workspace-x"}, "tenant_mismatch"),
        ({"workspaceId": "workspace-x", "attempt": None}, "workspace_mismatch"),
        ({"attempt": None, "runId": "run-2"}, "missing_scope_claims"),
        ({"runId": "run-2", "attempt": 7}, "run_id_mismatch"),
        ({"attempt": 7, "attemptId": "att_000000000000000000000000"}, "attempt_mismatch"),
    ],
)
def test_token_scope_problem_reasons_in_upstream_order(
    overrides: dict[str, Any], reason: str
) -> None:
    task = stored_task()
    path = tid("run-1", "a.b")
    claims = claims_for(task, **overrides)
    assert callbacks.token_scope_problem(claims, SCOPE, task, path) == reason


def test_scenarios_4_and_5_legacy_path_accepts_canonical_or_legacy_token(
    database: Database,
) -> None:
    task = running_task(database)
    canonical = claims_for(task)
    legacy = claims_for(task, taskId="a.b")
    assert callbacks.token_scope_problem(canonical, SCOPE, task, "a.b") is None
    assert callbacks.token_scope_problem(legacy, SCOPE, task, "a.b") is None
    # a legacy token on the canonical path is not accepted
    problem = callbacks.token_scope_problem(legacy, SCOPE, task, tid("run-1", "a.b"))
    assert problem == "task_id_mismatch"
    trigger(database, "run-2", [planned("a.b")])  # the key is now ambiguous without scope
    for claims in (canonical, legacy):
        result = started(database, "a.b", body_of(task), claims=claims, now=at(2))
        assert result.status == 200, result.body


def test_scenario_24_token_problem_is_401_invalid_token(database: Database) -> None:
    task = running_task(database)
    result = started(
        database,
        tid("run-1", "a.b"),
        body_of(task),
        claims=claims_for(task, workspaceId="workspace-x"),
        now=at(2),
    )
    assert result.status == 401
    assert result.body == {
        "error": "invalid_token",
        "message": "invalid_token: workspace_mismatch",
    }


def test_old_attempt_token_gets_401_attempt_mismatch_once_a_new_attempt_exists(
    database: Database,
) -> None:
    task = running_task(database)
    old_claims = claims_for(task)
    old_body = body_of(task)
    assert complete(database, "run-1", "a.b", failed(), now=at(5))
    dispatch(database, "run-1", "a.b", now=at(40))
    path = tid("run-1", "a.b")
    for handler in (started, heartbeat, completed):
        body = {**old_body, "outcome": "SUCCEEDED"} if handler is completed else old_body
        result = handler(database, path, body, claims=old_claims, now=at(41))
        assert result.status == 401
        assert result.body["message"] == "invalid_token: attempt_mismatch"
    assert load_task(database, "run-1", "a.b").state == TaskState.DISPATCHED


# --- /started (5.3) -------------------------------------------------------------------------


def test_scenario_1_started_applies_once_and_a_repeat_is_200(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    dispatch(database, "run-1", "a.b", now=at(0))
    task = load_task(database, "run-1", "a.b")
    path = tid("run-1", "a.b")
    first = started(database, path, body_of(task), claims=claims_for(task), now=at(1))
    assert (first.status, first.applied) == (200, True)
    assert first.body == {"acknowledged": True, "serverTime": format_timestamp(at(1))}
    again = started(database, path, body_of(task), claims=claims_for(task), now=at(2))
    assert (again.status, again.applied) == (200, False)
    assert len(task_events(database, "run-1", "a.b", "started")) == 1
    assert load_task(database, "run-1", "a.b").started_at == at(1)


def test_scenario_18_started_is_timed_at_server_receipt(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    dispatch(database, "run-1", "a.b", now=at(0))
    task = load_task(database, "run-1", "a.b")
    for skewed in (FAR_PAST, FAR_FUTURE):
        result = started(database, tid("run-1", "a.b"), body_of(task, startedAt=skewed), now=at(3))
        assert result.status == 200
    task = load_task(database, "run-1", "a.b")
    assert task.started_at == at(3)
    assert task.heartbeat_deadline == at(303)
    (event,) = task_events(database, "run-1", "a.b", "started")
    assert event.at == at(3)


def test_scenario_6_started_on_a_succeeded_task_is_409_terminal(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", succeeded(), now=at(1))
    task = load_task(database, "run-1", "a.b")
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert_error(result, 409, CallbackErrorCode.TASK_ALREADY_TERMINAL)
    assert result.body == {
        "error": "task_already_terminal",
        "message": "task_already_terminal: Task is already in terminal state: SUCCEEDED",
        "state": "SUCCEEDED",
    }


def test_scenario_7_started_on_retry_wait_with_the_same_attempt_is_409(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", failed(), now=at(1))
    task = load_task(database, "run-1", "a.b")
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_ALREADY_COMPLETED)
    assert result.body["state"] == "RETRY_WAIT"
    assert (result.body["expectedAttempt"], result.body["receivedAttempt"]) == (1, 1)
    assert load_task(database, "run-1", "a.b").state == TaskState.RETRY_WAIT


def test_scenario_8_started_for_the_dispatched_retry_attempt_is_200(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", failed(), now=at(1))
    dispatch(database, "run-1", "a.b", now=at(40))
    task = load_task(database, "run-1", "a.b")
    assert task.attempt == 2
    result = started(
        database, tid("run-1", "a.b"), body_of(task), claims=claims_for(task), now=at(41)
    )
    assert (result.status, result.applied) == (200, True)
    task = load_task(database, "run-1", "a.b")
    assert (task.state, task.attempt, task.started_at) == (TaskState.RUNNING, 2, at(41))


def test_scenario_9_started_for_an_older_attempt_is_409_attempt_mismatch(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", failed(), now=at(1))
    dispatch(database, "run-1", "a.b", now=at(40))
    task = load_task(database, "run-1", "a.b")
    result = started(
        database, tid("run-1", "a.b"), body_of(task, attempt=1), claims=claims_for(task), now=at(41)
    )
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_MISMATCH)
    assert result.body == {
        "error": "attempt_mismatch",
        "message": "attempt_mismatch: Expected attempt 2, received 1",
        "expectedAttempt": 2,
        "receivedAttempt": 1,
    }


def test_scenarios_10_and_31_started_with_a_wrong_attempt_id_is_ignored(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    dispatch(database, "run-1", "a.b", now=at(0))
    task = load_task(database, "run-1", "a.b")
    wrong = "att_000000000000000000000000"
    result = started(database, tid("run-1", "a.b"), body_of(task, attemptId=wrong), now=at(1))
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_ID_MISMATCH)
    assert result.body == {
        "error": "attempt_id_mismatch",
        "message": f"attempt_id_mismatch: Expected attempt_id {task.attempt_id}, received {wrong}",
        "expectedAttemptId": task.attempt_id,
        "receivedAttemptId": wrong,
    }
    assert load_task(database, "run-1", "a.b").state == TaskState.DISPATCHED
    assert task_events(database, "run-1", "a.b", "started") == []
    # the rejected fact did not use up the attempt's key
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert (result.status, result.applied) == (200, True)


def test_scenario_11_started_in_a_cancel_requested_run_is_409_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    run_task(database, "run-1", "a.b", now=at(0))
    assert cancel_run(database, "run-1", now=at(1)).value == "cancelled"  # nothing to cancel
    task = load_task(database, "run-1", "a.b")
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert_error(result, 409, CallbackErrorCode.TASK_ALREADY_TERMINAL)
    assert result.body["state"] == "CANCELLED"
    assert load_task(database, "run-1", "a.b").state == TaskState.RUNNING


def test_scenario_11_not_yet_started_attempt_of_a_cancel_requested_run_is_refused(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    dispatch(database, "run-1", "a.b", now=at(0))
    set_cancel_requested(database, "run-1")
    task = load_task(database, "run-1", "a.b")
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert_error(result, 409, CallbackErrorCode.TASK_ALREADY_TERMINAL)
    assert result.body["state"] == "CANCELLED"
    assert task_events(database, "run-1", "a.b", "started") == []


def test_scenario_12_started_on_a_cancelled_task_is_409_and_writes_nothing(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", cancelled(), now=at(1))
    task = load_task(database, "run-1", "a.b")
    events_before = len(task_events(database, "run-1", "a.b"))
    result = started(database, tid("run-1", "a.b"), body_of(task), now=at(2))
    assert_error(result, 409, CallbackErrorCode.TASK_ALREADY_TERMINAL)
    assert result.body["state"] == "CANCELLED"
    assert len(task_events(database, "run-1", "a.b")) == events_before


# --- /heartbeat (5.4) -----------------------------------------------------------------------


def test_scenario_13_heartbeat_in_a_cancel_requested_run_says_should_cancel(
    database: Database,
) -> None:
    task = running_task(database)
    path = tid("run-1", "a.b")
    calm = heartbeat(database, path, body_of(task), claims=claims_for(task), now=at(5))
    assert calm.status == 200
    assert calm.body == {
        "acknowledged": True,
        "shouldCancel": False,
        "serverTime": format_timestamp(at(5)),
    }
    cancel_run(database, "run-1", now=at(6))
    result = heartbeat(database, path, body_of(task), claims=claims_for(task), now=at(7))
    assert (result.status, result.applied) == (200, True)
    assert result.body == {
        "acknowledged": True,
        "shouldCancel": True,
        "cancelReason": "user_requested",
        "serverTime": format_timestamp(at(7)),
    }


def test_scenario_14_heartbeat_with_a_wrong_attempt_id_is_409(database: Database) -> None:
    task = running_task(database)
    result = heartbeat(database, tid("run-1", "a.b"), body_of(task, attemptId="att_bad"), now=at(5))
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_ID_MISMATCH)
    assert result.body["expectedAttemptId"] == task.attempt_id
    assert result.body["receivedAttemptId"] == "att_bad"
    assert load_task(database, "run-1", "a.b").last_heartbeat_at is None


def test_heartbeat_for_another_attempt_is_409_attempt_mismatch(database: Database) -> None:
    task = running_task(database)
    result = heartbeat(database, tid("run-1", "a.b"), body_of(task, attempt=3), now=at(5))
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_MISMATCH)
    assert (result.body["expectedAttempt"], result.body["receivedAttempt"]) == (1, 3)


def test_scenario_16_heartbeat_on_a_succeeded_task_is_410_expired(database: Database) -> None:
    task = running_task(database)
    assert complete(database, "run-1", "a.b", succeeded(), now=at(5))
    result = heartbeat(database, tid("run-1", "a.b"), body_of(task), now=at(6))
    assert_error(result, 410, CallbackErrorCode.TASK_EXPIRED)
    assert result.body == {
        "error": "task_expired",
        "message": "task_expired: Task is no longer active",
        "state": "SUCCEEDED",
    }


def test_scenarios_17_and_18_heartbeat_is_timed_at_server_receipt(database: Database) -> None:
    task = running_task(database)
    result = heartbeat(
        database,
        tid("run-1", "a.b"),
        body_of(task, heartbeatAt=FAR_FUTURE, progressPct=40, message="reading"),
        now=at(20),
    )
    assert result.status == 200
    assert result.body["serverTime"] == format_timestamp(at(20))
    task = load_task(database, "run-1", "a.b")
    assert task.last_heartbeat_at == at(20)
    assert task.heartbeat_deadline == at(320)
    assert (task.progress_pct, task.progress_message) == (40, "reading")


def test_late_heartbeat_after_the_reaper_chose_retry_wait_is_accepted(database: Database) -> None:
    task = running_task(database)
    with database.transaction() as session:
        assert facts.fail_attempt(
            session,
            SCOPE,
            "run-1",
            "a.b",
            attempt=1,
            attempt_id=task.attempt_id or "",
            reason="heartbeat_timeout_anti_entropy",
            now=at(400),
        )
    path = tid("run-1", "a.b")
    beat = heartbeat(database, path, body_of(task), now=at(401))
    assert beat.status == 200
    assert beat.body["shouldCancel"] is False
    assert load_task(database, "run-1", "a.b").last_heartbeat_at == at(401)
    late = completed(database, path, body_of(task, outcome="SUCCEEDED"), now=at(402))
    assert (late.status, late.applied) == (200, False)
    assert late.body["finalState"] == "SUCCEEDED"
    again = started(database, path, body_of(task), now=at(403))
    assert_error(again, 409, CallbackErrorCode.ATTEMPT_ALREADY_COMPLETED)
    assert load_task(database, "run-1", "a.b").state == TaskState.RETRY_WAIT


# --- /completed (5.5) -----------------------------------------------------------------------


def test_scenario_19_completed_succeeded_records_output_and_lineage(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b", partition_key="date=2026-03-01")])
    run_task(database, "run-1", "a.b", now=at(0))
    task = load_task(database, "run-1", "a.b")
    output = {
        "materializationId": "mat-1",
        "rowCount": 12,
        "deltaTable": "analytics.a_b",
        "deltaVersion": 7,
    }
    metrics = {"cpuTimeMs": 5}
    result = completed(
        database,
        tid("run-1", "a.b"),
        body_of(task, outcome="SUCCEEDED", output=output, metrics=metrics),
        claims=claims_for(task),
        now=at(10),
    )
    assert (result.status, result.applied) == (200, True)
    assert result.body == {
        "acknowledged": True,
        "finalState": "SUCCEEDED",
        "serverTime": format_timestamp(at(10)),
    }
    task = load_task(database, "run-1", "a.b")
    assert task.state == TaskState.SUCCEEDED
    assert task.completed_at == at(10)
    assert task.output == output
    assert task.metrics == metrics
    assert (task.materialization_id, task.delta_table, task.delta_version) == (
        "mat-1",
        "analytics.a_b",
        7,
    )
    assert task.delta_partition is None
    assert task.output_visibility_state is None  # scenario 21: no visibility reported
    assert json.loads(task.execution_lineage_ref or "") == {
        "runId": "run-1",
        "taskKey": "a.b",
        "attempt": 1,
        "materializationId": "mat-1",
        "deltaTable": "analytics.a_b",
        "deltaVersion": 7,
        "deltaPartition": "date=2026-03-01",
    }
    (event,) = task_events(database, "run-1", "a.b", "completed")
    assert event.at == at(10)
    assert event.detail == {
        "outcome": "SUCCEEDED",
        "workerId": "w-1",
        "metrics": metrics,
    }
    assert load_run(database, "run-1").state == RunState.SUCCEEDED


def test_scenario_20_completed_with_visibility_is_one_fact(database: Database) -> None:
    task = running_task(database)
    output = {
        "outputVisibilityState": "VISIBLE",
        "publishedAt": "2026-01-01T00:00:09.5Z",
        "deltaPartition": "p=1",
    }
    result = completed(
        database, tid("run-1", "a.b"), body_of(task, outcome="SUCCEEDED", output=output), now=at(10)
    )
    assert result.status == 200
    task = load_task(database, "run-1", "a.b")
    assert task.output_visibility_state == "VISIBLE"
    assert task.published_at == at(9.5)
    assert task.delta_partition == "p=1"
    assert len(task_events(database, "run-1", "a.b", "completed")) == 1


def test_scenario_20_visible_without_published_at_uses_server_time(database: Database) -> None:
    task = running_task(database)
    output = {"outputVisibilityState": "VISIBLE"}
    completed(
        database, tid("run-1", "a.b"), body_of(task, outcome="SUCCEEDED", output=output), now=at(10)
    )
    assert load_task(database, "run-1", "a.b").published_at == at(10)


def test_publication_failure_records_the_publish_error(database: Database) -> None:
    task = running_task(database)
    output = {"outputVisibilityState": "FAILED", "publishError": "catalog down"}
    completed(
        database, tid("run-1", "a.b"), body_of(task, outcome="SUCCEEDED", output=output), now=at(10)
    )
    task = load_task(database, "run-1", "a.b")
    assert (task.output_visibility_state, task.publish_error) == ("FAILED", "catalog down")


def test_scenario_22_completed_with_a_wrong_attempt_id_is_409(database: Database) -> None:
    task = running_task(database)
    result = completed(
        database,
        tid("run-1", "a.b"),
        body_of(task, attemptId="att_bad", outcome="SUCCEEDED"),
        now=at(10),
    )
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_ID_MISMATCH)
    assert load_task(database, "run-1", "a.b").state == TaskState.RUNNING


def test_scenario_23_completed_failed_answers_failed_while_storage_retries(
    database: Database,
) -> None:
    task = running_task(database)
    result = completed(
        database,
        tid("run-1", "a.b"),
        body_of(
            task,
            outcome="FAILED",
            error={"category": "INFRASTRUCTURE", "message": "node lost"},
            output={"rowCount": 3, "outputVisibilityState": "VISIBLE"},
            cancelledDuringPhase="write",
            partialProgress={"rows": 3},
        ),
        now=at(10),
    )
    assert (result.status, result.applied) == (200, True)
    assert result.body["finalState"] == "FAILED"
    task = load_task(database, "run-1", "a.b")
    assert task.state == TaskState.RETRY_WAIT
    assert task.error_message == "node lost"
    assert task.error == {"category": "INFRASTRUCTURE", "message": "node lost", "retryable": True}
    assert task.output == {"rowCount": 3, "outputVisibilityState": "VISIBLE"}
    assert task.output_visibility_state is None  # visibility applies to SUCCEEDED only
    (event,) = task_events(database, "run-1", "a.b", "completed")
    assert event.detail is not None
    assert event.detail["cancelledDuringPhase"] == "write"
    assert event.detail["partialProgress"] == '{"rows": 3}'
    assert event.detail["errorMessage"] == "node lost"


def test_duplicate_completed_after_success_is_409_terminal(database: Database) -> None:
    task = running_task(database)
    path = tid("run-1", "a.b")
    assert completed(database, path, body_of(task, outcome="SUCCEEDED"), now=at(10)).applied
    again = completed(database, path, body_of(task, outcome="FAILED"), now=at(11))
    assert_error(again, 409, CallbackErrorCode.TASK_ALREADY_TERMINAL)
    assert again.body["state"] == "SUCCEEDED"


def test_duplicate_completed_after_retryable_failure_is_200_and_ignored(
    database: Database,
) -> None:
    task = running_task(database)
    path = tid("run-1", "a.b")
    first = completed(database, path, body_of(task, outcome="FAILED"), now=at(10))
    assert first.applied
    again = completed(database, path, body_of(task, outcome="SUCCEEDED"), now=at(11))
    assert (again.status, again.applied, again.body["finalState"]) == (200, False, "SUCCEEDED")
    task = load_task(database, "run-1", "a.b")
    assert (task.state, task.retry_not_before) == (TaskState.RETRY_WAIT, at(40))


def test_scenario_30_late_completion_of_attempt_1_after_attempt_2_started_is_rejected(
    database: Database,
) -> None:
    task = running_task(database)
    attempt_1 = body_of(task, outcome="SUCCEEDED")
    assert complete(database, "run-1", "a.b", failed(), now=at(10))
    run_task(database, "run-1", "a.b", now=at(50))
    result = completed(database, tid("run-1", "a.b"), attempt_1, now=at(60))
    assert_error(result, 409, CallbackErrorCode.ATTEMPT_MISMATCH)
    assert (result.body["expectedAttempt"], result.body["receivedAttempt"]) == (2, 1)
    task = load_task(database, "run-1", "a.b")
    assert (task.state, task.attempt, task.completed_at) == (TaskState.RUNNING, 2, None)


def test_scenario_43_visibility_for_a_stale_attempt_is_rejected(database: Database) -> None:
    task = running_task(database)
    stale = body_of(task, outcome="SUCCEEDED", output={"outputVisibilityState": "VISIBLE"})
    assert complete(database, "run-1", "a.b", failed(), now=at(10))
    run_task(database, "run-1", "a.b", now=at(50))
    result = completed(database, tid("run-1", "a.b"), stale, now=at(60))
    assert result.status == 409
    assert load_task(database, "run-1", "a.b").output_visibility_state is None


def test_scenario_43_visible_output_never_goes_back_to_pending(database: Database) -> None:
    task = running_task(database)
    path = tid("run-1", "a.b")
    visible = body_of(task, outcome="SUCCEEDED", output={"outputVisibilityState": "VISIBLE"})
    pending = body_of(task, outcome="SUCCEEDED", output={"outputVisibilityState": "PENDING"})
    assert completed(database, path, visible, now=at(10)).applied
    assert completed(database, path, pending, now=at(11)).status == 409
    assert load_task(database, "run-1", "a.b").output_visibility_state == "VISIBLE"


def test_scenario_42_retry_deadline_ignores_the_worker_clock(database: Database) -> None:
    task = running_task(database)
    result = completed(
        database,
        tid("run-1", "a.b"),
        body_of(task, outcome="FAILED", completedAt=FAR_FUTURE),
        now=at(10),
    )
    assert result.status == 200
    task = load_task(database, "run-1", "a.b")
    assert task.retry_not_before == at(10) + timedelta(seconds=30)
    assert task.completed_at is None


def test_completed_succeeded_after_a_cancel_request_succeeds(database: Database) -> None:
    task = running_task(database)
    cancel_run(database, "run-1", now=at(5))
    result = completed(
        database, tid("run-1", "a.b"), body_of(task, outcome="SUCCEEDED"), now=at(10)
    )
    assert (result.status, result.applied) == (200, True)
    assert load_task(database, "run-1", "a.b").state == TaskState.SUCCEEDED
    assert load_run(database, "run-1").state == RunState.SUCCEEDED


# --- retryability (5.5, scenario 25) --------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (None, True),
        ({"category": "USER_CODE", "message": "m"}, True),
        ({"category": "INFRASTRUCTURE", "message": "m"}, True),
        ({"category": "TIMEOUT", "message": "m"}, True),
        ({"category": "DATA_QUALITY", "message": "m"}, False),
        ({"category": "CONFIGURATION", "message": "m"}, False),
        ({"category": "CANCELLED", "message": "m"}, False),
        ({"category": "USER_CODE", "message": "m", "retryable": False}, False),
        ({"category": "DATA_QUALITY", "message": "m", "retryable": True}, True),
    ],
)
def test_scenario_25_retryable_by_category_with_explicit_override(
    error: dict[str, Any] | None, retryable: bool
) -> None:
    body: dict[str, Any] = {"attempt": 1, "attemptId": "a", "workerId": "w", "outcome": "FAILED"}
    if error is not None:
        body["error"] = error
    completion = callbacks.completion_from_request(TaskCompletedRequest.from_dict(body))
    assert completion.retryable is retryable
    if error is None:
        assert (completion.error, completion.error_message) == (None, None)
    else:
        assert completion.error == {**error, "retryable": retryable}
        assert completion.error_message == "m"


def test_explicit_non_retryable_failure_fails_the_task(database: Database) -> None:
    task = running_task(database)
    result = completed(
        database,
        tid("run-1", "a.b"),
        body_of(
            task,
            outcome="FAILED",
            error={"category": "USER_CODE", "message": "no", "retryable": False},
        ),
        now=at(10),
    )
    assert result.body["finalState"] == "FAILED"
    task = load_task(database, "run-1", "a.b")
    assert (task.state, task.completed_at, task.retry_not_before) == (
        TaskState.FAILED,
        at(10),
        None,
    )


def test_failed_without_error_object_via_callback_is_retryable(database: Database) -> None:
    task = running_task(database)
    completed(database, tid("run-1", "a.b"), body_of(task, outcome="FAILED"), now=at(10))
    task = load_task(database, "run-1", "a.b")
    assert (task.state, task.error, task.error_message) == (TaskState.RETRY_WAIT, None, None)


def test_callback_error_body_omits_absent_fields_and_prefixes_the_code() -> None:
    result = callbacks.callback_error(
        CallbackErrorCode.ATTEMPT_MISMATCH, "text", 409, expectedAttempt=2, receivedAttempt=None
    )
    assert result.status == 409
    assert result.body == {
        "error": "attempt_mismatch",
        "message": "attempt_mismatch: text",
        "expectedAttempt": 2,
    }
    assert callbacks.invalid_token("tenant_mismatch").body == {
        "error": "invalid_token",
        "message": "invalid_token: tenant_mismatch",
    }
    assert callbacks.invalid_token("x").status == 401


# --- order of the checks (5.3 and 5.4 tables) -----------------------------------------------


def test_terminal_check_comes_before_the_attempt_checks(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    finish(database, "run-1", "a.b", succeeded(), now=at(1))
    path = tid("run-1", "a.b")
    stale = {"attempt": 5, "attemptId": "att_bad", "workerId": "w"}
    assert started(database, path, stale, now=at(2)).body["error"] == "task_already_terminal"
    assert heartbeat(database, path, stale, now=at(2)).status == 410
    done = completed(database, path, {**stale, "outcome": "FAILED"}, now=at(2))
    assert done.body["error"] == "task_already_terminal"


def test_attempt_checks_come_before_the_cancel_check_on_started(database: Database) -> None:
    trigger(database, "run-1", [planned("a.b")])
    dispatch(database, "run-1", "a.b", now=at(0))
    set_cancel_requested(database, "run-1")
    task = load_task(database, "run-1", "a.b")
    path = tid("run-1", "a.b")
    wrong_id = started(database, path, body_of(task, attemptId="att_bad"), now=at(1))
    assert wrong_id.body["error"] == "attempt_id_mismatch"
    wrong_attempt = started(database, path, body_of(task, attempt=2), now=at(1))
    assert wrong_attempt.body["error"] == "attempt_mismatch"


def test_callbacks_from_another_workspace_do_not_find_the_task(database: Database) -> None:
    task = running_task(database)
    path = tid("run-1", "a.b")
    with database.transaction() as session:
        beat = callbacks.handle_heartbeat(
            session,
            OTHER_WORKSPACE,
            path,
            None,
            HeartbeatRequest.from_dict(body_of(task)),
            now=at(5),
        )
        done = callbacks.handle_completed(
            session,
            OTHER_WORKSPACE,
            path,
            None,
            TaskCompletedRequest.from_dict(body_of(task, outcome="SUCCEEDED")),
            now=at(5),
        )
    assert_error(beat, 404, CallbackErrorCode.TASK_NOT_FOUND)
    assert_error(done, 404, CallbackErrorCode.TASK_NOT_FOUND)
    assert load_task(database, "run-1", "a.b").state == TaskState.RUNNING


def test_legacy_path_with_run_scope_of_a_run_without_that_task_is_not_found(
    database: Database,
) -> None:
    task = running_task(database)
    trigger(database, "run-2", [planned("c.d")])
    claims = claims_for(task, runId="run-2", taskId="a.b")
    result = started(database, "a.b", body_of(task), claims=claims, now=at(2))
    assert_error(result, 404, CallbackErrorCode.TASK_NOT_FOUND)
