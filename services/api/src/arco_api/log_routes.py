"""Task log upload and read (arco-orchestration section 2.5).

An upload is authenticated with a user JWT (as upstream's worker does, with its API key) or
with the attempt's own task token (design D16: workers hold no user credential). A task token
may upload only its own task's and attempt's logs. Either way the task must be part of the run
and the attempt already dispatched, so nobody claims an attempt's slot before its worker.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from arco_api import bodies
from arco_api import openapi_docs as docs
from arco_api.auth import Principal, bearer_token
from arco_api.context import api_context
from arco_api.deps import ScopeDep, current_principal, workspace_scope
from arco_api.errors import ApiError, bad_request, conflict, not_found
from arco_api.http_io import BodyError, parse_json, read_body
from arco_envelope import InvalidCallbackTaskId, format_timestamp, parse_callback_task_id
from arco_envelope.tokens import InvalidTaskToken, TaskTokenClaims, verify_task_token
from arco_orchestration import queries
from arco_orchestration.models import Task, TaskLog
from arco_orchestration.scope import Scope
from arco_orchestration.states import TaskState

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/runs/{run_id}/logs", tags=["logs"])

LOG_BODY_LIMIT = 2 * 1024 * 1024
NEXT_CURSOR_HEADER = "x-arco-next-cursor"


# The current attempt of a task in these states has not been dispatched yet.
_NOT_DISPATCHED = frozenset({TaskState.PLANNED, TaskState.BLOCKED, TaskState.READY})


def _log_path(run_id: str, task_key: str, attempt: int) -> str:
    return f"logs/{run_id}/{task_key}/attempt-{attempt}.log"


def forbidden(message: str) -> ApiError:
    return ApiError(403, "FORBIDDEN", message)


async def log_writer(
    request: Request,
    workspace_id: Annotated[str, Path(description="Workspace id; must be the caller's")],
) -> tuple[Scope, TaskTokenClaims | None]:
    """The uploader: a scoped task token (checked against the body later), else a user."""
    context = api_context(request)
    token = bearer_token(request)
    claims: TaskTokenClaims | None = None
    if token is not None:
        try:
            claims = verify_task_token(context.task_tokens, token, now=context.clock())
        except InvalidTaskToken:
            claims = None  # not a task token (or not a valid one): try it as a user's
    if claims is None:
        principal = await current_principal(request)
        return await workspace_scope(request, workspace_id, principal), None
    if not claims.is_scoped:
        raise forbidden("a task token without run and attempt claims cannot upload logs")
    owner = Principal(claims.tenant_id, claims.workspace_id, None)
    return await workspace_scope(request, workspace_id, owner), claims


def _token_task_key(claims: TaskTokenClaims) -> str:
    try:
        return parse_callback_task_id(claims.task_id)[1]
    except InvalidCallbackTaskId:
        return claims.task_id  # upstream's legacy form: the task id is the task key


def _check_token_covers(claims: TaskTokenClaims, run_id: str, task_key: str, attempt: int) -> None:
    if (claims.run_id, _token_task_key(claims), claims.attempt) != (run_id, task_key, attempt):
        raise forbidden(
            "a task token may upload only its own attempt's logs: this one is for "
            f"{_token_task_key(claims)} attempt {claims.attempt} of run {claims.run_id}"
        )


def _check_dispatched(task: Task | None, run_id: str, task_key: str, attempt: int) -> None:
    if task is None:
        raise not_found(f"task {task_key} is not part of run {run_id}")
    dispatched = attempt < task.attempt or (
        attempt == task.attempt and TaskState(task.state) not in _NOT_DISPATCHED
    )
    if not dispatched:
        raise conflict(f"attempt {attempt} of task {task_key} has not been dispatched")


@router.post(
    "",
    status_code=201,
    summary="Upload the logs of one attempt (create-only)",
    responses=docs.user_responses(
        {201: bodies.LogUploaded}, (400, 401, 403, 404, 409, 413, 415, 422)
    ),
    openapi_extra={
        **docs.json_body(bodies.LogUploadRequest),
        "security": [{docs.USER_SECURITY: []}, {docs.TASK_SECURITY: []}],
    },
)
async def upload_logs(
    request: Request,
    writer: Annotated[tuple[Scope, TaskTokenClaims | None], Depends(log_writer)],
    run_id: str,
) -> JSONResponse:
    context = api_context(request)
    scope, claims = writer
    try:
        document = parse_json(await read_body(request, LOG_BODY_LIMIT))
    except BodyError as error:
        raise ApiError(error.status, "BAD_REQUEST", error.message) from None
    if not isinstance(document, dict):
        raise bad_request("log upload body must be a JSON object")
    task_key, attempt = document.get("taskKey"), document.get("attempt")
    stdout, stderr = document.get("stdout", ""), document.get("stderr", "")
    if not isinstance(task_key, str) or not task_key:
        raise bad_request("taskKey is required")
    if "\x00" in task_key:
        raise bad_request("taskKey must not contain NUL characters")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise bad_request("attempt must be an integer >= 1")
    if not isinstance(stdout, str) or not isinstance(stderr, str):
        raise bad_request("stdout and stderr must be strings")
    if claims is not None:
        _check_token_covers(claims, run_id, task_key, attempt)
    size = len(stdout.encode()) + len(stderr.encode())
    now = context.clock()

    def store() -> dict[str, Any]:
        with context.db.transaction() as session:
            if queries.get_run(session, scope, run_id) is None:
                raise not_found(f"run not found: {run_id}")
            _check_dispatched(session.get(Task, (run_id, task_key)), run_id, task_key, attempt)
            session.add(
                TaskLog(
                    run_id=run_id,
                    task_key=task_key,
                    attempt=attempt,
                    tenant_id=scope.tenant_id,
                    workspace_id=scope.workspace_id,
                    stdout=stdout,
                    stderr=stderr,
                    size_bytes=size,
                    created_at=now,
                )
            )
            session.flush()
        return {"path": _log_path(run_id, task_key, attempt), "sizeBytes": size}

    try:
        body = await run_in_threadpool(store)
    except IntegrityError:
        raise conflict(f"logs already uploaded for {task_key} attempt {attempt}") from None
    return JSONResponse(body, status_code=201)


@router.get(
    "",
    summary="Read uploaded logs as text",
    response_class=PlainTextResponse,
    responses={
        200: docs.text_response(
            "The logs, one section per attempt",
            {
                "X-Arco-Next-Cursor": {
                    "description": "cursor of the next page, when there is one",
                    "schema": {"type": "string"},
                }
            },
        ),
        **docs.user_responses({}),
    },
    openapi_extra=docs.USER_AUTH,
)
async def read_logs(
    request: Request,
    scope: ScopeDep,
    run_id: str,
    task_key: Annotated[str | None, Query(alias="taskKey")] = None,
    limit: Annotated[int, Query()] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> PlainTextResponse:
    context = api_context(request)
    if not 1 <= limit <= 200:
        raise bad_request("limit must be between 1 and 200")
    if cursor is not None and not cursor.isdigit():
        raise bad_request("invalid cursor")
    offset = int(cursor) if cursor else 0

    def load(session: Session) -> list[TaskLog]:
        stmt = select(TaskLog).where(
            TaskLog.run_id == run_id,
            TaskLog.tenant_id == scope.tenant_id,
            TaskLog.workspace_id == scope.workspace_id,
        )
        if task_key is not None:
            stmt = stmt.where(TaskLog.task_key == task_key)
        stmt = stmt.order_by(TaskLog.task_key, TaskLog.attempt).offset(offset).limit(limit + 1)
        return list(session.scalars(stmt))

    def run() -> list[TaskLog]:
        with context.db.transaction() as session:
            return load(session)

    rows = await run_in_threadpool(run)
    if not rows and cursor is None:
        raise not_found(f"no logs for run {run_id}")
    headers = {}
    if len(rows) > limit:
        rows = rows[:limit]
        headers[NEXT_CURSOR_HEADER] = str(offset + limit)
    parts = []
    for row in rows:
        parts.append(
            f"=== {row.task_key} attempt {row.attempt} ({format_timestamp(row.created_at)}) ===\n"
            f"--- stdout ---\n{row.stdout}\n--- stderr ---\n{row.stderr}\n"
        )
    return PlainTextResponse("".join(parts), headers=headers)
