"""What one worker callback sends to the database: each statement is a round trip inside the
run lock, so the counts are part of the callbacks' cost (docs/performance.md, "What limits
callbacks"). Also the paths that skip a statement: the keyed event inserted once with its
final values, no edge query for a one-task run, no outbox delete for a RUNNING task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from arco_envelope import TaskCompletedRequest, TaskStartedRequest, callback_task_id
from arco_orchestration import callbacks
from arco_orchestration.callbacks import CallbackResult
from arco_orchestration.db import Database
from arco_orchestration.facts import EventKind, get_task, insert_keyed, keyed_event_fields
from arco_orchestration.states import RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    counters,
    dependency_edges,
    dispatch,
    failed,
    finish,
    load_run,
    load_task,
    outbox_rows,
    planned,
    run_task,
    succeeded,
    task_events,
    task_states,
    trigger,
)
from arco_testkit.values import SCOPE

Result = TypeVar("Result")


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The statements sent while the block runs (first word of each, upper case; NOTIFY for
    ``pg_notify``), without SQLite's ``BEGIN IMMEDIATE`` (PostgreSQL's BEGIN is no statement
    of its own here)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        statement = str(args[2])
        verb = "NOTIFY" if "pg_notify" in statement else statement.split(None, 1)[0].upper()
        if verb != "BEGIN":
            sent.append(verb)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def counted(database: Database, work: Callable[[Session], Result]) -> tuple[Result, list[str]]:
    with statements(database) as sent, database.transaction() as session:
        result = work(session)
    return result, sent


def _postgres(database: Database) -> bool:
    return database.engine.dialect.name == "postgresql"


def started_body(database: Database, run_id: str, key: str) -> TaskStartedRequest:
    task = load_task(database, run_id, key)
    return TaskStartedRequest.from_dict(
        {"attempt": task.attempt, "attemptId": task.attempt_id, "workerId": "w-1"}
    )


def completed_body(
    database: Database, run_id: str, key: str, outcome: str = "SUCCEEDED", **extra: Any
) -> TaskCompletedRequest:
    task = load_task(database, run_id, key)
    return TaskCompletedRequest.from_dict(
        {
            "attempt": task.attempt,
            "attemptId": task.attempt_id,
            "workerId": "w-1",
            "outcome": outcome,
            **extra,
        }
    )


def started(database: Database, run_id: str, key: str, body: TaskStartedRequest) -> Any:
    path = callback_task_id(run_id, key)
    return counted(
        database,
        lambda session: callbacks.handle_started(session, SCOPE, path, None, body, now=at(5)),
    )


def completed(
    database: Database, run_id: str, key: str, body: TaskCompletedRequest
) -> tuple[CallbackResult, list[str]]:
    path = callback_task_id(run_id, key)
    return counted(
        database,
        lambda session: callbacks.handle_completed(session, SCOPE, path, None, body, now=at(10)),
    )


def test_started_writes_with_its_keyed_event_and_a_repeat_writes_nothing(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    body = started_body(database, "run-1", "a")

    result, sent = started(database, "run-1", "a", body)
    assert (result.status, result.applied) == (200, True)
    # Run and task in one locked read, then the keyed event, the task row and the consumed
    # outbox row (one statement on PostgreSQL: the event's INSERT and the DELETE ride on the
    # UPDATE as CTEs, which write only if the event's key was new).
    writes = ["WITH"] if _postgres(database) else ["INSERT", "UPDATE", "DELETE"]
    assert sent == ["SELECT", *writes]
    (started_event,) = task_events(database, "run-1", "a", "started")
    assert (started_event.from_state, started_event.to_state) == ("DISPATCHED", "RUNNING")
    assert started_event.detail == {"workerId": "w-1"}
    assert outbox_rows(database, "run-1") == []
    before = load_task(database, "run-1", "a")

    again, sent = started(database, "run-1", "a", body)
    assert (again.status, again.applied) == (200, False)
    # The insert finds the key taken and nothing is written.
    assert sent == ["SELECT", "WITH" if _postgres(database) else "INSERT"]
    after = load_task(database, "run-1", "a")
    assert (after.row_version, after.started_at) == (before.row_version, before.started_at)
    assert len(task_events(database, "run-1", "a")) == 2  # dispatch_requested, started


def test_completed_of_a_one_task_run_writes_with_its_keyed_event(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    body = completed_body(database, "run-1", "a", output={"rowCount": 3}, metrics={"cpuTimeMs": 7})

    result, sent = completed(database, "run-1", "a", body)
    assert (result.status, result.applied) == (200, True)
    # No edge query (one task), no outbox delete (RUNNING), each row written once, all with
    # the keyed event in one statement on PostgreSQL (the event and run as CTEs).
    writes = ["WITH"] if _postgres(database) else ["INSERT", "UPDATE", "UPDATE"]
    assert sent == ["SELECT", *writes]
    task = load_task(database, "run-1", "a")
    assert (task.state, task.completed_at, task.heartbeat_deadline) == (
        TaskState.SUCCEEDED,
        at(10),
        None,
    )
    assert (task.output, task.metrics) == ({"rowCount": 3}, {"cpuTimeMs": 7})
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.SUCCEEDED, at(10))
    assert counters(run)["succeeded"] == 1
    (done,) = task_events(database, "run-1", "a", "completed")
    assert (done.from_state, done.to_state) == ("RUNNING", "SUCCEEDED")
    assert done.detail == {"outcome": "SUCCEEDED", "workerId": "w-1", "metrics": {"cpuTimeMs": 7}}

    again, sent = completed(database, "run-1", "a", body)
    assert (again.status, again.body["error"]) == (409, "task_already_terminal")
    assert sent == ["SELECT"]


def test_a_repeated_retryable_failure_writes_nothing(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    body = completed_body(
        database, "run-1", "a", "FAILED", error={"category": "USER_CODE", "message": "boom"}
    )

    result, _ = completed(database, "run-1", "a", body)
    assert (result.status, result.applied) == (200, True)
    task = load_task(database, "run-1", "a")
    assert (task.state, task.retry_not_before) == (TaskState.RETRY_WAIT, at(40))
    (event_row,) = task_events(database, "run-1", "a", "completed")
    assert event_row.to_state == TaskState.RETRY_WAIT
    assert event_row.detail is not None
    assert event_row.detail["retryNotBefore"] == "2026-01-01T00:00:40Z"

    again, sent = completed(database, "run-1", "a", body)
    assert (again.status, again.applied) == (200, False)
    assert "UPDATE" not in sent
    assert "DELETE" not in sent
    assert load_task(database, "run-1", "a").row_version == task.row_version
    assert len(task_events(database, "run-1", "a", "completed")) == 1
    assert load_run(database, "run-1").tasks_completed == 0


def test_a_completion_without_started_still_drops_the_outbox_row(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    assert len(outbox_rows(database, "run-1")) == 1

    result, sent = completed(database, "run-1", "a", completed_body(database, "run-1", "a"))
    assert (result.status, result.applied) == (200, True)
    assert "DELETE" in sent
    assert outbox_rows(database, "run-1") == []
    (done,) = task_events(database, "run-1", "a", "completed")
    assert (done.from_state, done.to_state) == ("DISPATCHED", "SUCCEEDED")
    assert load_run(database, "run-1").state == RunState.SUCCEEDED


def test_completed_readies_downstream_tasks_from_one_edge_query(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c", "a")])
    run_task(database, "run-1", "a", now=at(0))

    result, sent = completed(database, "run-1", "a", completed_body(database, "run-1", "a"))
    assert (result.status, result.applied) == (200, True)
    # The edges come with their downstream tasks (no SELECT per downstream task), and one
    # NOTIFY (PostgreSQL only) serves both tasks made ready.
    assert sent[:3] == ["SELECT", "INSERT", "SELECT"]
    assert sent.count("SELECT") == 2
    assert sent.count("NOTIFY") == (database.engine.dialect.name == "postgresql")
    assert task_states(database, "run-1") == {"a": "SUCCEEDED", "b": "READY", "c": "READY"}
    edges = dependency_edges(database, "run-1")
    assert {key: edge.resolution for key, edge in edges.items()} == {
        ("a", "b"): "SUCCESS",
        ("a", "c"): "SUCCESS",
    }
    (done,) = task_events(database, "run-1", "a", "completed")
    ready = task_events(database, "run-1", "b", "ready")
    assert len(ready) == 1
    assert ready[0].id > done.id  # the completion is recorded first
    assert counters(load_run(database, "run-1"))["succeeded"] == 1


def test_completed_of_a_task_nothing_depends_on_sends_no_edge_query(database: Database) -> None:
    """The locked read tells whether an edge leaves the task: a leaf of a wide run (or of a
    graph) completes without the edge query, whether it succeeds or fails."""
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c")])
    finish(database, "run-1", "a", succeeded(), now=at(1))
    writes = ["WITH"] if _postgres(database) else ["INSERT", "UPDATE", "UPDATE"]
    for key, outcome in (("b", "SUCCEEDED"), ("c", "FAILED")):
        run_task(database, "run-1", key, now=at(2))
        extra = {"error": {"category": "USER_CODE", "message": "boom", "retryable": False}}
        body = completed_body(database, "run-1", key, outcome, **(extra if key == "c" else {}))
        result, sent = completed(database, "run-1", key, body)
        assert (result.status, result.applied) == (200, True)
        assert sent == ["SELECT", *writes]
    assert task_states(database, "run-1") == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "FAILED"}
    assert load_run(database, "run-1").state == RunState.FAILED


def test_a_failure_skips_a_diamond_once_per_task(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [planned("a"), planned("b", "a"), planned("c", "a"), planned("d", "b", "c")],
    )
    finish(database, "run-1", "a", failed(retryable=False), now=at(0))

    assert task_states(database, "run-1") == {
        "a": "FAILED",
        "b": "SKIPPED",
        "c": "SKIPPED",
        "d": "SKIPPED",
    }
    assert len(task_events(database, "run-1", "d", "skipped")) == 1
    run = load_run(database, "run-1")
    assert run.state == RunState.FAILED
    assert counters(run) == {
        "total": 4,
        "completed": 4,
        "succeeded": 0,
        "failed": 1,
        "skipped": 3,
        "cancelled": 0,
    }
    resolutions = {key: e.resolution for key, e in dependency_edges(database, "run-1").items()}
    assert resolutions == {
        ("a", "b"): "FAILED",
        ("a", "c"): "FAILED",
        ("b", "d"): "SKIPPED",
        ("c", "d"): "SKIPPED",
    }


def test_a_completion_whose_key_is_taken_writes_nothing(database: Database) -> None:
    """The key of an attempt's completion can be taken while its task still runs (a row
    repaired by hand, a bug): the completion then changes nothing, though its writes go in
    the same statement as its event on PostgreSQL."""
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    body = completed_body(database, "run-1", "a")
    with database.transaction() as session:
        task = get_task(session, SCOPE, "run-1", "a")
        assert task is not None
        assert insert_keyed(
            session,
            keyed_event_fields(
                task,
                EventKind.COMPLETED,
                at(9),
                from_state="RUNNING",
                to_state="SUCCEEDED",
                detail=None,
                idempotency_key=f"finished:run-1:a:{task.attempt}",
            ),
        )
    before = load_task(database, "run-1", "a")

    result, sent = completed(database, "run-1", "a", body)
    assert (result.status, result.applied) == (200, False)
    assert sent == ["SELECT", "WITH" if _postgres(database) else "INSERT"]
    after = load_task(database, "run-1", "a")
    assert (after.state, after.row_version) == (TaskState.RUNNING, before.row_version)
    run = load_run(database, "run-1")
    assert (run.state, counters(run)["completed"]) == (RunState.RUNNING, 0)
