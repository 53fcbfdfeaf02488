"""The task/run state machine against stored state: states and public mappings, retry backoff,
readiness, skip and cancel cascades, run counters and run completion
(arco-orchestration sections 1 and 4.3; section 8 items 27-32, 33, 40-42 and 44)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SADeprecationWarning

from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.facts import trigger as trigger_facts
from arco_orchestration.models import Run, Task, TaskDependency
from arco_orchestration.states import (
    CANCELLABLE_TASK_STATES,
    TERMINAL_TASK_STATES,
    PublicRunState,
    PublicTaskState,
    RunState,
    TaskState,
    finished_run_state,
    public_run_state,
    public_task_state,
    retry_backoff,
    retry_not_before,
)
from arco_testkit.clock import T0, at
from arco_testkit.facts import (
    cancelled,
    complete,
    counters,
    dependency_edges,
    dispatch,
    failed,
    finish,
    load_run,
    load_task,
    planned,
    run_task,
    start,
    succeeded,
    task_events,
    task_states,
    trigger,
)
from arco_testkit.values import OTHER_WORKSPACE, SCOPE, WORKER


def test_facts_use_no_deprecated_sqlalchemy_api(database: Database) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SADeprecationWarning)
        trigger(database, "run-1", [planned("a")])
        run_task(database, "run-1", "a", now=at(1))
        assert complete(database, "run-1", "a", succeeded(), now=at(2))


# --- pure state rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "public"),
    [
        (TaskState.PLANNED, PublicTaskState.PENDING),
        (TaskState.BLOCKED, PublicTaskState.PENDING),
        (TaskState.RETRY_WAIT, PublicTaskState.PENDING),
        (TaskState.READY, PublicTaskState.QUEUED),
        (TaskState.DISPATCHED, PublicTaskState.QUEUED),
        (TaskState.RUNNING, PublicTaskState.RUNNING),
        (TaskState.SUCCEEDED, PublicTaskState.SUCCEEDED),
        (TaskState.FAILED, PublicTaskState.FAILED),
        (TaskState.SKIPPED, PublicTaskState.SKIPPED),
        (TaskState.CANCELLED, PublicTaskState.CANCELLED),
    ],
)
def test_public_task_state_is_upstream_map_task_state(
    stored: TaskState, public: PublicTaskState
) -> None:
    assert public_task_state(stored) is public


def test_terminal_and_cancellable_task_states() -> None:
    assert {state for state in TaskState if state.is_terminal} == {
        TaskState.SKIPPED,
        TaskState.CANCELLED,
        TaskState.FAILED,
        TaskState.SUCCEEDED,
    }
    assert TERMINAL_TASK_STATES.isdisjoint(CANCELLABLE_TASK_STATES)
    # T10: everything non-terminal except RUNNING.
    assert {
        state for state in TaskState if not state.is_terminal and state is not TaskState.RUNNING
    } == CANCELLABLE_TASK_STATES
    assert {state for state in RunState if state.is_terminal} == {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.CANCELLED,
    }


@pytest.mark.parametrize(
    ("stored", "cancel_requested", "output_failed", "output_pending", "public"),
    [
        # rule 1: cancel requested on a non-terminal run
        (RunState.RUNNING, True, False, False, PublicRunState.CANCELLING),
        (RunState.TRIGGERED, True, False, False, PublicRunState.CANCELLING),
        (RunState.RUNNING, True, True, True, PublicRunState.CANCELLING),
        # rule 2: stored CANCELLED wins over visibility problems
        (RunState.CANCELLED, True, True, False, PublicRunState.CANCELLED),
        (RunState.CANCELLED, False, False, True, PublicRunState.CANCELLED),
        # rule 3: stored FAILED, or a required output whose publication failed
        (RunState.FAILED, True, False, False, PublicRunState.FAILED),
        (RunState.SUCCEEDED, False, True, True, PublicRunState.FAILED),
        (RunState.RUNNING, False, True, False, PublicRunState.FAILED),
        # rule 4: SUCCEEDED with a required output still pending
        (RunState.SUCCEEDED, False, False, True, PublicRunState.RUNNING),
        (RunState.SUCCEEDED, True, False, True, PublicRunState.RUNNING),
        # rule 5
        (RunState.TRIGGERED, False, False, False, PublicRunState.PENDING),
        (RunState.RUNNING, False, False, True, PublicRunState.RUNNING),
        (RunState.SUCCEEDED, False, False, False, PublicRunState.SUCCEEDED),
        (RunState.SUCCEEDED, True, False, False, PublicRunState.SUCCEEDED),
    ],
)
def test_public_run_state_applies_upstream_rules_in_order(
    stored: RunState,
    cancel_requested: bool,
    output_failed: bool,
    output_pending: bool,
    public: PublicRunState,
) -> None:
    assert (
        public_run_state(
            stored,
            cancel_requested=cancel_requested,
            required_output_failed=output_failed,
            required_output_pending=output_pending,
        )
        is public
    )


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 900), (7, 900), (50, 900)],
)
def test_scenario_40_retry_backoff_doubles_from_30s_capped_at_900s(
    attempt: int, seconds: int
) -> None:
    assert retry_backoff(attempt) == timedelta(seconds=seconds)
    assert retry_not_before(T0, attempt) == T0 + timedelta(seconds=seconds)


def test_scenario_42_retry_deadline_overflow_gives_none() -> None:
    near_max = datetime.max.replace(tzinfo=UTC) - timedelta(seconds=10)
    assert retry_not_before(near_max, 1) is None


@pytest.mark.parametrize(
    ("cancelled_count", "failed_count", "state"),
    [
        (0, 0, RunState.SUCCEEDED),
        (0, 2, RunState.FAILED),
        (1, 0, RunState.CANCELLED),
        (1, 5, RunState.CANCELLED),
    ],
)
def test_finished_run_state_precedence_cancelled_failed_succeeded(
    cancelled_count: int, failed_count: int, state: RunState
) -> None:
    assert finished_run_state(cancelled=cancelled_count, failed=failed_count) is state


# --- trigger (scenario 28) ------------------------------------------------------------------


def test_scenario_28_plan_initialises_ready_and_blocked_tasks(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [
            planned("a", partition_key="2026-03-01", max_attempts=2, heartbeat_timeout_sec=60),
            planned("b", "a", requires_visible_output=False),
            planned("c", "a", "b"),
        ],
        labels={"team": "data"},
    )
    run = load_run(database, "run-1")
    assert run.state == RunState.RUNNING
    assert run.plan_id == "plan-run-1"
    assert (run.tenant_id, run.workspace_id) == (SCOPE.tenant_id, SCOPE.workspace_id)
    assert run.labels == {"team": "data"}
    assert run.triggered_at == T0
    assert run.completed_at is None
    assert not run.cancel_requested
    assert counters(run) == {
        "total": 3,
        "completed": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    }
    a, b, c = (load_task(database, "run-1", key) for key in "abc")
    assert (a.state, a.ready_at, a.deps_total) == (TaskState.READY, T0, 0)
    assert (b.state, b.ready_at, b.deps_total) == (TaskState.BLOCKED, None, 1)
    assert (c.state, c.ready_at, c.deps_total) == (TaskState.BLOCKED, None, 2)
    for task in (a, b, c):
        assert task.attempt == 0
        assert task.attempt_id is None
        assert task.deps_satisfied_count == 0
        assert task.asset_key == task.task_key
    assert (a.partition_key, a.max_attempts, a.heartbeat_timeout_sec) == ("2026-03-01", 2, 60)
    assert a.requires_visible_output
    assert not b.requires_visible_output
    edges = dependency_edges(database, "run-1")
    assert set(edges) == {("a", "b"), ("a", "c"), ("b", "c")}
    for edge in edges.values():
        assert not edge.satisfied
        assert edge.resolution is None
        assert edge.satisfying_attempt is None


def test_trigger_records_the_run_provenance(database: Database) -> None:
    with database.transaction() as session:
        facts.trigger_run(
            session,
            SCOPE,
            run_id="run-2",
            plan_id="plan-2",
            tasks=[planned("a")],
            now=T0,
            triggered_by="alice",
            run_key="nightly-2026-03-02",
            code_version="cv-7",
            manifest_id="m" * 64,
            parent_run_id="run-1",
            rerun_kind="FROM_FAILURE",
            rerun_reason="from_failure_unsucceeded_tasks",
        )
    run = load_run(database, "run-2")
    assert (run.triggered_by, run.run_key, run.code_version, run.manifest_id) == (
        "alice",
        "nightly-2026-03-02",
        "cv-7",
        "m" * 64,
    )
    assert (run.parent_run_id, run.rerun_kind, run.rerun_reason) == (
        "run-1",
        "FROM_FAILURE",
        "from_failure_unsucceeded_tasks",
    )
    assert (run.labels, run.row_version) == ({}, 1)


def test_scenario_28_duplicate_trigger_of_a_run_is_refused_and_changes_nothing(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    with pytest.raises(IntegrityError), database.transaction() as session:
        facts.trigger_run(
            session,
            SCOPE,
            run_id="run-1",
            plan_id="plan-other",
            tasks=[planned("x")],
            now=at(5),
            triggered_by="again",
        )
    run = load_run(database, "run-1")
    assert (run.plan_id, run.tasks_total, run.triggered_at) == ("plan-run-1", 2, T0)
    assert task_states(database, "run-1") == {"a": TaskState.READY, "b": TaskState.BLOCKED}


def test_scenario_28_duplicate_run_key_reservation_returns_the_first(database: Database) -> None:
    with database.transaction() as session:
        first = facts.reserve_run_key(
            session,
            SCOPE,
            run_key="nightly",
            run_id="run-1",
            plan_id="plan-1",
            fingerprint="f" * 64,
            now=T0,
        )
    with database.transaction() as session:
        second = facts.reserve_run_key(
            session,
            SCOPE,
            run_key="nightly",
            run_id="run-2",
            plan_id="plan-2",
            fingerprint="e" * 64,
            now=at(60),
        )
        # the savepoint kept the rest of the transaction usable
        facts.trigger_run(
            session, SCOPE, run_id="run-2b", plan_id="p", tasks=[], now=at(60), triggered_by="t"
        )
    assert first.created
    assert (first.run_id, first.plan_id, first.created_at) == ("run-1", "plan-1", T0)
    assert not second.created
    assert (second.run_id, second.plan_id, second.fingerprint) == ("run-1", "plan-1", "f" * 64)
    assert second.created_at == T0
    with database.transaction() as session:
        other = facts.reserve_run_key(
            session,
            OTHER_WORKSPACE,
            run_key="nightly",
            run_id="run-3",
            plan_id="plan-3",
            fingerprint="d" * 64,
            now=at(90),
        )
    assert other.created  # the key is per (tenant, workspace)


def test_trigger_without_tasks_completes_the_run_at_once(database: Database) -> None:
    trigger(database, "run-empty", [], now=at(3))
    run = load_run(database, "run-empty")
    assert run.state == RunState.SUCCEEDED
    assert run.completed_at == at(3)
    assert run.tasks_total == 0


def test_trigger_writes_a_run_larger_than_one_insert_chunk(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks and edges go in chunk by chunk; an edge may cross chunks, and every row is
    written as the ORM objects were: READY or BLOCKED, attempt 0, version 1."""
    monkeypatch.setattr(trigger_facts, "INSERT_CHUNK", 3)
    tasks = [
        planned("t0"),
        planned("t1", "t0"),
        *(planned(f"t{n}", f"t{n - 1}", "t0") for n in range(2, 8)),
    ]
    trigger(database, "run-1", tasks, now=at(2))
    states = task_states(database, "run-1")
    assert states == {"t0": "READY", **{f"t{n}": "BLOCKED" for n in range(1, 8)}}
    edges = dependency_edges(database, "run-1")
    assert len(edges) == 13
    assert ("t2", "t3") in edges
    assert not any(edge.satisfied for edge in edges.values())
    first, later = load_task(database, "run-1", "t0"), load_task(database, "run-1", "t7")
    assert (first.ready_at, first.attempt, first.row_version, first.deps_total) == (at(2), 0, 1, 0)
    assert (later.ready_at, later.deps_total, later.deps_satisfied_count) == (None, 2, 0)
    assert later.state == "BLOCKED"
    assert load_run(database, "run-1").tasks_total == 8
    # The chain still runs to the end through the usual readiness.
    for n in range(8):
        finish(database, "run-1", f"t{n}", succeeded(), now=at(3 + n))
    assert load_run(database, "run-1").state == RunState.SUCCEEDED


