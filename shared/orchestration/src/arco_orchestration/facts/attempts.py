"""The facts of one attempt that its worker (or the reaper for it) reports: TaskStarted
(T4), TaskHeartbeat (T5) and the completion (T6-T9, T13) with every derived effect. The
first applied report of an attempt wins: its keyed event makes a repeat a no-op."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from arco_envelope import format_timestamp, parse_timestamp
from arco_orchestration.facts.graph import (
    cascade,
    count_terminal,
    finish_run_if_done,
    satisfy_downstream,
    without_downstream,
)
from arco_orchestration.facts.store import (
    EventKind,
    drop_outbox,
    flush_earlier_changes,
    insert_keyed,
    keyed_event_fields,
    notify_dispatcher,
    write_keyed,
    write_rows,
)
from arco_orchestration.facts.transitions import (
    TASK_TRANSITIONS,
    TaskTransition,
    allows,
    transition,
)
from arco_orchestration.models import Run, Task
from arco_orchestration.states import (
    RETRY_BACKOFF_BASE,
    TaskState,
    VisibilityState,
    retry_not_before,
)

ANTI_ENTROPY_WORKER = "anti-entropy"


def apply_started(session: Session, run: Run, task: Task, *, worker_id: str, now: datetime) -> bool:
    """TaskStarted (T4) for the task's current attempt; a repeat is a no-op."""
    if not allows(task, TaskTransition.START):
        return False
    event = keyed_event_fields(
        task,
        EventKind.STARTED,
        now,
        from_state=task.state,
        to_state=TASK_TRANSITIONS[TaskTransition.START].target,
        detail={"workerId": worker_id},
        idempotency_key=f"started:{task.run_id}:{task.task_key}:{task.attempt}",
    )
    flush_earlier_changes(session)
    transition(task, TaskTransition.START)
    task.started_at = now
    task.last_heartbeat_at = None
    task.heartbeat_deadline = _deadline(task, now)
    # The start's only statements: its keyed event guards them all (write_keyed).
    return write_keyed(session, event, task, drop_outbox_through=task.attempt)


def _deadline(task: Task, last_sign_of_life: datetime) -> datetime:
    return last_sign_of_life + timedelta(seconds=task.heartbeat_timeout_sec)


