"""Concurrent writers on PostgreSQL (design D2, section 4 of design.md): the run lock and the
unique idempotency keys make a fact apply once however many processes race to apply it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
import pytest

from arco_envelope import TaskCompletedRequest, TaskStartedRequest, callback_task_id
from arco_orchestration import callbacks, facts
from arco_orchestration.db import Database
from arco_orchestration.states import RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    counters,
    dispatch,
    failed,
    load_run,
    load_task,
    outbox_rows,
    planned,
    run_task,
    task_events,
    trigger,
)
from arco_testkit.values import SCOPE

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

THREADS = 8
Result = TypeVar("Result")


def race(work: Callable[[int], Result], threads: int = THREADS) -> list[Result]:
    """Run ``work(i)`` on ``threads`` threads released together; each opens its own session."""
    barrier = threading.Barrier(threads)

    def run(index: int) -> Result:
        barrier.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(run, index) for index in range(threads)]
        return [future.result(timeout=60) for future in futures]


def test_database_is_postgres(database: Database) -> None:
    assert database.engine.dialect.name == "postgresql"


def test_ready_work_wakes_listening_dispatchers_at_commit(database: Database) -> None:
    """Design D4: a fact that makes work ready notifies ``arco_dispatch`` with the run id."""
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {facts.NOTIFY_CHANNEL}")
        trigger(database, "run-0", [])  # nothing ready: no notification
        trigger(database, "run-1", [planned("a")])
        (note,) = listener.notifies(timeout=10, stop_after=1)
        assert (note.channel, note.payload) == ("arco_dispatch", "run-1")
        dispatch(database, "run-1", "a", now=at(1))
        (note,) = listener.notifies(timeout=10, stop_after=1)
        assert note.payload == "run-1"


def test_dispatches_queued_at_once_wake_no_dispatcher(database: Database) -> None:
    """Rows a push-delivery provider queues in the requesting transaction are no work for a
    dispatcher cycle: no NOTIFY (it would only wake the requesting dispatcher once more).
    PENDING rows still notify."""
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    trigger(database, "run-1", [planned("a")])
    trigger(database, "run-2", [planned("a")])

    def queue(row: facts.DispatchSnapshot) -> facts.Enqueued:
        return facts.Enqueued(row.dispatch_id, row.run_id, "task-name", ["dispatchId"])

    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {facts.NOTIFY_CHANNEL}")
        with database.transaction() as session:
            (queued,) = facts.request_dispatches(
                session, SCOPE, [("run-1", "a")], now=at(1), queue=queue
            )
        with database.transaction() as session:
            (pending,) = facts.request_dispatches(session, SCOPE, [("run-2", "a")], now=at(1))
        assert queued is not None
        assert pending is not None
        # Notifications arrive in commit order: run-1 would have come first.
        (note,) = listener.notifies(timeout=10, stop_after=1)
        assert note.payload == "run-2"


def test_concurrent_identical_completions_apply_once(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    run_task(database, "run-1", "a", now=at(0))
    task = load_task(database, "run-1", "a")
    body = TaskCompletedRequest.from_dict(
        {
            "attempt": task.attempt,
            "attemptId": task.attempt_id,
            "workerId": "w-1",
            "outcome": "SUCCEEDED",
        }
    )
    path = callback_task_id("run-1", "a")

    def work(index: int) -> tuple[int, bool, str | None]:
        with database.transaction() as session:
            result = callbacks.handle_completed(
                session, SCOPE, path, None, body, now=at(10 + index)
            )
            return result.status, result.applied, result.body.get("error")

    results = race(work)
    applied = [result for result in results if result[1]]
    assert len(applied) == 1
    assert applied[0][0] == 200
    assert sorted(results, key=lambda r: r[0])[1:] == [(409, False, "task_already_terminal")] * (
        THREADS - 1
    )
    run = load_run(database, "run-1")
    assert counters(run) == {
        "total": 2,
        "completed": 1,
        "succeeded": 1,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    }
    assert run.state == RunState.RUNNING
    b = load_task(database, "run-1", "b")
    assert (b.state, b.deps_satisfied_count) == (TaskState.READY, 1)
    assert len(task_events(database, "run-1", "a", "completed")) == 1
    assert len(task_events(database, "run-1", "b", "ready")) == 1


def test_concurrent_retryable_failures_under_the_run_lock_apply_once(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))

    def work(index: int) -> bool:
        with database.transaction() as session:
            run = facts.lock_run(session, SCOPE, "run-1")
            task = facts.get_task(session, SCOPE, "run-1", "a")
            assert run is not None
            assert task is not None
            completion = failed(message=f"failure {index}")
            return facts.apply_completion(session, run, task, completion, now=at(10))

    results = race(work)
    assert results.count(True) == 1
    task = load_task(database, "run-1", "a")
    assert (task.state, task.retry_not_before) == (TaskState.RETRY_WAIT, at(40))
    (event,) = task_events(database, "run-1", "a", "completed")
    assert event.detail is not None
    assert task.error_message == event.detail["errorMessage"]
    assert load_run(database, "run-1").tasks_completed == 0


def test_concurrent_started_callbacks_apply_once(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    task = load_task(database, "run-1", "a")
    body = TaskStartedRequest.from_dict(
        {"attempt": task.attempt, "attemptId": task.attempt_id, "workerId": "w-1"}
    )
    path = callback_task_id("run-1", "a")

    def work(index: int) -> tuple[int, bool]:
        with database.transaction() as session:
            result = callbacks.handle_started(session, SCOPE, path, None, body, now=at(1 + index))
            return result.status, result.applied

    results = race(work)
    assert sorted(results) == [(200, False)] * (THREADS - 1) + [(200, True)]
    assert len(task_events(database, "run-1", "a", "started")) == 1
    assert outbox_rows(database, "run-1") == []
    assert load_task(database, "run-1", "a").state == TaskState.RUNNING


@pytest.mark.parametrize("threads", [2, THREADS])
def test_concurrent_dispatch_requests_write_one_outbox_row(
    database: Database, threads: int
) -> None:
    trigger(database, "run-1", [planned("a")])

    def work(index: int) -> facts.DispatchRequest | None:
        with database.transaction() as session:
            return facts.request_dispatch(session, SCOPE, "run-1", "a", now=at(index))

    results = race(work, threads)
    requested = [result for result in results if result is not None]
    assert len(requested) == 1
    (row,) = outbox_rows(database, "run-1")
    assert (row.dispatch_id, row.attempt_id) == (requested[0].dispatch_id, requested[0].attempt_id)
    assert len(task_events(database, "run-1", "a", "dispatch_requested")) == 1
    task = load_task(database, "run-1", "a")
    assert (task.state, task.attempt) == (TaskState.DISPATCHED, 1)


def test_concurrent_run_key_reservations_collapse_to_one(database: Database) -> None:
    def work(index: int) -> facts.RunKeyReservation:
        with database.transaction() as session:
            return facts.reserve_run_key(
                session,
                SCOPE,
                run_key="nightly",
                run_id=f"run-{index}",
                plan_id=f"plan-{index}",
                fingerprint=f"{index:064d}",
                now=at(index),
            )

    results = race(work)
    assert sum(result.created for result in results) == 1
    winner = next(result for result in results if result.created)
    assert {(result.run_id, result.plan_id) for result in results} == {
        (winner.run_id, winner.plan_id)
    }