Rows = tuple[dict[str, object], list[dict[str, object]], list[dict[str, object]]]


def _rows(database: Database, run_id: str) -> Rows:
    """Every column of a run, its tasks and its edges, but the run and plan ids."""
    with database.transaction() as session:
        run = session.get(Run, run_id)
        tasks = session.scalars(select(Task).where(Task.run_id == run_id)).all()
        edges = session.scalars(select(TaskDependency).where(TaskDependency.run_id == run_id)).all()

        def columns(row: object) -> dict[str, object]:
            table = type(row).__table__  # type: ignore[attr-defined]
            return {
                c.name: getattr(row, c.name)
                for c in table.columns
                if c.name not in ("run_id", "plan_id")
            }

        return (
            columns(run),
            sorted((columns(task) for task in tasks), key=str),
            sorted((columns(edge) for edge in edges), key=str),
        )


def test_a_run_in_one_statement_writes_the_rows_chunks_write(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a run of one chunk or less goes in as one statement, a larger one
    chunk by chunk: both write the same rows (on SQLite both are chunked)."""
    tasks = [
        planned("a", partition_key="d=d:2024-01-15"),
        planned("b", "a", max_attempts=5, heartbeat_timeout_sec=60),
        planned("c", "a", "b", requires_visible_output=False),
        planned("d"),
    ]
    labels = {"k": "v", "arco.parent_run_id": "p-1"}
    trigger(database, "whole", tasks, now=at(2), labels=labels, rerun_reason="r")
    monkeypatch.setattr(trigger_facts, "INSERT_CHUNK", 3)
    trigger(database, "chunked", tasks, now=at(2), labels=labels, rerun_reason="r")
    whole = _rows(database, "whole")
    assert whole == _rows(database, "chunked")
    assert len(whole[1]) == 4
    assert len(whole[2]) == 3


# --- readiness (T2) -------------------------------------------------------------------------


def test_readiness_counts_each_edge_once(database: Database) -> None:
    """Diamond a -> (b, c) -> d: d is READY only when both of its edges are satisfied."""
    trigger(
        database,
        "run-1",
        [planned("a"), planned("b", "a"), planned("c", "a"), planned("d", "b", "c")],
    )
    finish(database, "run-1", "a", succeeded(), now=at(10))
    assert task_states(database, "run-1") == {
        "a": TaskState.SUCCEEDED,
        "b": TaskState.READY,
        "c": TaskState.READY,
        "d": TaskState.BLOCKED,
    }
    b = load_task(database, "run-1", "b")
    assert (b.ready_at, b.deps_satisfied_count) == (at(10), 1)
    assert [e.from_state for e in task_events(database, "run-1", "b", "ready")] == ["BLOCKED"]
    edge = dependency_edges(database, "run-1")[("a", "b")]
    assert (edge.satisfied, edge.resolution, edge.satisfying_attempt, edge.satisfied_at) == (
        True,
        "SUCCESS",
        1,
        at(10),
    )

    finish(database, "run-1", "b", succeeded(), now=at(20))
    # a repeat of b's completion must not count the b -> d edge again
    assert not complete(database, "run-1", "b", succeeded(), now=at(21))
    d = load_task(database, "run-1", "d")
    assert (d.state, d.deps_satisfied_count) == (TaskState.BLOCKED, 1)

    finish(database, "run-1", "c", succeeded(), now=at(30))
    d = load_task(database, "run-1", "d")
    assert (d.state, d.deps_satisfied_count, d.ready_at) == (TaskState.READY, 2, at(30))


def test_scenario_29_duplicate_completion_does_not_double_count(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c")])
    finish(database, "run-1", "a", succeeded(), now=at(10))
    before = counters(load_run(database, "run-1"))
    assert not complete(database, "run-1", "a", succeeded(), now=at(11))
    assert not complete(database, "run-1", "a", failed(retryable=False), now=at(12))
    assert (
        counters(load_run(database, "run-1"))
        == before
        == {
            "total": 3,
            "completed": 1,
            "succeeded": 1,
            "failed": 0,
            "skipped": 0,
            "cancelled": 0,
        }
    )
    assert load_task(database, "run-1", "b").deps_satisfied_count == 1
    assert load_task(database, "run-1", "a").completed_at == at(10)
    assert len(task_events(database, "run-1", "a", "completed")) == 1


@pytest.mark.parametrize("order", [("b", "c"), ("c", "b")])
def test_scenario_44_independent_facts_commute_and_replays_are_no_ops(
    database: Database, order: tuple[str, str]
) -> None:
    """Facts apply in the order they reach the database, at server time; completing the two
    upstreams of a join in either order gives the same state, and replaying a fact is a
    no-op."""
    trigger(
        database,
        "run-1",
        [planned("a"), planned("b", "a"), planned("c", "a"), planned("d", "b", "c")],
    )
    finish(database, "run-1", "a", succeeded(), now=at(10))
    first, second = order
    run_task(database, "run-1", first, now=at(20))
    run_task(database, "run-1", second, now=at(20))
    assert complete(database, "run-1", first, succeeded(), now=at(30))
    assert complete(database, "run-1", second, succeeded(), now=at(30))
    # replays
    assert not start(database, "run-1", first, now=at(31))
    assert not complete(database, "run-1", second, succeeded(), now=at(31))
    d = load_task(database, "run-1", "d")
    assert (d.state, d.deps_satisfied_count, d.ready_at) == (TaskState.READY, 2, at(30))
    assert counters(load_run(database, "run-1"))["succeeded"] == 3
    edges = dependency_edges(database, "run-1")
    assert {key: edge.resolution for key, edge in edges.items()} == {
        ("a", "b"): "SUCCESS",
        ("a", "c"): "SUCCESS",
        ("b", "d"): "SUCCESS",
        ("c", "d"): "SUCCESS",
    }
    assert len(task_events(database, "run-1", "d", "ready")) == 1


# --- failures and retries (T7, T8) ----------------------------------------------------------


def test_scenario_27_non_retryable_failure_is_terminal(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(retryable=False, message="bad data"), now=at(10))
    task = load_task(database, "run-1", "a")
    assert task.state == TaskState.FAILED
    assert task.retry_not_before is None
    assert task.completed_at == at(10)
    assert task.error_message == "bad data"
    assert task.error == {"category": "USER_CODE", "message": "bad data", "retryable": False}
    assert task.heartbeat_deadline is None
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.FAILED, at(10))
    assert counters(run)["completed"] == counters(run)["failed"] == 1


def test_scenario_41_first_failure_enters_retry_wait_with_deadline_plus_30s(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    finish(database, "run-1", "a", failed(retryable=True, message="flaky"), now=at(100))
    task = load_task(database, "run-1", "a")
    assert task.state == TaskState.RETRY_WAIT
    assert task.retry_not_before == at(130)
    assert task.completed_at is None
    assert task.error_message == "flaky"
    assert task.attempt == 1
    run = load_run(database, "run-1")
    # RETRY_WAIT is not terminal: no counters, no downstream effect, the run keeps running
    assert run.state == RunState.RUNNING
    assert counters(run)["completed"] == 0
    assert load_task(database, "run-1", "b").state == TaskState.BLOCKED
    assert dependency_edges(database, "run-1")[("a", "b")].resolution is None
    (event,) = task_events(database, "run-1", "a", "completed")
    assert (event.from_state, event.to_state, event.at) == ("RUNNING", "RETRY_WAIT", at(100))


def test_failed_completion_without_error_object_is_retryable(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    bare = facts.Completion(outcome="FAILED", worker_id=WORKER)
    finish(database, "run-1", "a", bare, now=at(10))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.retry_not_before, task.error) == (TaskState.RETRY_WAIT, at(40), None)


def test_retries_back_off_per_attempt_until_attempts_are_exhausted(database: Database) -> None:
    trigger(database, "run-1", [planned("a", max_attempts=3), planned("b", "a")])
    finish(database, "run-1", "a", failed(), now=at(0))
    assert load_task(database, "run-1", "a").retry_not_before == at(30)
    finish(database, "run-1", "a", failed(), now=at(100))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.attempt, task.retry_not_before) == (TaskState.RETRY_WAIT, 2, at(160))
    finish(database, "run-1", "a", failed(message="third"), now=at(200))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.attempt) == (TaskState.FAILED, 3)
    assert (task.retry_not_before, task.completed_at, task.error_message) == (
        None,
        at(200),
        "third",
    )
    assert request_next(database) is None  # no attempt 4


def request_next(database: Database) -> facts.DispatchRequest | None:
    with database.transaction() as session:
        return facts.request_dispatch(session, SCOPE, "run-1", "a", now=at(999))


def test_scenario_66_exhausted_attempts_fail_with_no_deadline(database: Database) -> None:
    trigger(database, "run-1", [planned("a", max_attempts=1), planned("b", "a")])
    finish(database, "run-1", "a", failed(retryable=True), now=at(10))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.retry_not_before, task.completed_at) == (
        TaskState.FAILED,
        None,
        at(10),
    )
    assert load_run(database, "run-1").state == RunState.FAILED


def test_scenario_42_retry_deadline_overflow_is_stored_as_due_now(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    last_second = datetime(9999, 12, 31, 23, 59, 50, tzinfo=UTC)
    assert complete(database, "run-1", "a", failed(), now=last_second)
    task = load_task(database, "run-1", "a")
    assert (task.state, task.retry_not_before) == (TaskState.RETRY_WAIT, None)


# --- cascades (T11, T12) --------------------------------------------------------------------


def test_scenario_32_upstream_failure_skips_downstream_transitively(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [planned("a", max_attempts=1), planned("b", "a"), planned("c", "b"), planned("d")],
    )
    finish(database, "run-1", "a", failed(retryable=True), now=at(10))
    assert task_states(database, "run-1") == {
        "a": TaskState.FAILED,
        "b": TaskState.SKIPPED,
        "c": TaskState.SKIPPED,
        "d": TaskState.READY,
    }
    edges = dependency_edges(database, "run-1")
    assert (edges["a", "b"].resolution, edges["a", "b"].satisfied) == ("FAILED", False)
    assert (edges["b", "c"].resolution, edges["b", "c"].satisfied) == ("SKIPPED", False)
    assert edges["a", "b"].satisfied_at == edges["b", "c"].satisfied_at == at(10)
    for key in "bc":
        task = load_task(database, "run-1", key)
        assert task.completed_at is None  # cascades do not set completed_at
        (event,) = task_events(database, "run-1", key, "skipped")
        assert (event.from_state, event.to_state) == ("BLOCKED", "SKIPPED")
    run = load_run(database, "run-1")
    assert run.state == RunState.RUNNING
    assert counters(run) == {
        "total": 4,
        "completed": 3,
        "succeeded": 0,
        "failed": 1,
        "skipped": 2,
        "cancelled": 0,
    }
    finish(database, "run-1", "d", succeeded(), now=at(20))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.FAILED, at(20))


def test_skip_cascade_through_a_diamond_resolves_every_edge_once(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [
            planned("a", max_attempts=1),
            planned("b", "a"),
            planned("c", "a"),
            planned("d", "b", "c"),
        ],
    )
    finish(database, "run-1", "a", failed(retryable=False), now=at(10))
    edges = dependency_edges(database, "run-1")
    assert {key: edge.resolution for key, edge in edges.items()} == {
        ("a", "b"): "FAILED",
        ("a", "c"): "FAILED",
        ("b", "d"): "SKIPPED",
        ("c", "d"): "SKIPPED",
    }
    assert len(task_events(database, "run-1", "d", "skipped")) == 1
    run = load_run(database, "run-1")
    assert counters(run) == {
        "total": 4,
        "completed": 4,
        "succeeded": 0,
        "failed": 1,
        "skipped": 3,
        "cancelled": 0,
    }
    assert run.state == RunState.FAILED


def test_scenario_33_cancelled_completion_cascades_and_ends_run_cancelled(
    database: Database,
) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c", "b")])
    finish(database, "run-1", "a", cancelled(), now=at(10))
    assert task_states(database, "run-1") == {
        "a": TaskState.CANCELLED,
        "b": TaskState.CANCELLED,
        "c": TaskState.CANCELLED,
    }
    assert load_task(database, "run-1", "a").completed_at == at(10)
    assert load_task(database, "run-1", "b").completed_at is None
    edges = dependency_edges(database, "run-1")
    assert edges["a", "b"].resolution == edges["b", "c"].resolution == "CANCELLED"
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(10))
    assert counters(run) == {
        "total": 3,
        "completed": 3,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 3,
    }


# --- run counters and completion ------------------------------------------------------------


def test_run_succeeds_when_every_task_succeeded(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a")])
    finish(database, "run-1", "a", succeeded(), now=at(10))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.RUNNING, None)
    finish(database, "run-1", "b", succeeded(), now=at(20))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.SUCCEEDED, at(20))
    assert counters(run) == {
        "total": 2,
        "completed": 2,
        "succeeded": 2,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
    }


def test_run_with_a_failed_task_ends_failed(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    finish(database, "run-1", "a", failed(retryable=False), now=at(10))
    finish(database, "run-1", "b", succeeded(), now=at(20))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.FAILED, at(20))
    assert (run.tasks_failed, run.tasks_succeeded, run.tasks_completed) == (1, 1, 2)


def test_run_with_a_cancelled_task_ends_cancelled_even_with_a_failure(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b"), planned("c")])
    finish(database, "run-1", "a", failed(retryable=False), now=at(10))
    finish(database, "run-1", "b", cancelled(), now=at(20))
    finish(database, "run-1", "c", succeeded(), now=at(30))
    run = load_run(database, "run-1")
    assert (run.state, run.completed_at) == (RunState.CANCELLED, at(30))
    assert counters(run) == {
        "total": 3,
        "completed": 3,
        "succeeded": 1,
        "failed": 1,
        "skipped": 0,
        "cancelled": 1,
    }


def test_terminal_run_is_not_finished_twice(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", succeeded(), now=at(10))
    version = load_run(database, "run-1").row_version
    assert not complete(database, "run-1", "a", succeeded(), now=at(50))
    run = load_run(database, "run-1")
    assert (run.completed_at, run.row_version) == (at(10), version)


def test_dispatch_then_completion_without_started_is_accepted(database: Database) -> None:
    """A worker may skip /started: a completion applies from DISPATCHED."""
    trigger(database, "run-1", [planned("a")])
    dispatch(database, "run-1", "a", now=at(0))
    assert complete(database, "run-1", "a", succeeded(), now=at(5))
    task = load_task(database, "run-1", "a")
    assert (task.state, task.started_at, task.completed_at) == (TaskState.SUCCEEDED, None, at(5))
    (event,) = task_events(database, "run-1", "a", "completed")
    assert (event.from_state, event.to_state) == ("DISPATCHED", "SUCCEEDED")
