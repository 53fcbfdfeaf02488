"""The transition tables, walked: every pair a table lists succeeds through the one
function that changes a state, every other pair is refused and changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.facts.graph import end_task
from arco_orchestration.facts.transitions import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    IllegalTransition,
    RunTransition,
    TaskTransition,
    allows,
    transition,
)
from arco_orchestration.models import Run, Task
from arco_orchestration.states import CANCELLABLE_TASK_STATES, RunState, TaskState
from arco_testkit.clock import at
from arco_testkit.facts import failed, load_task, planned, run_task, trigger
from arco_testkit.values import SCOPE

TASK_STATES: list[str | None] = [None, *(state.value for state in TaskState)]
RUN_STATES: list[str | None] = [None, *(state.value for state in RunState)]


def new_task(state: str | None) -> Task:
    return Task(run_id="run-1", task_key="a", state=state, row_version=1)


def new_run(state: str | None) -> Run:
    return Run(run_id="run-1", state=state, row_version=1)


@pytest.mark.parametrize("change", list(TaskTransition))
@pytest.mark.parametrize("state", TASK_STATES)
def test_every_task_pair_is_allowed_exactly_as_the_table_says(
    change: TaskTransition, state: str | None
) -> None:
    rule = TASK_TRANSITIONS[change]
    task = new_task(state)
    assert allows(task, change) is (state in rule.sources)
    if state in rule.sources:
        assert transition(task, change) == state
        assert task.state == rule.target
        assert task.row_version == (1 if state is None else 2)
    else:
        with pytest.raises(IllegalTransition) as refused:
            transition(task, change)
        assert (refused.value.state, refused.value.change) == (state, change.name)
        assert (task.state, task.row_version) == (state, 1)


@pytest.mark.parametrize("change", list(RunTransition))
@pytest.mark.parametrize("state", RUN_STATES)
def test_every_run_pair_is_allowed_exactly_as_the_table_says(
    change: RunTransition, state: str | None
) -> None:
    rule = RUN_TRANSITIONS[change]
    run = new_run(state)
    assert allows(run, change) is (state in rule.sources)
    if state in rule.sources:
        assert transition(run, change) == state
        assert run.state == rule.target
    else:
        with pytest.raises(IllegalTransition):
            transition(run, change)
        assert (run.state, run.row_version) == (state, 1)


def test_the_tables_name_every_transition_and_no_state_leaves_an_end() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskTransition)
    assert set(RUN_TRANSITIONS) == set(RunTransition)
    for rule in TASK_TRANSITIONS.values():
        assert not any(s is not None and TaskState(s).is_terminal for s in rule.sources)
    for run_rule in RUN_TRANSITIONS.values():
        assert not any(s is not None and RunState(s).is_terminal for s in run_rule.sources)


def test_the_task_table_reaches_every_end_from_the_plan_and_keeps_upstreams_rules() -> None:
    reached: set[str | None] = {None}
    frontier: list[str | None] = [None]
    while frontier:
        state = frontier.pop()
        for rule in TASK_TRANSITIONS.values():
            if state in rule.sources and rule.target not in reached:
                reached.add(rule.target)
                frontier.append(rule.target)
    # PLANNED is upstream's state before a plan exists; ours plans straight to READY/BLOCKED.
    assert reached == {None, *(s.value for s in TaskState if s is not TaskState.PLANNED)}
    cancel = TASK_TRANSITIONS[TaskTransition.CANCEL]
    assert cancel.sources == {s.value for s in CANCELLABLE_TASK_STATES}  # T10: not RUNNING
    assert TaskState.RUNNING.value not in cancel.sources
    assert TASK_TRANSITIONS[TaskTransition.UNBLOCK].sources == {TaskState.BLOCKED.value}


def test_a_transition_of_the_wrong_kind_of_row_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        transition(new_run(None), TaskTransition.PLAN_READY)
    with pytest.raises(TypeError):
        allows(new_task(None), RunTransition.START)


def test_a_fact_that_skips_its_guard_is_refused_and_writes_nothing(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(1))
    with database.transaction() as session:
        found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        assert found is not None
        run, task = found
        # T10 never cancels a RUNNING task: its worker learns of it through the heartbeat.
        cancelled = facts.EventKind.CANCELLED
        with pytest.raises(IllegalTransition):
            end_task(session, run, task, TaskTransition.CANCEL, cancelled, at(2))
        assert (task.state, run.tasks_completed) == (TaskState.RUNNING, 0)
    assert load_task(database, "run-1", "a").state == TaskState.RUNNING


def test_the_retry_backoff_base_is_an_argument_of_the_completion(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(0))
    with database.transaction() as session:
        found = facts.run_with_task(session, SCOPE, "run-1", "a", lock=facts.RunLock.EXCLUSIVE)
        assert found is not None
        assert facts.apply_completion(
            session, *found, failed(), now=at(10), retry_base=timedelta(seconds=2)
        )
    assert load_task(database, "run-1", "a").retry_not_before == at(12)
