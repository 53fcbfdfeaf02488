"""Worker callbacks against stored state: task resolution, token scope checks and the
409/410 rules of arco-contract section 5.5 (steps 8 to 15), applied under the run lock so the
check and the write see the same state.

The HTTP layer does steps 1 to 7 (bearer token, body, ``taskId`` claim vs path, attempt 0)
and turns a :class:`CallbackResult` into a response.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_envelope import (
    CallbackErrorCode,
    HeartbeatRequest,
    InvalidCallbackTaskId,
    TaskCompletedRequest,
    TaskStartedRequest,
    callback_task_id,
    format_timestamp,
    parse_callback_task_id,
)
from arco_envelope.tokens import TaskTokenClaims
from arco_orchestration.facts import (
    Completion,
    RunLock,
    apply_completion,
    apply_heartbeat,
    apply_started,
    run_with_task,
)
from arco_orchestration.models import Run, Task
from arco_orchestration.scope import Scope
from arco_orchestration.states import RETRY_BACKOFF_BASE, TaskState

CANCEL_REASON_USER_REQUESTED = "user_requested"


@dataclass
class CallbackResult:
    """HTTP status and JSON body of a callback answer; ``applied`` tells whether state changed."""

    status: int
    body: dict[str, Any]
    applied: bool = False
    task: Task | None = None


def callback_error(
    code: CallbackErrorCode, text: str, status: int, **fields: Any
) -> CallbackResult:
    """An error answer; the message starts with the code (design D9)."""
    body: dict[str, Any] = {"error": code.value, "message": f"{code.value}: {text}"}
    body.update({key: value for key, value in fields.items() if value is not None})
    return CallbackResult(status=status, body=body)


def invalid_token(reason: str) -> CallbackResult:
    return callback_error(CallbackErrorCode.INVALID_TOKEN, reason, 401)


@dataclass(frozen=True)
class ResolvedTask:
    run_id: str
    task_key: str


def resolve_task(
    session: Session, scope: Scope, path_task_id: str, run_scope: str | None
) -> ResolvedTask | CallbackResult:
    """Resolve the path ``taskId`` (section 5.6): a ``ct1_`` id, or a legacy task key."""
    try:
        run_id, task_key = parse_callback_task_id(path_task_id)
    except InvalidCallbackTaskId:
        if run_scope is not None:
            return ResolvedTask(run_scope, path_task_id)
        stmt = (
            select(Task.run_id)
            .where(
                Task.tenant_id == scope.tenant_id,
                Task.workspace_id == scope.workspace_id,
                Task.task_key == path_task_id,
            )
            .limit(2)
        )
        runs = list(session.scalars(stmt))
        if not runs:
            return _not_found(path_task_id)
        if len(runs) > 1:
            return callback_error(
                CallbackErrorCode.TASK_ID_AMBIGUOUS,
                f"Legacy task id is ambiguous; use opaque taskId: {path_task_id}",
                400,
            )
        return ResolvedTask(runs[0], path_task_id)
    if run_scope is not None and run_id != run_scope:
        return _not_found(path_task_id)
    return ResolvedTask(run_id, task_key)


def _not_found(path_task_id: str) -> CallbackResult:
    # Made when needed: two per callback, built up front, cost more than the check itself.
    return callback_error(CallbackErrorCode.TASK_NOT_FOUND, f"Task not found: {path_task_id}", 404)


def token_scope_problem(
    claims: TaskTokenClaims, scope: Scope, task: Task, path_task_id: str
) -> str | None:
    """Scoped token validation against the task's *current* state (section 6.4 B)."""
    canonical = callback_task_id(task.run_id, task.task_key)
    if claims.task_id != canonical and not (
        path_task_id != canonical and claims.task_id == path_task_id
    ):
        return "task_id_mismatch"
    if claims.tenant_id != scope.tenant_id:
        return "tenant_mismatch"
    if claims.workspace_id != scope.workspace_id:
        return "workspace_mismatch"
    if claims.run_id is None or claims.attempt is None or claims.attempt_id is None:
        return "missing_scope_claims"
    if claims.run_id != task.run_id:
        return "run_id_mismatch"
    if claims.attempt != task.attempt:
        return "attempt_mismatch"
    if claims.attempt_id != (task.attempt_id or ""):
        return "attempt_id_mismatch"
    return None


def _load(
    session: Session,
    scope: Scope,
    path_task_id: str,
    claims: TaskTokenClaims | None,
    *,
    lock: RunLock,
) -> tuple[Run, Task] | CallbackResult:
    resolved = resolve_task(
        session, scope, path_task_id, claims.run_id if claims is not None else None
    )
    if isinstance(resolved, CallbackResult):
        return resolved
    found = run_with_task(session, scope, resolved.run_id, resolved.task_key, lock=lock)
    if found is None:
        return _not_found(path_task_id)
    run, task = found
    if claims is not None and (problem := token_scope_problem(claims, scope, task, path_task_id)):
        return invalid_token(problem)
    return run, task


def _attempt_checks(
    task: Task, attempt: int, attempt_id: str, *, started: bool
) -> CallbackResult | None:
    state = TaskState(task.state)
    if started and state is TaskState.RETRY_WAIT and attempt == task.attempt:
        return callback_error(
            CallbackErrorCode.ATTEMPT_ALREADY_COMPLETED,
            f"Attempt {attempt} already reported a terminal result; task state is {state.value}",
            409,
            state=state.value,
            expectedAttempt=attempt,
            receivedAttempt=attempt,
        )
    if attempt != task.attempt:
        return callback_error(
            CallbackErrorCode.ATTEMPT_MISMATCH,
            f"Expected attempt {task.attempt}, received {attempt}",
            409,
            expectedAttempt=task.attempt,
            receivedAttempt=attempt,
        )
    expected_id = task.attempt_id or ""
    if attempt_id != expected_id:
        return callback_error(
            CallbackErrorCode.ATTEMPT_ID_MISMATCH,
            f"Expected attempt_id {expected_id}, received {attempt_id}",
            409,
            expectedAttemptId=expected_id,
            receivedAttemptId=attempt_id,
        )
    return None


