"""Dispatch, start, heartbeat and completion facts: the outbox (arco-orchestration 2.3, 2.4,
0.2), the sweeper repairs (recreate, redispatch, reaper) and once-per-attempt application
(section 8 items 37-39, plus T4, T5 and T13)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete

from arco_envelope import DEFAULT_WORKER_QUEUE, attempt_id, dispatch_id
from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import DispatchOutbox, Task
from arco_orchestration.scope import Scope
from arco_orchestration.states import DeliveryState, OutboxStatus, RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    complete,
    dispatch,
    enqueue,
    failed,
    finish,
    load_run,
    load_task,
    outbox_rows,
    planned,
    request,
    run_task,
    start,
    succeeded,
    task_events,
    trigger,
)
from arco_testkit.values import OTHER_WORKSPACE, SCOPE, WORKER


def heartbeat(
    database: Database,
    task: Task,
    *,
    now_seconds: float,
    progress_pct: int | None = None,
    message: str | None = None,
) -> bool:
    """Apply a heartbeat for the attempt ``task`` (a possibly stale snapshot) describes."""
    with database.transaction() as session:
        return facts.apply_heartbeat(
            session, task, now=at(now_seconds), progress_pct=progress_pct, message=message
        )


def fail_attempt(database: Database, task: Task, *, now_seconds: float) -> bool:
    with database.transaction() as session:
        return facts.fail_attempt(
            session,
            SCOPE,
            task.run_id,
            task.task_key,
            attempt=task.attempt,
            attempt_id=task.attempt_id or "",
            reason="heartbeat_timeout_anti_entropy",
            now=at(now_seconds),
        )


# --- DispatchRequested / DispatchEnqueued (scenario 37) -------------------------------------


def test_scenario_37_dispatch_requested_creates_a_pending_outbox_row(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(5))
    assert requested == facts.DispatchRequest(
        dispatch_id="dispatch:run1:extract:1",
        run_id="run1",
        task_key="extract",
        attempt=1,
        attempt_id="att_af5c419a69061299a227e6a9",  # the spec's worked example (0.1)
        worker_queue=DEFAULT_WORKER_QUEUE,
    )
    (row,) = outbox_rows(database, "run1")
    assert row.dispatch_id == "dispatch:run1:extract:1"
    assert (row.run_id, row.task_key, row.attempt) == ("run1", "extract", 1)
    assert row.attempt_id == requested.attempt_id
    assert row.worker_queue == "default-queue"
    assert row.status == OutboxStatus.PENDING
    assert row.cloud_task_id is None
    assert row.created_at == at(5)
    assert (row.tenant_id, row.workspace_id) == (SCOPE.tenant_id, SCOPE.workspace_id)
    assert row.delivery_state is None
    task = load_task(database, "run1", "extract")
    assert task.state == TaskState.DISPATCHED
    assert (task.attempt, task.attempt_id, task.dispatched_at) == (1, requested.attempt_id, at(5))
    (event,) = task_events(database, "run1", "extract", "dispatch_requested")
    assert (event.from_state, event.to_state, event.attempt) == ("READY", "DISPATCHED", 1)
    assert event.idempotency_key == "dispatch_req:dispatch:run1:extract:1"


def test_scenario_37_dispatch_enqueued_makes_the_row_created(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(5))
    assert enqueue(database, requested.dispatch_id, now=at(6), cloud_task_id="d_abc")
    (row,) = outbox_rows(database, "run1")
    assert row.status == OutboxStatus.CREATED
    assert row.cloud_task_id == "d_abc"
    assert row.created_at == row.enqueued_at == at(6)  # reset to the enqueue time
    assert row.attempt_id == requested.attempt_id
    assert (row.delivery_state, row.next_delivery_at) == (None, None)
    (event,) = task_events(database, "run1", "extract", "dispatch_enqueued")
    assert event.detail == {
        "dispatchId": requested.dispatch_id,
        "cloudTaskId": "d_abc",
        "deduplicated": False,
        "envelopeKeys": ["attempt", "attemptId", "taskToken"],
    }
    assert load_task(database, "run1", "extract").state == TaskState.DISPATCHED


def test_dispatch_enqueued_with_push_delivery_queues_the_row(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(5))
    assert enqueue(database, requested.dispatch_id, now=at(7), push_delivery=True)
    (row,) = outbox_rows(database, "run1")
    assert row.status == OutboxStatus.CREATED
    assert row.delivery_state == DeliveryState.QUEUED
    assert row.next_delivery_at == at(7)
    assert row.delivery_attempts == 0


def test_first_dispatch_enqueued_wins(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(5))
    assert enqueue(database, requested.dispatch_id, now=at(6), cloud_task_id="d_first")
    assert not enqueue(
        database, requested.dispatch_id, now=at(9), cloud_task_id="d_second", push_delivery=True
    )
    (row,) = outbox_rows(database, "run1")
    assert (row.cloud_task_id, row.enqueued_at, row.delivery_state) == ("d_first", at(6), None)
    assert len(task_events(database, "run1", "extract", "dispatch_enqueued")) == 1


def test_dispatch_enqueued_of_another_scope_or_unknown_row_changes_nothing(
    database: Database,
) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(5))
    assert not enqueue(database, requested.dispatch_id, now=at(6), scope=OTHER_WORKSPACE)
    assert not enqueue(database, "dispatch:run1:extract:9", now=at(6))
    (row,) = outbox_rows(database, "run1")
    assert row.status == OutboxStatus.PENDING


def test_scenario_37_out_of_order_enqueue_does_not_regress_and_ids_fill_in(
    database: Database,
) -> None:
    """An acknowledgement before the request finds no row and changes nothing; the request
    then writes the row with its attempt id, and a later request or acknowledgement does not
    move a CREATED row back."""
    trigger(database, "run1", [planned("extract")])
    expected_id = dispatch_id("run1", "extract", 1)
    assert not enqueue(database, expected_id, now=at(1))
    assert outbox_rows(database, "run1") == []
    requested = dispatch(database, "run1", "extract", now=at(2))
    assert requested.attempt_id == attempt_id(expected_id)
    assert enqueue(database, expected_id, now=at(3))
    assert request(database, "run1", "extract", now=at(4)) is None
    assert not enqueue(database, expected_id, now=at(5), cloud_task_id="d_late")
    (row,) = outbox_rows(database, "run1")
    assert (row.status, row.attempt_id, row.cloud_task_id) == (
        OutboxStatus.CREATED,
        requested.attempt_id,
        "d_first",
    )
    assert load_task(database, "run1", "extract").state == TaskState.DISPATCHED


def test_request_dispatch_twice_writes_one_row(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    first = request(database, "run1", "extract", now=at(1))
    second = request(database, "run1", "extract", now=at(2))
    assert first is not None
    assert second is None
    (row,) = outbox_rows(database, "run1")
    assert (row.dispatch_id, row.created_at) == (first.dispatch_id, at(1))
    assert len(task_events(database, "run1", "extract", "dispatch_requested")) == 1
    assert load_task(database, "run1", "extract").dispatched_at == at(1)


def test_scenario_39_second_dispatch_request_does_not_replace_the_first(
    database: Database,
) -> None:
    trigger(database, "run1", [planned("extract")])
    first = dispatch(database, "run1", "extract", now=at(1))
    with database.transaction() as session:
        # another attempt number, and a plain repeat
        assert (
            facts.request_dispatch(session, SCOPE, "run1", "extract", now=at(2), attempt=2) is None
        )
        assert (
            facts.request_dispatch(session, SCOPE, "run1", "extract", now=at(2), attempt=1) is None
        )
        # the sweeper's recreate finds the row present
        assert facts.recreate_dispatch(session, SCOPE, "run1", "extract", now=at(2)) is None
    (row,) = outbox_rows(database, "run1")
    assert (row.attempt, row.attempt_id, row.created_at) == (1, first.attempt_id, at(1))
    task = load_task(database, "run1", "extract")
    assert (task.attempt, task.attempt_id) == (1, first.attempt_id)


def test_request_dispatch_with_a_wrong_expected_attempt_does_nothing(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    with database.transaction() as session:
        assert (
            facts.request_dispatch(session, SCOPE, "run1", "extract", now=at(1), attempt=2) is None
        )
    assert outbox_rows(database, "run1") == []
    assert load_task(database, "run1", "extract").state == TaskState.READY


@pytest.mark.parametrize("target", ["blocked", "running", "succeeded", "unknown-task"])
def test_request_dispatch_applies_only_to_ready_or_retry_wait_tasks(
    database: Database, target: str
) -> None:
    trigger(
        database,
        "run1",
        [planned("running"), planned("succeeded"), planned("blocked", "running")],
    )
    run_task(database, "run1", "running", now=at(1))
    finish(database, "run1", "succeeded", succeeded(), now=at(1))
    rows_before = len(outbox_rows(database, "run1"))
    assert request(database, "run1", target, now=at(2)) is None
    assert len(outbox_rows(database, "run1")) == rows_before


def test_request_dispatch_is_scoped_to_tenant_and_workspace(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    assert request(database, "run1", "extract", now=at(1), scope=OTHER_WORKSPACE) is None
    assert request(database, "no-such-run", "extract", now=at(1)) is None
    assert outbox_rows(database, "run1") == []


def test_scenario_69_retry_dispatch_takes_the_next_attempt_and_keeps_the_error(
    database: Database,
) -> None:
    trigger(database, "run1", [planned("extract", max_attempts=2)])
    finish(database, "run1", "extract", failed(message="first failure"), now=at(10))
    assert outbox_rows(database, "run1") == []  # the finished attempt's row is gone
    second = dispatch(database, "run1", "extract", now=at(50))
    assert (second.attempt, second.dispatch_id) == (2, "dispatch:run1:extract:2")
    assert second.attempt_id == attempt_id("dispatch:run1:extract:2")
    task = load_task(database, "run1", "extract")
    assert task.state == TaskState.DISPATCHED
    assert (task.attempt, task.attempt_id) == (2, second.attempt_id)
    assert task.retry_not_before is None
    assert task.error_message == "first failure"
    (row,) = outbox_rows(database, "run1")
    assert (row.attempt, row.status) == (2, OutboxStatus.PENDING)


# --- TaskStarted (scenario 38) --------------------------------------------------------------


def test_scenario_38_started_removes_the_outbox_row_of_the_attempt(database: Database) -> None:
    trigger(database, "run1", [planned("extract", heartbeat_timeout_sec=120)])
    requested = dispatch(database, "run1", "extract", now=at(1))
    assert enqueue(database, requested.dispatch_id, now=at(2))
    assert start(database, "run1", "extract", now=at(3))
    assert outbox_rows(database, "run1") == []
    task = load_task(database, "run1", "extract")
    assert task.state == TaskState.RUNNING
    assert task.started_at == at(3)
    assert task.heartbeat_deadline == at(3) + timedelta(seconds=120)
    (event,) = task_events(database, "run1", "extract", "started")
    assert (event.from_state, event.to_state, event.detail) == (
        "DISPATCHED",
        "RUNNING",
        {"workerId": WORKER},
    )
    assert event.idempotency_key == "started:run1:extract:1"
    # a late acknowledgement of the consumed attempt does not bring the row back
    assert not enqueue(database, requested.dispatch_id, now=at(4))
    assert outbox_rows(database, "run1") == []


def test_started_twice_applies_once(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    dispatch(database, "run1", "extract", now=at(1))
    assert start(database, "run1", "extract", now=at(2))
    assert not start(database, "run1", "extract", now=at(9), worker_id="worker-2")
    task = load_task(database, "run1", "extract")
    assert (task.state, task.started_at) == (TaskState.RUNNING, at(2))
    assert len(task_events(database, "run1", "extract", "started")) == 1


def test_started_on_a_terminal_task_is_ignored(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    dispatch(database, "run1", "extract", now=at(1))
    assert complete(database, "run1", "extract", succeeded(), now=at(2))
    assert not start(database, "run1", "extract", now=at(3))
    assert load_task(database, "run1", "extract").state == TaskState.SUCCEEDED
    assert task_events(database, "run1", "extract", "started") == []


# --- TaskHeartbeat (T5) ---------------------------------------------------------------------


def test_heartbeat_refreshes_the_current_attempt(database: Database) -> None:
    trigger(database, "run1", [planned("extract", heartbeat_timeout_sec=60)])
    run_task(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    assert heartbeat(database, task, now_seconds=40, progress_pct=50, message="halfway")
    task = load_task(database, "run1", "extract")
    assert task.last_heartbeat_at == at(40)
    assert task.heartbeat_deadline == at(100)
    assert (task.progress_pct, task.progress_message) == (50, "halfway")
    assert task.state == TaskState.RUNNING
    # without progress fields the previous values stay
    assert heartbeat(database, task, now_seconds=70)
    task = load_task(database, "run1", "extract")
    assert (task.last_heartbeat_at, task.heartbeat_deadline) == (at(70), at(130))
    assert (task.progress_pct, task.progress_message) == (50, "halfway")
    assert task_events(database, "run1", "extract", "heartbeat") == []


def test_heartbeat_of_a_stale_attempt_changes_nothing(database: Database) -> None:
    trigger(database, "run1", [planned("extract", heartbeat_timeout_sec=60)])
    run_task(database, "run1", "extract", now=at(0))
    stale = load_task(database, "run1", "extract")  # attempt 1
    assert complete(database, "run1", "extract", failed(), now=at(10))
    run_task(database, "run1", "extract", now=at(50))  # attempt 2
    assert not heartbeat(database, stale, now_seconds=55, progress_pct=99)
    task = load_task(database, "run1", "extract")
    assert (task.attempt, task.last_heartbeat_at, task.heartbeat_deadline) == (2, None, at(110))
    assert task.progress_pct is None


def test_heartbeat_with_a_different_attempt_id_changes_nothing(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    task.attempt_id = "att_000000000000000000000000"
    assert not heartbeat(database, task, now_seconds=5)
    assert load_task(database, "run1", "extract").last_heartbeat_at is None


def test_heartbeat_while_dispatched_refreshes_only_last_heartbeat(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    dispatch(database, "run1", "extract", now=at(0))
    assert heartbeat(database, load_task(database, "run1", "extract"), now_seconds=5)
    task = load_task(database, "run1", "extract")
    assert (task.state, task.last_heartbeat_at, task.heartbeat_deadline) == (
        TaskState.DISPATCHED,
        at(5),
        None,
    )


def test_heartbeat_on_a_terminal_task_changes_nothing(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    snapshot = load_task(database, "run1", "extract")
    assert complete(database, "run1", "extract", succeeded(), now=at(5))
    assert not heartbeat(database, snapshot, now_seconds=6)
    task = load_task(database, "run1", "extract")
    assert (task.state, task.last_heartbeat_at) == (TaskState.SUCCEEDED, None)


# --- completion once per attempt ------------------------------------------------------------


def test_completion_twice_applies_once(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    assert complete(database, "run1", "extract", failed(message="one"), now=at(5))
    # RETRY_WAIT is not terminal: the repeat reaches the idempotency key and stops there
    assert not complete(database, "run1", "extract", succeeded(), now=at(6))
    assert not complete(database, "run1", "extract", failed(message="two"), now=at(7))
    task = load_task(database, "run1", "extract")
    assert (task.state, task.error_message, task.retry_not_before) == (
        TaskState.RETRY_WAIT,
        "one",
        at(35),
    )
    (event,) = task_events(database, "run1", "extract", "completed")
    assert event.idempotency_key == "finished:run1:extract:1"
    assert load_run(database, "run1").tasks_completed == 0


def test_completion_removes_the_outbox_row_and_clears_the_deadline(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    dispatch(database, "run1", "extract", now=at(0))
    assert complete(database, "run1", "extract", failed(), now=at(5))
    assert outbox_rows(database, "run1") == []
    assert load_task(database, "run1", "extract").heartbeat_deadline is None


# --- sweeper repairs ------------------------------------------------------------------------


def test_recreate_dispatch_restores_a_missing_row_with_the_same_ids(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    first = dispatch(database, "run1", "extract", now=at(1))
    with database.transaction() as session:
        session.execute(delete(DispatchOutbox))
    with database.transaction() as session:
        recreated = facts.recreate_dispatch(session, SCOPE, "run1", "extract", now=at(600))
    assert recreated == first
    (row,) = outbox_rows(database, "run1")
    assert (row.dispatch_id, row.attempt_id, row.status, row.created_at) == (
        first.dispatch_id,
        first.attempt_id,
        OutboxStatus.PENDING,
        at(600),
    )
    with database.transaction() as session:
        assert facts.recreate_dispatch(session, SCOPE, "run1", "extract", now=at(601)) is None


def test_recreate_dispatch_ignores_tasks_that_are_not_dispatched(database: Database) -> None:
    trigger(database, "run1", [planned("ready"), planned("running")])
    run_task(database, "run1", "running", now=at(1))
    with database.transaction() as session:
        assert facts.recreate_dispatch(session, SCOPE, "run1", "ready", now=at(2)) is None
        assert facts.recreate_dispatch(session, SCOPE, "run1", "running", now=at(2)) is None
        assert facts.recreate_dispatch(session, OTHER_WORKSPACE, "run1", "ready", now=at(2)) is None
    assert outbox_rows(database, "run1") == []


def redispatch(
    database: Database, dispatch_id: str, *, now: datetime, name: str, scope: Scope = SCOPE
) -> bool:
    with database.transaction() as session:
        return facts.record_redispatch(
            session,
            scope,
            "run1",
            dispatch_id,
            expected_redispatch_count=0,
            cloud_task_id=name,
            envelope_keys=["dispatchId"],
            push_delivery=False,
            deduplicated=False,
            now=now,
        )


def test_record_redispatch_counts_and_restarts_the_clock(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(1))
    assert enqueue(database, requested.dispatch_id, now=at(2), cloud_task_id="d_original")
    assert redispatch(database, requested.dispatch_id, now=at(700), name="d_repair1")
    (row,) = outbox_rows(database, "run1")
    assert (row.redispatch_count, row.created_at, row.cloud_task_id) == (1, at(700), "d_repair1")
    assert row.status == OutboxStatus.CREATED
    (event,) = task_events(database, "run1", "extract", "redispatched")
    assert event.detail == {"dispatchId": requested.dispatch_id, "redispatch": 1}
    # a CREATED row is not acknowledged again (one dispatch_enqueued event)
    assert len(task_events(database, "run1", "extract", "dispatch_enqueued")) == 1
    # 0.2 (b): the repair's own enqueue acknowledgement is dropped
    assert not enqueue(database, requested.dispatch_id, now=at(701), cloud_task_id="d_repair1")
    # a second sweeper that saw redispatch_count 0 records nothing
    assert not redispatch(database, requested.dispatch_id, now=at(702), name="d_repair1")
    assert not redispatch(database, "dispatch:none:x:1", now=at(1), name="d")
    assert not redispatch(
        database, requested.dispatch_id, now=at(1), name="d", scope=OTHER_WORKSPACE
    )
    assert outbox_rows(database, "run1")[0].redispatch_count == 1


def test_record_redispatch_of_a_pending_row_records_its_first_enqueue(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    requested = dispatch(database, "run1", "extract", now=at(1))
    assert redispatch(database, requested.dispatch_id, now=at(700), name="d_repair1")
    (row,) = outbox_rows(database, "run1")
    assert (row.status, row.redispatch_count, row.enqueued_at) == (
        OutboxStatus.CREATED,
        1,
        at(700),
    )
    (enqueued,) = task_events(database, "run1", "extract", "dispatch_enqueued")
    assert enqueued.detail is not None
    assert enqueued.detail["cloudTaskId"] == "d_repair1"


def test_reaper_failure_is_retryable_and_a_late_worker_completion_is_a_no_op(
    database: Database,
) -> None:
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    assert fail_attempt(database, task, now_seconds=400)
    task = load_task(database, "run1", "extract")
    assert task.state == TaskState.RETRY_WAIT
    assert (task.error_message, task.error) == ("heartbeat_timeout_anti_entropy", None)
    assert task.retry_not_before == at(430)
    (event,) = task_events(database, "run1", "extract", "reaped")
    assert event.detail is not None
    assert event.detail["workerId"] == facts.ANTI_ENTROPY_WORKER
    assert event.idempotency_key == "finished:run1:extract:1"
    # the worker's own completion of the same attempt arrives late
    assert not complete(database, "run1", "extract", succeeded(), now=at(401))
    assert load_task(database, "run1", "extract").state == TaskState.RETRY_WAIT
    assert task_events(database, "run1", "extract", "completed") == []
    # and the reaper does not apply twice
    assert not fail_attempt(database, task, now_seconds=402)


@pytest.mark.parametrize("field", ["attempt", "attempt_id"])
def test_reaper_for_a_stale_attempt_is_ignored(database: Database, field: str) -> None:
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    if field == "attempt":
        task.attempt = 0
    else:
        task.attempt_id = "att_ffffffffffffffffffffffff"
    assert not fail_attempt(database, task, now_seconds=400)
    assert load_task(database, "run1", "extract").state == TaskState.RUNNING


def test_scenario_30_reaper_for_attempt_1_after_attempt_2_started_is_ignored(
    database: Database,
) -> None:
    """Scenario 30 against the reaper: a failure for attempt 1 after attempt 2 started."""
    trigger(database, "run1", [planned("extract")])
    run_task(database, "run1", "extract", now=at(0))
    first = load_task(database, "run1", "extract")
    assert complete(database, "run1", "extract", failed(), now=at(10))
    run_task(database, "run1", "extract", now=at(50))
    assert not fail_attempt(database, first, now_seconds=400)
    task = load_task(database, "run1", "extract")
    assert (task.state, task.attempt) == (TaskState.RUNNING, 2)


def test_reaper_on_the_last_attempt_fails_the_task_and_the_run(database: Database) -> None:
    trigger(database, "run1", [planned("extract", max_attempts=1), planned("load", "extract")])
    run_task(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    assert fail_attempt(database, task, now_seconds=400)
    task = load_task(database, "run1", "extract")
    assert (task.state, task.completed_at) == (TaskState.FAILED, at(400))
    assert load_task(database, "run1", "load").state == TaskState.SKIPPED
    assert load_run(database, "run1").state == RunState.FAILED
    assert not complete(database, "run1", "extract", succeeded(), now=at(401))


def test_dispatch_timeout_fails_an_undelivered_attempt(database: Database) -> None:
    trigger(database, "run1", [planned("extract")])
    dispatch(database, "run1", "extract", now=at(0))
    task = load_task(database, "run1", "extract")
    with database.transaction() as session:
        assert facts.fail_attempt(
            session,
            SCOPE,
            "run1",
            "extract",
            attempt=1,
            attempt_id=task.attempt_id or "",
            reason="dispatch_timeout",
            now=at(900),
        )
    task = load_task(database, "run1", "extract")
    assert (task.state, task.error_message, task.retry_not_before) == (
        TaskState.RETRY_WAIT,
        "dispatch_timeout",
        at(930),
    )
    assert outbox_rows(database, "run1") == []
    (event,) = task_events(database, "run1", "extract", "reaped")
    assert (event.from_state, event.to_state) == ("DISPATCHED", "RETRY_WAIT")
