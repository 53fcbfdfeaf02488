"""The callbacks' one locked read of run and task (``facts.run_with_task``) on PostgreSQL: it
takes the run lock first, as every fact does, and after waiting for that lock it sees the task
as the previous holder left it; racing completions of a one-task run (no edge query, no
outbox delete) still apply exactly once. Starts hold the run row in share mode: the starts of
one run's tasks apply together, and each still orders against a cancel."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from arco_envelope import TaskCompletedRequest, TaskStartedRequest, callback_task_id
from arco_orchestration import callbacks, facts
from arco_orchestration.db import Database
from arco_orchestration.states import RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
    cancel_run,
    counters,
    dispatch,
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


def psycopg_url(database: Database) -> str:
    return database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def wait_until_blocked(future: Future[Any], database: Database, seconds: float = 10) -> None:
    """Until some backend of this database waits for a row lock (the future's query)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(psycopg_url(database), autocommit=True) as probe:
        while time.monotonic() < deadline:
            assert not future.done(), "the locked read did not wait"
            row = probe.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] > 0:
                return
            time.sleep(0.02)
    raise AssertionError("the locked read never waited for a lock")


def test_the_run_row_is_locked_before_the_task_row(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    url = psycopg_url(database)
    with ThreadPoolExecutor(max_workers=1) as pool, psycopg.connect(url) as holder:
        # A heartbeat's lock: the task row only.
        holder.execute("SELECT 1 FROM tasks WHERE run_id = 'run-1' FOR UPDATE")

        def read() -> str:
            with database.transaction() as session:
                found = facts.run_with_task(
                    session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE
                )
                assert found is not None
                return found[1].state

        future: Future[str] = pool.submit(read)
        wait_until_blocked(future, database)
        # While it waits for the task row, the reader already holds the run row.
        with psycopg.connect(url) as third, pytest.raises(psycopg.errors.LockNotAvailable):
            third.execute("SELECT 1 FROM runs WHERE run_id = 'run-1' FOR UPDATE NOWAIT")
        holder.rollback()
        assert future.result(timeout=30) == TaskState.READY


def test_after_waiting_for_the_run_lock_the_task_is_read_fresh(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    held, release = threading.Event(), threading.Event()

    def start_and_hold() -> None:
        with database.transaction() as session:
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
            assert found is not None
            held.set()
            assert facts.apply_started(session, *found, worker_id="w-1", now=at(1))
            session.flush()
            assert release.wait(timeout=30)

    def read() -> tuple[str, int]:
        with database.transaction() as session:
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
            assert found is not None
            return found[1].state, found[1].row_version

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(start_and_hold)
        assert held.wait(timeout=30), "the holder took the run lock first"
        reader: Future[tuple[str, int]] = pool.submit(read)
        wait_until_blocked(reader, database)
        release.set()
        holder.result(timeout=30)
        state, version = reader.result(timeout=30)
    task = load_task(database, "run-1", "a")
    assert (state, version) == (TaskState.RUNNING, task.row_version)


def test_a_heartbeat_reads_run_and_task_without_locks(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    with psycopg.connect(psycopg_url(database)) as holder:
        holder.execute("SELECT 1 FROM runs WHERE run_id = 'run-1' FOR UPDATE")
        with database.transaction() as session:
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.NONE)
        assert found is not None
        assert found[1].state == TaskState.RUNNING
        holder.rollback()


def test_racing_completions_of_a_one_task_run_apply_once(database: Database) -> None:
    trigger(database, "run-1", [planned("a", max_attempts=1)])
    run_task(database, "run-1", "a", now=at(0))
    task = load_task(database, "run-1", "a")
    path = callback_task_id("run-1", "a")
    bodies = [
        TaskCompletedRequest.from_dict(
            {
                "attempt": task.attempt,
                "attemptId": task.attempt_id,
                "workerId": f"w-{index}",
                "outcome": "SUCCEEDED" if index % 2 else "FAILED",
            }
        )
        for index in range(THREADS)
    ]
    barrier = threading.Barrier(THREADS)

    def work(index: int) -> tuple[int, bool, str]:
        barrier.wait(timeout=30)
        with database.transaction() as session:
            result = callbacks.handle_completed(
                session, SCOPE, path, None, bodies[index], now=at(10 + index)
            )
        return result.status, result.applied, bodies[index].outcome.value

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))

    applied = [result for result in results if result[1]]
    assert len(applied) == 1
    assert applied[0][0] == 200
    assert sorted(r[0] for r in results if not r[1]) == [409] * (THREADS - 1)
    winner = applied[0][2]
    final = load_task(database, "run-1", "a")
    assert final.state == winner
    (done,) = task_events(database, "run-1", "a", "completed")
    assert (done.from_state, done.to_state) == ("RUNNING", winner)
    run = load_run(database, "run-1")
    assert run.state == (RunState.SUCCEEDED if winner == "SUCCEEDED" else RunState.FAILED)
    assert counters(run)["completed"] == 1
    assert outbox_rows(database, "run-1") == []