def _already_terminal(state: str) -> CallbackResult:
    return callback_error(
        CallbackErrorCode.TASK_ALREADY_TERMINAL,
        f"Task is already in terminal state: {state}",
        409,
        state=state,
    )


# A start changes its own task only (RunLock says why a shared lock is enough for it); a
# completion may change the run and other tasks.
_RUN_LOCKS = {
    "heartbeat": RunLock.NONE,
    "started": RunLock.SHARED,
    "completed": RunLock.EXCLUSIVE,
}


def _checked(
    session: Session,
    scope: Scope,
    path_task_id: str,
    claims: TaskTokenClaims | None,
    body: TaskStartedRequest | HeartbeatRequest | TaskCompletedRequest,
    *,
    phase: str,
) -> tuple[Run, Task] | CallbackResult:
    """Steps 8 to 13 of section 5.5: resolve the task, check the token against its current
    state, then the terminal and attempt rules. Heartbeats take no run lock (they only
    refresh the task row; starts take a shared one) and answer 410 on a finished task where
    the others answer 409."""
    loaded = _load(session, scope, path_task_id, claims, lock=_RUN_LOCKS[phase])
    if isinstance(loaded, CallbackResult):
        return loaded
    run, task = loaded
    if TaskState(task.state).is_terminal:
        if phase == "heartbeat":
            return callback_error(
                CallbackErrorCode.TASK_EXPIRED, "Task is no longer active", 410, state=task.state
            )
        return _already_terminal(task.state)
    started = phase == "started"
    if problem := _attempt_checks(task, body.attempt, body.attempt_id, started=started):
        return problem
    return run, task


def handle_started(
    session: Session,
    scope: Scope,
    path_task_id: str,
    claims: TaskTokenClaims | None,
    body: TaskStartedRequest,
    *,
    now: datetime,
) -> CallbackResult:
    """``/started``: steps 8 to 15 of section 5.5."""
    checked = _checked(session, scope, path_task_id, claims, body, phase="started")
    if isinstance(checked, CallbackResult):
        return checked
    run, task = checked
    if run.cancel_requested:
        return _already_terminal(TaskState.CANCELLED.value)
    applied = apply_started(session, run, task, worker_id=body.worker_id, now=now)
    return CallbackResult(
        status=200,
        body={"acknowledged": True, "serverTime": format_timestamp(now)},
        applied=applied,
        task=task,
    )


def handle_heartbeat(
    session: Session,
    scope: Scope,
    path_task_id: str,
    claims: TaskTokenClaims | None,
    body: HeartbeatRequest,
    *,
    now: datetime,
) -> CallbackResult:
    """``/heartbeat``: 410 once terminal, ``shouldCancel`` while the run is being cancelled."""
    checked = _checked(session, scope, path_task_id, claims, body, phase="heartbeat")
    if isinstance(checked, CallbackResult):
        return checked
    run, task = checked
    applied = apply_heartbeat(
        session, task, now=now, progress_pct=body.progress_pct, message=body.message
    )
    response: dict[str, Any] = {"acknowledged": True, "shouldCancel": run.cancel_requested}
    if run.cancel_requested:
        response["cancelReason"] = CANCEL_REASON_USER_REQUESTED
    response["serverTime"] = format_timestamp(now)
    return CallbackResult(status=200, body=response, applied=applied, task=task)


def completion_from_request(body: TaskCompletedRequest) -> Completion:
    """The stored completion of a worker's ``/completed`` body; ``retryable`` normalised."""
    error = body.error
    error_dict = None
    if error is not None:
        error_dict = error.to_dict()
        error_dict["retryable"] = error.effective_retryable
    return Completion(
        outcome=body.outcome.value,
        worker_id=body.worker_id,
        error=error_dict,
        error_message=error.message if error is not None else None,
        output=body.output.to_dict() if body.output is not None else None,
        metrics=body.metrics.to_dict() if body.metrics is not None else None,
        cancelled_during_phase=body.cancelled_during_phase,
        partial_progress=body.partial_progress,
        # A FAILED completion without an error object counts as retryable (T7).
        retryable=error.effective_retryable if error is not None else True,
    )


def handle_completed(
    session: Session,
    scope: Scope,
    path_task_id: str,
    claims: TaskTokenClaims | None,
    body: TaskCompletedRequest,
    *,
    now: datetime,
    retry_base: timedelta = RETRY_BACKOFF_BASE,
) -> CallbackResult:
    """``/completed``: never blocked by cancellation; ``finalState`` echoes the outcome. A
    retry waits ``retry_base`` times 2^(attempt-1), capped (the API's setting)."""
    checked = _checked(session, scope, path_task_id, claims, body, phase="completed")
    if isinstance(checked, CallbackResult):
        return checked
    run, task = checked
    applied = apply_completion(
        session, run, task, completion_from_request(body), now=now, retry_base=retry_base
    )
    return CallbackResult(
        status=200,
        body={
            "acknowledged": True,
            "finalState": body.outcome.value,
            "serverTime": format_timestamp(now),
        },
        applied=applied,
        task=task,
    )
