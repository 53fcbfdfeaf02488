"""The callbacks' own writes of their run and task rows (``facts.store.write_row``, Core
``UPDATE`` statements instead of the session's flush) and their partial load of those rows
(``facts.run_with_task`` reads only the columns a callback uses): the stored rows must be
what the flush would have stored, and the objects must stay usable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from arco_envelope import TaskCompletedRequest, callback_task_id
from arco_orchestration import callbacks, facts
from arco_orchestration.db import Database
from arco_orchestration.facts.store import (
    EventKind,
    drop_outbox,
    insert_keyed,
    keyed_event_fields,
    new_outbox_row,
    write_keyed,
    write_row,
    write_rows,
)
from arco_orchestration.facts.transitions import TaskTransition, transition
from arco_orchestration.models import Run, Task
from arco_testkit.clock import at
from arco_testkit.facts import (
    dispatch,
    failed,
    finish,
    load_run,
    load_task,
    outbox_rows,
    planned,
    run_task,
    task_events,
    trigger,
)
from arco_testkit.values import SCOPE


@contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The first word of each statement sent while the block runs (no BEGIN)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        verb = str(args[2]).split(None, 1)[0].upper()
        if verb != "BEGIN":
            sent.append(verb)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def _locked(session_run_task: tuple[Run, Task] | None) -> tuple[Run, Task]:
    assert session_run_task is not None
    return session_run_task


def test_a_written_row_is_clean_and_stored(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    version = load_task(database, "run-1", "a").row_version
    with statements(database) as sent, database.transaction() as session:
        _, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        transition(task, TaskTransition.START)
        task.started_at = at(1)
        write_row(session, task)
        assert task not in session.dirty
        written = list(sent)
        session.flush()
        assert sent == written  # the flush has nothing left to send for it
        write_row(session, task)  # nothing changed since: no statement
        assert sent == written
    assert written == ["SELECT", "UPDATE"]
    stored = load_task(database, "run-1", "a")
    assert (stored.state, stored.started_at, stored.row_version) == ("RUNNING", at(1), version + 1)


def test_a_value_set_to_what_it_was_is_not_written(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    with statements(database) as sent, database.transaction() as session:
        run, _ = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        run.tasks_completed = run.tasks_completed
        write_row(session, run)
    assert sent == ["SELECT"]


def test_a_new_row_is_left_to_the_flush(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    with database.transaction() as session:
        _locked(facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE))
        task = Task(
            run_id="run-1",
            task_key="b",
            tenant_id=SCOPE.tenant_id,
            workspace_id=SCOPE.workspace_id,
            state="BLOCKED",
        )
        session.add(task)
        write_row(session, task)  # not stored yet: nothing to update
        assert task in session.new
    assert load_task(database, "run-1", "b").state == "BLOCKED"


def test_columns_a_callback_does_not_load_load_when_read(database: Database) -> None:
    trigger(database, "run-1", [planned("a", partition_key="p=1")])
    finish(database, "run-1", "a", failed(message="first"), now=at(0))
    triggered_by = load_run(database, "run-1").triggered_by
    with database.transaction() as session:
        run, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        assert "error_message" not in task.__dict__  # not loaded by the callback's read
        assert task.error_message == "first"
        assert run.triggered_by == triggered_by


def test_a_completion_leaves_json_columns_it_clears_as_sql_null(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    run_task(database, "run-1", "a", now=at(0))
    finish(database, "run-1", "b", failed(), now=at(0))
    run_task(database, "run-1", "b", now=at(60))  # its second attempt
    for key in ("a", "b"):
        task = load_task(database, "run-1", key)
        body = TaskCompletedRequest.from_dict(
            {
                "attempt": task.attempt,
                "attemptId": task.attempt_id,
                "workerId": "w-1",
                "outcome": "SUCCEEDED",
            }
        )
        with database.transaction() as session:
            result = callbacks.handle_completed(
                session, SCOPE, callback_task_id("run-1", key), None, body, now=at(90)
            )
        assert (result.status, result.applied) == (200, True)
    with database.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT task_key, error IS NULL, error_message IS NULL FROM tasks ORDER BY 1")
        ).all()
    # Never set (a) or cleared (b): SQL NULL either way, read back as None.
    assert [tuple(row) for row in rows] == [("a", True, True), ("b", True, True)]
    assert load_task(database, "run-1", "b").error is None


def test_dropping_the_outbox_sends_pending_outbox_rows_first(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    with database.transaction() as session:
        _, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        new_outbox_row(session, task, dispatch_id="d-1", attempt=1, attempt_id="x", now=at(0))
        drop_outbox(session, task)
    assert outbox_rows(database, "run-1") == []


def _writes(database: Database) -> int:
    return 1 if database.engine.dialect.name == "postgresql" else 2


def test_run_and_task_written_together_keep_their_own_values(database: Database) -> None:
    """Both tables have ``state``, ``completed_at`` and ``row_version``: each row must get
    its own value (on PostgreSQL they go in one statement)."""
    trigger(database, "run-1", [planned("a"), planned("b")])
    with statements(database) as sent, database.transaction() as session:
        run, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        run.completed_at, run.row_version = at(7), run.row_version + 10
        task.completed_at, task.row_version = at(9), task.row_version + 20
        task.state = "DISPATCHED"  # a column of both tables that the run leaves unchanged
        run.tasks_completed += 1
        write_rows(session, run, task)
        assert run not in session.dirty
        assert task not in session.dirty
        written = list(sent)
    assert len(written) == 1 + _writes(database)
    stored_run, stored_task = load_run(database, "run-1"), load_task(database, "run-1", "a")
    assert (stored_run.completed_at, stored_run.row_version) == (at(7), run.row_version)
    assert stored_run.tasks_completed == 1
    assert (stored_task.completed_at, stored_task.row_version) == (at(9), task.row_version)
    assert (stored_run.state, stored_task.state) == ("RUNNING", "DISPATCHED")
    assert load_task(database, "run-1", "b").completed_at is None


def test_write_rows_with_one_row_changed_writes_that_row(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    for changed in ("run", "task"):
        with statements(database) as sent, database.transaction() as session:
            run, task = _locked(
                facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
            )
            (run if changed == "run" else task).completed_at = at(3)
            write_rows(session, run, task)
        assert sent == ["SELECT", "UPDATE"]
    assert load_run(database, "run-1").completed_at == at(3)
    assert load_task(database, "run-1", "a").completed_at == at(3)


def _started_event(task: Task) -> dict[str, Any]:
    return keyed_event_fields(
        task,
        EventKind.STARTED,
        at(1),
        from_state=task.state,
        to_state="RUNNING",
        detail={"workerId": "w-1"},
        idempotency_key=f"started:{task.run_id}:{task.task_key}:{task.attempt}",
    )


def test_a_keyed_write_drops_the_consumed_outbox_rows_with_its_event(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    dispatch(database, "run-1", "a", now=at(0))
    dispatch(database, "run-1", "b", now=at(0))
    with statements(database) as sent, database.transaction() as session:
        _, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.SHARED)
        )
        event = _started_event(task)
        transition(task, TaskTransition.START)
        assert write_keyed(session, event, task, drop_outbox_through=task.attempt)
    # PostgreSQL: the read, then event, task and outbox in one statement; SQLite: three.
    postgres = database.engine.dialect.name == "postgresql"
    assert sent == (["SELECT", "WITH"] if postgres else ["SELECT", "INSERT", "UPDATE", "DELETE"])
    assert load_task(database, "run-1", "a").state == "RUNNING"
    assert [row.task_key for row in outbox_rows(database, "run-1")] == ["b"]
    (started,) = task_events(database, "run-1", "a", "started")
    assert (started.from_state, started.to_state, started.detail) == (
        "DISPATCHED",
        "RUNNING",
        {"workerId": "w-1"},
    )


def test_a_keyed_write_of_an_applied_key_writes_nothing(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    with database.transaction() as session:
        run, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        assert insert_keyed(session, _started_event(task))
    before_task = load_task(database, "run-1", "a")
    before_run = load_run(database, "run-1")
    with database.transaction() as session:
        run, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        event = _started_event(task)
        transition(task, TaskTransition.START)
        run.tasks_completed += 1
        assert not write_keyed(session, event, task, run=run, drop_outbox_through=task.attempt)
    # Nothing written, not even by the flush at commit; the keys stay readable afterwards.
    assert (task.run_id, task.task_key) == ("run-1", "a")
    after_task = load_task(database, "run-1", "a")
    assert (after_task.state, after_task.row_version) == (
        before_task.state,
        before_task.row_version,
    )
    assert load_run(database, "run-1").tasks_completed == before_run.tasks_completed
    assert len(outbox_rows(database, "run-1")) == 1
    assert len(task_events(database, "run-1", "a", "started")) == 1


def test_a_keyed_write_refuses_a_session_with_other_changes(database: Database) -> None:
    """A flush would write them before the event, so a repeat would not stop them."""
    trigger(database, "run-1", [planned("a")])
    with database.transaction() as session:
        _, task = _locked(
            facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        )
        event = _started_event(task)
        new_outbox_row(session, task, dispatch_id="d-1", attempt=1, attempt_id="x", now=at(0))
        with pytest.raises(RuntimeError, match="other than run and task"):
            write_keyed(session, event, task, drop_outbox_through=1)
        session.rollback()
    assert outbox_rows(database, "run-1") == []
    assert task_events(database, "run-1", "a", "started") == []
