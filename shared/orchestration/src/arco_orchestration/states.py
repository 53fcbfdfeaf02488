"""Task and run states (stored and public), and the retry backoff. Which state may follow
which is declared once, in :mod:`arco_orchestration.facts.transitions`.

Stored and public states are upstream's (arco-orchestration sections 1.1, 1.4, 4.3).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class TaskState(StrEnum):
    PLANNED = "PLANNED"
    BLOCKED = "BLOCKED"
    READY = "READY"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    SUCCEEDED = "SUCCEEDED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


TERMINAL_TASK_STATES = frozenset(
    {TaskState.SKIPPED, TaskState.CANCELLED, TaskState.FAILED, TaskState.SUCCEEDED}
)
# Cancelling a run cancels every non-terminal task except RUNNING ones, whose workers learn
# of it through the heartbeat's shouldCancel (T10).
CANCELLABLE_TASK_STATES = frozenset(
    {
        TaskState.PLANNED,
        TaskState.BLOCKED,
        TaskState.READY,
        TaskState.DISPATCHED,
        TaskState.RETRY_WAIT,
    }
)


class RunState(StrEnum):
    TRIGGERED = "TRIGGERED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


class PublicRunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in (
            PublicRunState.SUCCEEDED,
            PublicRunState.FAILED,
            PublicRunState.CANCELLED,
            PublicRunState.TIMED_OUT,
        )


class PublicTaskState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class OutboxStatus(StrEnum):
    PENDING = "PENDING"  # dispatch requested, not yet handed to the provider
    CREATED = "CREATED"  # the provider accepted it (enqueued or deduplicated)


class DeliveryState(StrEnum):
    """Progress of the built-in ``http`` provider's push delivery of a CREATED row."""

    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    GAVE_UP = "GAVE_UP"


class EdgeResolution(StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"


class VisibilityState(StrEnum):
    PENDING = "PENDING"
    VISIBLE = "VISIBLE"
    FAILED = "FAILED"


def public_task_state(state: TaskState) -> PublicTaskState:
    """Upstream's ``map_task_state``: PLANNED/BLOCKED/RETRY_WAIT are PENDING, READY and
    DISPATCHED are QUEUED, terminal states are unchanged."""
    if state in (TaskState.PLANNED, TaskState.BLOCKED, TaskState.RETRY_WAIT):
        return PublicTaskState.PENDING
    if state in (TaskState.READY, TaskState.DISPATCHED):
        return PublicTaskState.QUEUED
    return PublicTaskState(state.value)


def public_run_state(
    state: RunState,
    *,
    cancel_requested: bool,
    required_output_failed: bool,
    required_output_pending: bool,
) -> PublicRunState:
    """Upstream's ``public_run_state``, rules applied in upstream's order."""
    if cancel_requested and not state.is_terminal:
        return PublicRunState.CANCELLING
    if state is RunState.CANCELLED:
        return PublicRunState.CANCELLED
    if state is RunState.FAILED or required_output_failed:
        return PublicRunState.FAILED
    if state is RunState.SUCCEEDED and required_output_pending:
        return PublicRunState.RUNNING
    if state is RunState.TRIGGERED:
        return PublicRunState.PENDING
    return PublicRunState(state.value)


RETRY_BACKOFF_BASE = timedelta(seconds=30)
RETRY_BACKOFF_CAP = timedelta(seconds=900)
# Upstream's base. The api and the sweeper read theirs from ARCO_RETRY_BACKOFF_BASE_SECS into
# their settings and pass it to the facts that record a failure (``retry_base``).


def retry_backoff(attempt: int, *, base: timedelta = RETRY_BACKOFF_BASE) -> timedelta:
    """``min(base * 2^min(attempt-1, 6), 900 s)``; with upstream's base of 30 s: 30, 60,
    120 s, ... capped at 15 min."""
    exponent = min(max(attempt, 1) - 1, 6)
    delay: timedelta = base * (2**exponent)
    return min(delay, RETRY_BACKOFF_CAP)


def retry_not_before(
    anchor: datetime, attempt: int, *, base: timedelta = RETRY_BACKOFF_BASE
) -> datetime | None:
    """When the next attempt is due; ``None`` (due now) when the addition overflows."""
    try:
        return anchor + retry_backoff(attempt, base=base)
    except OverflowError:
        return None


def finished_run_state(*, cancelled: int, failed: int) -> RunState:
    """The state of a run whose every task is terminal."""
    if cancelled > 0:
        return RunState.CANCELLED
    if failed > 0:
        return RunState.FAILED
    return RunState.SUCCEEDED
