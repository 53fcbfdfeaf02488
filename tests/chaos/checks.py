"""What must hold after chaos, read from the database, the handlers' executions file and the
API's log: nothing lost, nothing finished twice, and server errors only during outages."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arco_envelope import parse_timestamp
from arco_orchestration.models import Run, Task, TaskEvent
from arco_orchestration.states import TERMINAL_TASK_STATES, RunState

from .chaos_handlers import Execution
from .controller import POSTGRES, Outage

TERMINAL_TASKS = sorted(state.value for state in TERMINAL_TASK_STATES)
TERMINAL_RUNS = sorted(state.value for state in RunState if state.is_terminal)
CALLBACK_PHASES = ("/started", "/heartbeat", "/completed")
# Requests already in flight when PostgreSQL went down, and pooled connections found dead
# just after it came back, fail a little outside the outage itself.
DATABASE_SLACK_SECS = 5.0


def unfinished_runs(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(Run).where(Run.state.not_in(TERMINAL_RUNS)))
        or 0
    )


@dataclass
class Findings:
    """Everything the chaos test asserts on, and the figures it reports."""

    runs: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    not_terminal: list[str] = field(default_factory=list)
    terminal_transitions: Counter[str] = field(default_factory=Counter)
    succeeded_without_execution: list[str] = field(default_factory=list)
    duplicate_executions: int = 0  # one attempt's handler started more than once
    re_executions: int = 0  # a task's handler started again for a later attempt
    executions: int = 0
    server_errors_in_outages: int = 0
    server_errors_outside_outages: list[str] = field(default_factory=list)

    @property
    def finished_twice(self) -> list[str]:
        return sorted(key for key, count in self.terminal_transitions.items() if count > 1)

    @property
    def never_finished(self) -> list[str]:
        return sorted(key for key, count in self.terminal_transitions.items() if count == 0)

    def summary(self) -> dict[str, Any]:
        return {
            "runs": dict(self.runs),
            "tasks": dict(self.tasks),
            "executions": self.executions,
            "duplicateExecutions": self.duplicate_executions,
            "reExecutions": self.re_executions,
            "callback5xxDuringOutages": self.server_errors_in_outages,
            "callback5xxOutsideOutages": len(self.server_errors_outside_outages),
        }


def check_database(session: Session, executions: list[Execution], findings: Findings) -> None:
    for state, count in session.execute(select(Run.state, func.count()).group_by(Run.state)):
        findings.runs[state] = count
    tasks = session.execute(select(Task.run_id, Task.task_key, Task.state, Task.attempt)).all()
    ended = {(e.run_id, e.task_key, e.attempt) for e in executions if e.phase == "end"}
    for run_id, task_key, state, attempt in tasks:
        name = f"{run_id}/{task_key}"
        findings.tasks[state] += 1
        findings.terminal_transitions[name] = 0
        if state not in TERMINAL_TASKS:
            findings.not_terminal.append(f"{name} is {state}")
        if state == "SUCCEEDED" and (run_id, task_key, attempt) not in ended:
            findings.succeeded_without_execution.append(f"{name} attempt {attempt}")
    transitions = select(TaskEvent.run_id, TaskEvent.task_key).where(
        TaskEvent.to_state.in_(TERMINAL_TASKS),
        TaskEvent.from_state.is_not(None),
        TaskEvent.from_state.not_in(TERMINAL_TASKS),
    )
    for run_id, task_key in session.execute(transitions):
        findings.terminal_transitions[f"{run_id}/{task_key}"] += 1


def count_executions(executions: list[Execution], findings: Findings) -> None:
    starts = [e for e in executions if e.phase == "start"]
    findings.executions = len(starts)
    per_attempt = Counter((e.run_id, e.task_key, e.attempt) for e in starts)
    findings.duplicate_executions = sum(count - 1 for count in per_attempt.values())
    per_task = Counter((run_id, task_key) for run_id, task_key, _ in per_attempt)
    findings.re_executions = sum(count - 1 for count in per_task.values())


def _server_errors(api_log: Path) -> list[tuple[datetime, str]]:
    errors = []
    for line in api_log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # uvicorn's own lines (tracebacks of the 500s logged below)
        record = json.loads(line)
        if record.get("event") == "server_error" and str(record.get("route", "")).endswith(
            CALLBACK_PHASES
        ):
            errors.append(
                (parse_timestamp(record["timestamp"]), f"{record['status']} {record['path']}")
            )
    return errors


def _slack(outage: Outage) -> float:
    return DATABASE_SLACK_SECS if outage.what == POSTGRES else 0.0


def check_server_errors(api_logs: list[Path], outages: list[Outage], findings: Findings) -> None:
    for log_path in api_logs:
        for moment, what in _server_errors(log_path):
            allowed = any(
                outage.covers(
                    moment, slack_secs=DATABASE_SLACK_SECS if outage.what == POSTGRES else 0
                )
                for outage in outages
                if outage.what in (POSTGRES, "api")
            )
            if allowed:
                findings.server_errors_in_outages += 1
            else:
                findings.server_errors_outside_outages.append(f"{moment.isoformat()} {what}")
