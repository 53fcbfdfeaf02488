"""Run cancellation (arco-orchestration 2.6, T10, 1.4) and design D7's fixes: nothing new
starts in a cancel-requested run (section 8 items 34-36)."""

from __future__ import annotations

import pytest

from arco_orchestration import facts, queries
from arco_orchestration.db import Database
from arco_orchestration.states import OutboxStatus, PublicRunState, RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    cancel_run,
    cancelled,
    complete,
    counters,
    dependency_edges,
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
    set_cancel_requested,
    succeeded,
    task_events,
    task_states,
    trigger,
)
from arco_testkit.values import OTHER_TENANT, OTHER_WORKSPACE, SCOPE

Disposition = facts.CancelDisposition


def public_state(database: Database, run_id: str) -> PublicRunState:
    with database.transaction() as session:
        run = queries.get_run(session, SCOPE, run_id)
        assert run is not None
        return queries.public_state_of(session, run)


def cancel_unstarted(database: Database, run_id: str, key: str, *, now_seconds: float) -> bool:
    with database.transaction() as session:
        return facts.cancel_unstarted_task(session, SCOPE, run_id, key, now=at(now_seconds))


# --- dispositions (2.6) ---------------------------------------------------------------------


def test_cancel_of_an_unknown_run_or_another_workspace_is_not_found(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    assert cancel_run(database, "nope", now=at(1)) is Disposition.NOT_FOUND
    for scope in (OTHER_WORKSPACE, OTHER_TENANT):
        assert cancel_run(database, "run-1", now=at(1), scope=scope) is Disposition.NOT_FOUND
    assert not load_run(database, "run-1").cancel_requested


def test_cancel_of_a_finished_run_is_already_terminal(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", succeeded(), now=at(1))
    assert cancel_run(database, "run-1", now=at(2)) is Disposition.ALREADY_TERMINAL
    run = load_run(database, "run-1")
    assert (run.state, run.cancel_requested) == (RunState.SUCCEEDED, False)


def test_cancel_with_only_running_tasks_flags_the_run_and_is_idempotent(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    version = load_run(database, "run-1").row_version
    with database.transaction() as session:
        disposition, run = facts.cancel_run(session, SCOPE, "run-1", reason="oops", now=at(5))
        assert run is not None
    assert disposition is Disposition.CANCELLED
    run = load_run(database, "run-1")
    assert run.cancel_requested
    assert (run.cancel_reason, run.cancel_requested_at) == ("oops", at(5))
    assert run.row_version == version + 1
    assert run.state == RunState.RUNNING
    assert load_task(database, "run-1", "a").state == TaskState.RUNNING  # T10 leaves RUNNING
    assert public_state(database, "run-1") is PublicRunState.CANCELLING
    assert cancel_run(database, "run-1", now=at(6)) is Disposition.ALREADY_REQUESTED
    assert load_run(database, "run-1").cancel_requested_at == at(5)
    # once the run has finished, a repeat is still "already requested" (2.6)
    assert complete(database, "run-1", "a", cancelled(), now=at(7))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(7))
    assert cancel_run(database, "run-1", now=at(8)) is Disposition.ALREADY_REQUESTED


# --- T10 scenarios --------------------------------------------------------------------------


def test_scenario_34_cancel_with_a_ready_and_blocked_tasks_cancels_all(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c", "b")])
    assert cancel_run(database, "run-1", now=at(5)) is Disposition.CANCELLED
    assert task_states(database, "run-1") == {
        "a": TaskState.CANCELLED,
        "b": TaskState.CANCELLED,
        "c": TaskState.CANCELLED,
    }
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(5))
    assert counters(run) == {
        "total": 3,
        "completed": 3,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 3,
    }
    for key in "abc":
        assert load_task(database, "run-1", key).completed_at is None
        (event,) = task_events(database, "run-1", key, "cancelled")
        assert event.to_state == "CANCELLED"
    # T10 writes no edge resolution
    assert all(edge.resolution is None for edge in dependency_edges(database, "run-1").values())
    assert public_state(database, "run-1") is PublicRunState.CANCELLED


def test_scenario_35_cancel_with_a_running_task_leaves_it_running(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    run_task(database, "run-1", "a", now=at(0))
    assert cancel_run(database, "run-1", now=at(5)) is Disposition.CANCELLED
    assert task_states(database, "run-1") == {"a": TaskState.RUNNING, "b": TaskState.CANCELLED}
    run = load_run(database, "run-1")
    assert run.state == RunState.RUNNING
    assert (run.tasks_completed, run.tasks_cancelled) == (1, 1)
    assert public_state(database, "run-1") is PublicRunState.CANCELLING
    # the worker obeys shouldCancel
    assert complete(database, "run-1", "a", cancelled(), now=at(9))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(9))
    assert (run.tasks_completed, run.tasks_cancelled) == (2, 2)


def test_scenario_35_running_task_that_then_succeeds_still_ends_run_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    run_task(database, "run-1", "a", now=at(0))
    cancel_run(database, "run-1", now=at(5))
    assert complete(database, "run-1", "a", succeeded(), now=at(9))
    assert load_task(database, "run-1", "b").state == TaskState.CANCELLED
    run = load_run(database, "run-1")
    assert run.state == RunState.CANCELLED
    assert (run.tasks_succeeded, run.tasks_cancelled) == (1, 1)


def test_scenario_36_cancel_after_a_success_cancels_the_ready_rest(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    finish(database, "run-1", "a", succeeded(), now=at(1))
    assert load_task(database, "run-1", "b").state == TaskState.READY
    assert cancel_run(database, "run-1", now=at(5)) is Disposition.CANCELLED
    assert task_states(database, "run-1") == {"a": TaskState.SUCCEEDED, "b": TaskState.CANCELLED}
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(5))
    assert (run.tasks_succeeded, run.tasks_cancelled, run.tasks_completed) == (1, 1, 2)


def test_cancel_drops_the_outbox_rows_of_unstarted_attempts(database: Database) -> None:
    trigger(database, "run-1", [planned("pending"), planned("created"), planned("retrying")])
    dispatch(database, "run-1", "pending", now=at(0))
    created = dispatch(database, "run-1", "created", now=at(0))
    assert enqueue(database, created.dispatch_id, now=at(1))
    finish(database, "run-1", "retrying", failed(), now=at(2))
    assert [row.status for row in outbox_rows(database, "run-1")] == [
        OutboxStatus.CREATED,
        OutboxStatus.PENDING,
    ]
    cancel_run(database, "run-1", now=at(5))
    assert outbox_rows(database, "run-1") == []
    retrying = load_task(database, "run-1", "retrying")
    assert (retrying.state, retrying.retry_not_before) == (TaskState.CANCELLED, None)
    assert load_run(database, "run-1").state == RunState.CANCELLED


# --- design D7 ------------------------------------------------------------------------------


def test_d7_retryable_failure_in_a_cancel_requested_run_ends_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    cancel_run(database, "run-1", now=at(5))
    assert complete(database, "run-1", "a", failed(retryable=True, message="flaky"), now=at(9))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.completed_at, task.retry_not_before) == (
        TaskState.CANCELLED,
        at(9),
        None,
    )
    assert task.error_message == "flaky"
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at, run.tasks_cancelled) == (RunState.CANCELLED, at(9), 1)
    (event,) = task_events(database, "run-1", "a", "completed")
    assert (event.from_state, event.to_state) == ("RUNNING", "CANCELLED")