def apply_heartbeat(
    session: Session,
    task: Task,
    *,
    now: datetime,
    progress_pct: int | None,
    message: str | None,
) -> bool:
    """TaskHeartbeat (T5): refresh ``last_heartbeat_at`` of the current attempt. No run
    lock: a conditional update on the task row is enough and keeps heartbeats cheap."""
    values: dict[str, Any] = {"last_heartbeat_at": now}
    if task.state == TaskState.RUNNING:
        values["heartbeat_deadline"] = _deadline(task, now)
    if progress_pct is not None:
        values["progress_pct"] = progress_pct
    if message is not None:
        values["progress_message"] = message
    result = session.execute(
        update(Task)
        .where(
            Task.run_id == task.run_id,
            Task.task_key == task.task_key,
            Task.attempt == task.attempt,
            Task.attempt_id == task.attempt_id,
            Task.state.not_in([s.value for s in TaskState if s.is_terminal]),
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class Completion:
    """What a worker (or the reaper) reports for one attempt."""

    outcome: str  # SUCCEEDED | FAILED | CANCELLED
    worker_id: str
    error: dict[str, Any] | None = None  # wire TaskError with retryable normalised
    error_message: str | None = None
    output: dict[str, Any] | None = None  # wire TaskOutput
    metrics: dict[str, Any] | None = None
    cancelled_during_phase: str | None = None
    partial_progress: Any = None
    retryable: bool = True


def _lineage_ref(task: Task, output: dict[str, Any] | None) -> str:
    ref: dict[str, Any] = {"runId": task.run_id, "taskKey": task.task_key, "attempt": task.attempt}
    output = output or {}
    for key in ("materializationId", "deltaTable", "deltaVersion"):
        if output.get(key) is not None:
            ref[key] = output[key]
    partition = output.get("deltaPartition") or task.partition_key
    if partition is not None:
        ref["deltaPartition"] = partition
    return json.dumps(ref, separators=(",", ":"))


def _record_output(task: Task, output: dict[str, Any] | None, now: datetime) -> None:
    output = output or {}
    task.output = output or None
    task.materialization_id = output.get("materializationId")
    task.delta_table = output.get("deltaTable")
    task.delta_version = output.get("deltaVersion")
    task.delta_partition = output.get("deltaPartition")
    task.execution_lineage_ref = _lineage_ref(task, output)
    visibility = output.get("outputVisibilityState")
    if visibility is None:
        return
    task.output_visibility_state = visibility
    if visibility == VisibilityState.VISIBLE:
        published = output.get("publishedAt")
        task.published_at = parse_timestamp(published) if published else now
    elif visibility == VisibilityState.FAILED:
        task.publish_error = output.get("publishError")


def _completion_outcome(
    run: Run, task: Task, completion: Completion, now: datetime, retry_base: timedelta
) -> tuple[TaskTransition, datetime | None]:
    """The transition a completion makes, and the retry's earliest time if it waits for
    one; decided before anything is written, so the keyed event carries it."""
    if completion.outcome == "SUCCEEDED":
        return TaskTransition.SUCCEED, None
    if completion.outcome == "CANCELLED":
        return TaskTransition.CANCEL_REPORTED, None
    retry = completion.retryable and task.attempt < task.max_attempts
    if retry and not run.cancel_requested:
        return TaskTransition.RETRY, retry_not_before(now, task.attempt, base=retry_base)
    # D7: a retryable failure in a run being cancelled ends the task as CANCELLED instead
    # of waiting for a retry nobody will run.
    return (TaskTransition.CANCEL_REPORTED if retry else TaskTransition.FAIL), None


def apply_completion(
    session: Session,
    run: Run,
    task: Task,
    completion: Completion,
    *,
    now: datetime,
    retry_base: timedelta = RETRY_BACKOFF_BASE,
) -> bool:
    """TaskCompletionRecorded (T6-T9) for the task's current attempt, with every derived
    effect; a retry waits ``retry_base`` times 2^(attempt-1) (capped). The first applied
    completion of an attempt wins; later ones are no-ops."""
    change, retry_at = _completion_outcome(run, task, completion, now, retry_base)
    if not allows(task, change):
        return False
    previous = task.state
    state = TaskState(TASK_TRANSITIONS[change].target)
    kind = EventKind.REAPED if completion.worker_id == ANTI_ENTROPY_WORKER else EventKind.COMPLETED
    detail: dict[str, Any] = {"outcome": completion.outcome, "workerId": completion.worker_id}
    if completion.error_message:
        detail["errorMessage"] = completion.error_message
    if completion.error is not None:
        detail["error"] = completion.error
    if completion.metrics is not None:
        detail["metrics"] = completion.metrics
    if completion.cancelled_during_phase is not None:
        detail["cancelledDuringPhase"] = completion.cancelled_during_phase
    if completion.partial_progress is not None:
        detail["partialProgress"] = json.dumps(completion.partial_progress)
    if retry_at is not None:
        detail["retryNotBefore"] = format_timestamp(retry_at)
    event = keyed_event_fields(
        task,
        kind,
        now,
        from_state=previous,
        to_state=state.value,
        detail=detail,
        idempotency_key=f"finished:{task.run_id}:{task.task_key}:{task.attempt}",
    )
    # A completion that writes only its task and run rows (the common case: a started task
    # nothing depends on, not retried) sends its keyed event with those writes. Any other
    # sends the event first, so a repeat stops before any statement has changed a row.
    own_rows_only = (
        previous == TaskState.RUNNING
        and state is not TaskState.RETRY_WAIT
        and without_downstream(session, run, task.task_key)
    )
    if own_rows_only:
        flush_earlier_changes(session)
    elif not insert_keyed(session, event):
        return False
    # No autoflush until every change is made: the flush then writes the task and the run
    # row once each instead of once per statement that happens to run in between.
    with session.no_autoflush:
        transition(task, change)
        task.metrics = completion.metrics
        task.heartbeat_deadline = None
        task.retry_not_before = retry_at
        if previous != TaskState.RUNNING:
            # A RUNNING attempt has no outbox rows: /started dropped them under this run
            # lock, and rows are only created for READY, RETRY_WAIT or DISPATCHED tasks.
            drop_outbox(session, task, through_attempt=task.attempt)
        if state is TaskState.SUCCEEDED:
            task.error_message = None
            task.error = None
            _record_output(task, completion.output, now)
        elif completion.outcome != "CANCELLED":
            task.error_message = completion.error_message
            task.error = completion.error
            if completion.output:
                task.output = completion.output
        if state is TaskState.RETRY_WAIT:
            notify_dispatcher(session, run.run_id)
        else:
            task.completed_at = now
            count_terminal(run, state)
            if state is TaskState.SUCCEEDED:
                satisfy_downstream(session, run, task, now)
            else:
                cascade(session, run, task, now)
        finish_run_if_done(run, now)
        if own_rows_only:
            return write_keyed(session, event, task, run=run)
        write_rows(session, run, task)
    return True