def started_body(database: Database, run_id: str, key: str, worker_id: str) -> TaskStartedRequest:
    task = load_task(database, run_id, key)
    return TaskStartedRequest.from_dict(
        {"attempt": task.attempt, "attemptId": task.attempt_id, "workerId": worker_id}
    )


def report_started(
    database: Database, key: str, body: TaskStartedRequest, *, hold: threading.Event | None = None
) -> callbacks.CallbackResult:
    """``/started`` of ``run-1``'s task ``key``; with ``hold``, the transaction stays open
    (its locks held) until the event is set."""
    with database.transaction() as session:
        result = callbacks.handle_started(
            session, SCOPE, callback_task_id("run-1", key), None, body, now=at(5)
        )
        session.flush()
        if hold is not None:
            assert hold.wait(timeout=30)
        return result


def test_starts_of_one_runs_tasks_apply_together(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    for key in ("a", "b"):
        dispatch(database, "run-1", key, now=at(0))
    bodies = {key: started_body(database, "run-1", key, "w-1") for key in ("a", "b")}
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(report_started, database, "a", bodies["a"], hold=release)
        try:
            # a's start is open and holds the run row: b's start does not wait for it...
            wait_for_share_holder(database)
            other = pool.submit(report_started, database, "b", bodies["b"])
            assert other.result(timeout=10).applied
            # ...but a fact that changes the run (a completion, a cancel) does.
            with (
                psycopg.connect(psycopg_url(database)) as third,
                pytest.raises(psycopg.errors.LockNotAvailable),
            ):
                third.execute("SELECT 1 FROM runs WHERE run_id = 'run-1' FOR UPDATE NOWAIT")
        finally:
            release.set()
        assert holder.result(timeout=30).applied
    assert task_states_of(database, "a", "b") == [TaskState.RUNNING, TaskState.RUNNING]


def wait_for_share_holder(database: Database, seconds: float = 10) -> None:
    """Until some transaction holds a row lock on ``run-1``'s run row (pgrowlocks is not
    installed: a NOWAIT lock attempt that fails tells the same)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(psycopg_url(database), autocommit=True) as probe:
        while time.monotonic() < deadline:
            try:
                probe.execute("SELECT 1 FROM runs WHERE run_id = 'run-1' FOR UPDATE NOWAIT")
            except psycopg.errors.LockNotAvailable:
                return
            time.sleep(0.02)
    raise AssertionError("no transaction ever held the run row")


def task_states_of(database: Database, *keys: str) -> list[str]:
    return [load_task(database, "run-1", key).state for key in keys]


def test_a_start_waiting_behind_a_cancel_sees_the_cancelled_task(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    body = started_body(database, "run-1", "a", "w-1")
    release = threading.Event()

    def cancel_and_hold() -> facts.CancelDisposition:
        with database.transaction() as session:
            disposition, _ = facts.cancel_run(session, SCOPE, "run-1", reason="stop", now=at(1))
            session.flush()
            assert release.wait(timeout=30)
            return disposition

    with ThreadPoolExecutor(max_workers=2) as pool:
        canceller = pool.submit(cancel_and_hold)
        wait_for_share_holder(database)
        starter = pool.submit(report_started, database, "a", body)
        try:
            wait_until_blocked(starter, database)
        finally:
            release.set()
        canceller.result(timeout=30)
        result = starter.result(timeout=30)
    assert (result.status, result.applied) == (409, False)
    assert result.body["state"] == TaskState.CANCELLED
    assert load_task(database, "run-1", "a").state == TaskState.CANCELLED
    assert task_events(database, "run-1", "a", "started") == []


def test_a_cancel_waits_for_an_open_start(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    for key in ("a", "b"):
        dispatch(database, "run-1", key, now=at(0))
    body = started_body(database, "run-1", "a", "w-1")
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        starter = pool.submit(report_started, database, "a", body, hold=release)
        wait_for_share_holder(database)
        canceller: Future[facts.CancelDisposition] = pool.submit(
            cancel_run, database, "run-1", now=at(6)
        )
        try:
            wait_until_blocked(canceller, database)
        finally:
            release.set()
        assert starter.result(timeout=30).applied
        canceller.result(timeout=30)
    # The cancel saw a started: it left it RUNNING (told through heartbeats), cancelled b.
    assert task_states_of(database, "a", "b") == [TaskState.RUNNING, TaskState.CANCELLED]
    assert load_run(database, "run-1").cancel_requested


def test_racing_starts_of_one_task_apply_once(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    bodies = [started_body(database, "run-1", "a", f"w-{index}") for index in range(THREADS)]
    barrier = threading.Barrier(THREADS)

    def work(index: int) -> tuple[int, bool]:
        barrier.wait(timeout=30)
        result = report_started(database, "a", bodies[index])
        return result.status, result.applied

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))
    # One applies; the repeats of the same attempt are no-ops answered 200 (section 5.5),
    # and none deadlocks on the shared run lock.
    assert sorted(applied for _, applied in results) == [False] * (THREADS - 1) + [True]
    assert {status for status, _ in results} == {200}
    assert len(task_events(database, "run-1", "a", "started")) == 1
    assert load_task(database, "run-1", "a").state == TaskState.RUNNING