def test_d7_retryable_failure_in_a_cancel_requested_run_cascades_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    run_task(database, "run-1", "a", now=at(0))
    set_cancel_requested(database, "run-1")  # b is still BLOCKED
    assert complete(database, "run-1", "a", failed(retryable=True), now=at(9))
    assert task_states(database, "run-1") == {"a": TaskState.CANCELLED, "b": TaskState.CANCELLED}
    assert dependency_edges(database, "run-1")[("a", "b")].resolution == "CANCELLED"
    assert load_run(database, "run-1").state == RunState.CANCELLED


def test_d7_non_retryable_failure_in_a_cancel_requested_run_is_failed(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a", max_attempts=1)])
    run_task(database, "run-1", "a", now=at(0))
    cancel_run(database, "run-1", now=at(5))
    # retryable, but no attempt left: a plain failure
    assert complete(database, "run-1", "a", failed(retryable=True), now=at(9))
    assert load_task(database, "run-1", "a").state == TaskState.FAILED
    run = load_run(database, "run-1")
    assert (run.state, run.tasks_failed, run.tasks_cancelled) == (RunState.FAILED, 1, 0)


def test_cancel_requested_run_whose_only_task_succeeds_ends_succeeded(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    cancel_run(database, "run-1", now=at(5))
    assert complete(database, "run-1", "a", succeeded(), now=at(9))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at, run.cancel_requested) == (RunState.SUCCEEDED, at(9), True)
    assert public_state(database, "run-1") is PublicRunState.SUCCEEDED


def test_d7_task_becoming_ready_in_a_cancel_requested_run_is_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    run_task(database, "run-1", "a", now=at(0))
    set_cancel_requested(database, "run-1")
    assert complete(database, "run-1", "a", succeeded(), now=at(9))
    b = load_task(database, "run-1", "b")
    assert (b.state, b.ready_at, b.deps_satisfied_count) == (TaskState.CANCELLED, None, 1)
    assert task_events(database, "run-1", "b", "ready") == []
    (event,) = task_events(database, "run-1", "b", "cancelled")
    assert event.from_state == "BLOCKED"
    run = load_run(database, "run-1")
    assert (run.state, run.tasks_succeeded, run.tasks_cancelled) == (RunState.CANCELLED, 1, 1)


def test_d7_request_dispatch_in_a_cancel_requested_run_cancels_the_ready_task(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    run_task(database, "run-1", "b", now=at(0))
    set_cancel_requested(database, "run-1")
    assert request(database, "run-1", "a", now=at(5)) is None
    a = load_task(database, "run-1", "a")
    assert (a.state, a.attempt) == (TaskState.CANCELLED, 0)
    assert outbox_rows(database, "run-1") == []
    run = load_run(database, "run-1")
    assert (run.state, run.tasks_cancelled) == (RunState.RUNNING, 1)
    # the last task finishing ends the run
    assert complete(database, "run-1", "b", succeeded(), now=at(6))
    assert load_run(database, "run-1").state == RunState.CANCELLED


def test_d7_request_dispatch_in_a_cancel_requested_run_cancels_a_retry(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(), now=at(0))
    set_cancel_requested(database, "run-1")
    assert request(database, "run-1", "a", now=at(40)) is None
    a = load_task(database, "run-1", "a")
    assert (a.state, a.attempt, a.retry_not_before) == (TaskState.CANCELLED, 1, None)
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(40))


@pytest.mark.parametrize("state", [TaskState.READY, TaskState.DISPATCHED, TaskState.RETRY_WAIT])
def test_d7_cancel_unstarted_task_cancels_it(database: Database, state: TaskState) -> None:
    trigger(database, "run-1", [planned("a")])
    if state is not TaskState.READY:
        dispatch(database, "run-1", "a", now=at(0))
    if state is TaskState.RETRY_WAIT:
        assert complete(database, "run-1", "a", failed(), now=at(1))
    assert load_task(database, "run-1", "a").state == state
    set_cancel_requested(database, "run-1")
    assert cancel_unstarted(database, "run-1", "a", now_seconds=30)
    task = load_task(database, "run-1", "a")
    assert (task.state, task.completed_at) == (TaskState.CANCELLED, None)
    assert outbox_rows(database, "run-1") == []
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at, run.tasks_cancelled) == (RunState.CANCELLED, at(30), 1)
    assert not cancel_unstarted(database, "run-1", "a", now_seconds=31)


def test_d7_cancel_unstarted_task_leaves_other_tasks_alone(database: Database) -> None:
    trigger(database, "run-1", [planned("ready"), planned("running"), planned("done")])
    run_task(database, "run-1", "running", now=at(0))
    finish(database, "run-1", "done", succeeded(), now=at(0))
    # not cancel-requested: nothing to do
    assert not cancel_unstarted(database, "run-1", "ready", now_seconds=1)
    set_cancel_requested(database, "run-1")
    assert not cancel_unstarted(database, "run-1", "running", now_seconds=2)
    assert not cancel_unstarted(database, "run-1", "done", now_seconds=2)
    assert not cancel_unstarted(database, "run-1", "missing", now_seconds=2)
    assert not cancel_unstarted(database, "run-2", "ready", now_seconds=2)
    assert task_states(database, "run-1") == {
        "ready": TaskState.READY,
        "running": TaskState.RUNNING,
        "done": TaskState.SUCCEEDED,
    }
    assert load_run(database, "run-1").tasks_cancelled == 0
