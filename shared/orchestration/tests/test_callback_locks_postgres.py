"""The callbacks' one locked read of run and task (``facts.run_with_task``) on PostgreSQL: it
takes the run lock first, as every fact does, and after waiting for that lock it sees the task
as the previous holder left it; racing completions of a one-task run (no edge query, no
outbox delete) still apply exactly once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from arco_envelope import TaskCompletedRequest, callback_task_id
from arco_orchestration import callbacks, facts
from arco_orchestration.db import Database
from arco_orchestration.states import RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import (
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
                found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=True)
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
    release = threading.Event()

    def start_and_hold() -> None:
        with database.transaction() as session:
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=True)
            assert found is not None
            assert facts.apply_started(session, *found, worker_id="w-1", now=at(1))
            session.flush()
            assert release.wait(timeout=30)

    def read() -> tuple[str, int]:
        with database.transaction() as session:
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=True)
            assert found is not None
            return found[1].state, found[1].row_version

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(start_and_hold)
        time.sleep(0.3)  # the holder takes the run lock first
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
            found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=False)
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
