"""The run page: header and counts (the API's run detail), the task graph laid out in layers,
and a timeline of attempts built from the task events (queued, running, ended)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arco_api.console.dag_layout import DagLayout, layout
from arco_envelope import parse_timestamp
from arco_orchestration import queries
from arco_orchestration.models import TaskDependency, TaskEvent
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState, TaskState

GANTT_WIDTH = 1000
_QUEUED = {TaskState.READY.value, TaskState.DISPATCHED.value}
_ENDED = {state.value for state in TaskState if state.is_terminal} | {TaskState.RETRY_WAIT.value}


@dataclass(frozen=True)
class AttemptBar:
    """One attempt of one task on the timeline; offsets and widths in ``GANTT_WIDTH`` units."""

    task_key: str
    attempt: int
    outcome: str
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    queued_x: int
    running_x: int
    end_x: int

    @property
    def summary(self) -> str:
        parts = [f"{self.task_key} attempt {self.attempt}: {self.outcome}"]
        if self.started_at and self.ended_at:
            parts.append(f"ran {(self.ended_at - self.started_at).total_seconds():.1f} s")
        return ", ".join(parts)


@dataclass(frozen=True)
class RunView:
    run: dict[str, Any]
    states: dict[str, str]
    dag: DagLayout
    bars: tuple[AttemptBar, ...]
    timeline_start: datetime
    timeline_end: datetime

    @property
    def state(self) -> str:
        return str(self.run["state"])

    @property
    def is_terminal(self) -> bool:
        return PublicRunState(self.state).is_terminal

    @property
    def can_cancel(self) -> bool:
        return not self.is_terminal and self.state != PublicRunState.CANCELLING

    @property
    def can_rerun(self) -> bool:
        """Rerun from failure needs a FAILED run (the API refuses any other)."""
        return self.state == PublicRunState.FAILED

    @property
    def counts(self) -> list[tuple[str, int]]:
        counts: dict[str, int] = self.run["taskCounts"]
        return [(name.upper(), value) for name, value in counts.items() if name != "total"]

    @property
    def timeline_seconds(self) -> float:
        return (self.timeline_end - self.timeline_start).total_seconds()


def _bars(events: Sequence[Any], start: datetime, end: datetime) -> tuple[AttemptBar, ...]:
    """Events are rows of ``(task_key, attempt, to_state, at)`` in the order they happened."""
    attempts: dict[tuple[str, int], dict[str, Any]] = {}
    for event in events:
        if event.attempt < 1 or event.to_state is None:
            continue
        entry = attempts.setdefault((event.task_key, event.attempt), {})
        if event.to_state in _QUEUED:
            entry.setdefault("queued", event.at)
        elif event.to_state == TaskState.RUNNING.value:
            entry.setdefault("started", event.at)
        elif event.to_state in _ENDED:
            entry.setdefault("ended", event.at)
            entry.setdefault("outcome", event.to_state)
    span = max((end - start).total_seconds(), 1e-3)

    def x(at: datetime | None, default: datetime) -> int:
        moment = at or default
        return round(GANTT_WIDTH * max(0.0, (moment - start).total_seconds()) / span)

    bars = []
    for (task_key, attempt), entry in attempts.items():
        queued, started, ended = entry.get("queued"), entry.get("started"), entry.get("ended")
        first = queued or started or ended or start
        outcome = entry.get("outcome") or ("RUNNING" if started else "QUEUED")
        bars.append(
            AttemptBar(
                task_key=task_key,
                attempt=attempt,
                outcome=outcome,
                queued_at=queued,
                started_at=started,
                ended_at=ended,
                queued_x=x(first, start),
                running_x=x(started, ended or end),
                end_x=max(x(ended, end), x(first, start) + 2),
            )
        )
    bars.sort(key=lambda bar: (bar.queued_x, bar.task_key, bar.attempt))
    return tuple(bars)


def run_version(session: Session, scope: Scope, run_id: str) -> tuple[str, bool] | None:
    """A cheap fingerprint of everything the run page shows, and whether the run has ended:
    every task transition appends an event, so the run's row and its last event id change
    whenever the page would. The live refresh skips rendering a run that did not change."""
    run = queries.get_run(session, scope, run_id)
    if run is None:
        return None
    last_event = session.scalar(select(func.max(TaskEvent.id)).where(TaskEvent.run_id == run_id))
    public = queries.public_state_of(session, run)
    fingerprint = f"{public.value}.{run.tasks_completed}.{run.cancel_requested:d}.{last_event}"
    return fingerprint, public.is_terminal


def load_run_view(session: Session, scope: Scope, run_id: str, now: datetime) -> RunView | None:
    """The run page of ``run_id`` in ``scope``; ``None`` when the scope has no such run (so
    another tenant's run id is a 404, as in the API)."""
    run = queries.run_detail(session, scope, run_id)
    if run is None:
        return None
    edges = [
        (upstream, downstream)
        for upstream, downstream in session.execute(
            select(TaskDependency.upstream_key, TaskDependency.downstream_key).where(
                TaskDependency.run_id == run_id
            )
        )
    ]
    keys = [str(task["taskKey"]) for task in run["tasks"]]
    dag = layout(keys, edges)
    events = list(
        session.execute(
            select(TaskEvent.task_key, TaskEvent.attempt, TaskEvent.to_state, TaskEvent.at)
            .where(TaskEvent.run_id == run_id)
            .order_by(TaskEvent.id)
        )
    )
    start = parse_timestamp(run["createdAt"])
    end = parse_timestamp(run["completedAt"]) if "completedAt" in run else now
    if events:
        end = max(end, *(event.at for event in events))
    return RunView(
        run=run,
        states={str(task["taskKey"]): str(task["state"]) for task in run["tasks"]},
        dag=dag,
        bars=_bars(events, start, end),
        timeline_start=start,
        timeline_end=end,
    )
