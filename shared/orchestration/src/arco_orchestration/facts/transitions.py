"""The task and run transitions, declared once as tables (arco-orchestration 1.2, T1-T13),
and the one function through which every state change of a task or a run goes.

A fact asks :func:`allows` before it acts (a fact that does not apply is a no-op, as
upstream's idempotent facts are) and then changes the state with :func:`transition`, which
refuses a pair the table does not list with :class:`IllegalTransition`: a fact that forgot
its guard fails loudly instead of writing a state upstream never reaches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from arco_orchestration.models import Run, Task
from arco_orchestration.states import CANCELLABLE_TASK_STATES, RunState, TaskState


class TaskTransition(StrEnum):
    """The named task transitions; the value says which upstream rule each one is."""

    PLAN_READY = "T1 plan (no dependencies)"
    PLAN_BLOCKED = "T1 plan (with dependencies)"
    UNBLOCK = "T2 dependencies satisfied"
    DISPATCH = "T3 dispatch requested"
    START = "T4 started"
    SUCCEED = "T6 completed SUCCEEDED"
    RETRY = "T7 completed FAILED, retry"
    FAIL = "T8 completed FAILED, final"
    CANCEL_REPORTED = "T9 completed CANCELLED"
    CANCEL = "T10 run cancelled (and D7)"
    SKIP_DOWNSTREAM = "T11 upstream failed or skipped"
    CANCEL_DOWNSTREAM = "T12 upstream cancelled"


class RunTransition(StrEnum):
    START = "run triggered"
    SUCCEED = "every task ended, none failed or cancelled"
    FAIL = "every task ended, one failed"
    CANCEL = "every task ended, one cancelled"


@dataclass(frozen=True)
class Rule:
    """The states a transition may leave (``None``: a row being created) and the one it
    enters."""

    sources: frozenset[str | None]
    target: str


def _rule(sources: Iterable[TaskState | RunState | None], target: TaskState | RunState) -> Rule:
    return Rule(
        frozenset(None if state is None else state.value for state in sources), target.value
    )


_NON_TERMINAL = [state for state in TaskState if not state.is_terminal]
# The states a worker's fact may find its attempt in: not terminal. The callback rules (409)
# narrow it further for the HTTP answer, and the keyed events make a repeat a no-op.
_ATTEMPT_LIVE = _NON_TERMINAL

TASK_TRANSITIONS: dict[TaskTransition, Rule] = {
    TaskTransition.PLAN_READY: _rule({None}, TaskState.READY),
    TaskTransition.PLAN_BLOCKED: _rule({None}, TaskState.BLOCKED),
    TaskTransition.UNBLOCK: _rule({TaskState.BLOCKED}, TaskState.READY),
    # Ours is stricter than upstream's T3 (which also lists DISPATCHED): re-sending a
    # DISPATCHED attempt is a repair of its outbox row, not a state change.
    TaskTransition.DISPATCH: _rule({TaskState.READY, TaskState.RETRY_WAIT}, TaskState.DISPATCHED),
    TaskTransition.START: _rule(_ATTEMPT_LIVE, TaskState.RUNNING),
    TaskTransition.SUCCEED: _rule(_ATTEMPT_LIVE, TaskState.SUCCEEDED),
    TaskTransition.RETRY: _rule(_ATTEMPT_LIVE, TaskState.RETRY_WAIT),
    TaskTransition.FAIL: _rule(_ATTEMPT_LIVE, TaskState.FAILED),
    TaskTransition.CANCEL_REPORTED: _rule(_ATTEMPT_LIVE, TaskState.CANCELLED),
    TaskTransition.CANCEL: _rule(CANCELLABLE_TASK_STATES, TaskState.CANCELLED),
    TaskTransition.SKIP_DOWNSTREAM: _rule(_NON_TERMINAL, TaskState.SKIPPED),
    TaskTransition.CANCEL_DOWNSTREAM: _rule(_NON_TERMINAL, TaskState.CANCELLED),
}

# A run with no task ends in the transaction that creates it, right after it starts.
_RUN_LIVE = [RunState.TRIGGERED, RunState.RUNNING]
RUN_TRANSITIONS: dict[RunTransition, Rule] = {
    RunTransition.START: _rule({None}, RunState.RUNNING),
    RunTransition.SUCCEED: _rule(_RUN_LIVE, RunState.SUCCEEDED),
    RunTransition.FAIL: _rule(_RUN_LIVE, RunState.FAILED),
    RunTransition.CANCEL: _rule(_RUN_LIVE, RunState.CANCELLED),
}


class IllegalTransition(RuntimeError):  # noqa: N818 - reads as a sentence
    """A state change that the transition tables do not allow: a bug in a fact."""

    def __init__(self, kind: str, key: str, change: str, state: str | None) -> None:
        super().__init__(f"{kind} {key}: {change!r} is not allowed from state {state}")
        self.state = state
        self.change = change


def _table_rule(row: Task | Run, change: TaskTransition | RunTransition) -> Rule:
    if isinstance(row, Task) and isinstance(change, TaskTransition):
        return TASK_TRANSITIONS[change]
    if isinstance(row, Run) and isinstance(change, RunTransition):
        return RUN_TRANSITIONS[change]
    raise TypeError(f"{change!r} does not apply to a {type(row).__name__}")


def allows(row: Task | Run, change: TaskTransition | RunTransition) -> bool:
    """Whether ``change`` may apply to ``row`` in its current state."""
    return row.state in _table_rule(row, change).sources


def transition(row: Task | Run, change: TaskTransition | RunTransition) -> str | None:
    """Move ``row`` by ``change`` (the table says to which state), counting the change in
    its ``row_version``; returns the state it left. Raises :class:`IllegalTransition` when
    the table does not list the pair."""
    rule = _table_rule(row, change)
    previous = row.state
    if previous not in rule.sources:
        key = f"{row.run_id}/{row.task_key}" if isinstance(row, Task) else row.run_id
        raise IllegalTransition(type(row).__name__.lower(), key, change.name, previous)
    row.state = rule.target
    if previous is not None:  # a new row starts at version 1
        row.row_version += 1
    return previous
