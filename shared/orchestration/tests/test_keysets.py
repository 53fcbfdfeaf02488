"""Queries over many keys (runs to lock, task rows, a batch's existing dispatches) send the
same statement text whatever the number of keys on PostgreSQL, so the driver parses it once
and the server can prepare it; and they find exactly the rows asked for, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from arco_orchestration.db import Database
from arco_orchestration.facts import get_tasks, lock_runs, request_dispatches
from arco_testkit.clock import T0
from arco_testkit.facts import planned, trigger
from arco_testkit.values import SCOPE


@contextmanager
def sent(database: Database) -> Iterator[list[str]]:
    texts: list[str] = []

    def record(*args: Any) -> None:
        texts.append(str(args[2]))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield texts
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def test_many_key_lookups_find_exactly_the_keys_asked_for(database: Database) -> None:
    trigger(database, "run1", [planned("a"), planned("b")])
    trigger(database, "run2", [planned("a")])
    with database.transaction() as session:
        runs = lock_runs(session, SCOPE, ["run2", "nope", "run1", "run2"])
        assert sorted(runs) == ["run1", "run2"]
        assert list(runs) == ["run1", "run2"]  # locked in run_id order
        tasks = get_tasks(session, SCOPE, [("run2", "a"), ("run1", "b"), ("run2", "b")])
        assert sorted(tasks) == [("run1", "b"), ("run2", "a")]
        assert get_tasks(session, SCOPE, [("run1", "a")]).keys() == {("run1", "a")}


def test_a_batch_sends_the_same_statements_whatever_its_size(database: Database) -> None:
    """(Batches of one row differ: a one-row insert also returns the event's id.)"""
    trigger(database, "run1", [planned(key) for key in "abcde"])
    trigger(database, "run2", [planned("a")])
    with sent(database) as first, database.transaction() as session:
        request_dispatches(session, SCOPE, [("run1", "a"), ("run1", "b")], now=T0)
    refs = [("run1", "c"), ("run1", "d"), ("run2", "a"), ("run1", "e")]
    with sent(database) as second, database.transaction() as session:
        results = request_dispatches(session, SCOPE, refs, now=T0)
    assert all(results)
    if database.engine.dialect.name == "postgresql":
        assert second == first
    else:  # SQLite renders its expanding IN for each length, as before
        assert len(second) == len(first)
