"""Worker callbacks ``POST /api/v1/tasks/{task_id}/started|heartbeat|completed``, in the exact
processing order of arco-contract section 5.5: bearer token, body, taskId claim vs path,
storage ids, attempt 0, then the state checks of ``arco_orchestration.callbacks``.

Two callbacks per task make these the API's hottest routes, so the app's
:class:`~arco_api.fast_path.FastPath` serves them (:func:`fast_routes`) ahead of FastAPI's
router (whose route matching and dependency solving cost more CPU than the rest of a callback
outside the database). The routes below stay declared: they are the OpenAPI document's, and
the fast path calls the same endpoint functions."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import BaseRoute

from arco_api import bodies
from arco_api import openapi_docs as docs
from arco_api.auth import bearer_token, storage_id_problem
from arco_api.context import ApiContext, api_context
from arco_api.fast_path import Endpoint
from arco_api.http_io import BodyError, parse_json, read_body, validation_error
from arco_envelope import (
    CallbackErrorCode,
    HeartbeatRequest,
    TaskCompletedRequest,
    TaskStartedRequest,
    format_timestamp,
)
from arco_envelope.tokens import (
    InvalidTaskToken,
    TaskTokenClaims,
    mint_task_token,
)
from arco_envelope.wire import WireModel
from arco_orchestration import callbacks
from arco_orchestration.callbacks import CallbackResult, callback_error, invalid_token
from arco_orchestration.scope import Scope

log = structlog.get_logger("arco_api.callbacks")
router = APIRouter(prefix="/api/v1/tasks", tags=["worker callbacks"])

CLOCK_SKEW_LIMIT = timedelta(minutes=5)
# Design D8: a heartbeat answer carries a fresh token when less than this share is left.
TOKEN_REFRESH_FRACTION = 0.2

Body = TypeVar("Body", TaskStartedRequest, HeartbeatRequest, TaskCompletedRequest)
Handler = Callable[..., CallbackResult]


def _answer(context: ApiContext, phase: str, result: CallbackResult) -> JSONResponse:
    context.metrics.callbacks.labels(phase=phase, status=str(result.status)).inc()
    return JSONResponse(result.body, status_code=result.status)


def _body_error(context: ApiContext, phase: str, error: BodyError) -> JSONResponse:
    # Design D9: every callback error message starts with its code.
    message = error.message
    if not message.startswith(f"{error.code}: "):
        message = f"{error.code}: {message}"
    body: dict[str, Any] = {"error": error.code, "message": message}
    if error.detail is not None:
        body["detail"] = error.detail
    context.metrics.callbacks.labels(phase=phase, status=str(error.status)).inc()
    return JSONResponse(body, status_code=error.status)


def _authenticate(
    context: ApiContext, request: Request, now: datetime
) -> tuple[Scope, TaskTokenClaims | None] | CallbackResult:
    token = bearer_token(request)
    if token is None:
        return invalid_token("missing bearer token")
    if context.settings.debug_active:
        tenant = request.headers.get("x-tenant-id", "").strip()
        workspace = request.headers.get("x-workspace-id", "").strip()
        if not tenant or not workspace:
            return invalid_token("missing tenant/workspace headers")
        return Scope(tenant, workspace), None
    try:
        claims = context.task_token_verifier.verify(context.task_tokens, token, now=now)
    except InvalidTaskToken as exc:
        return invalid_token(str(exc))
    return Scope(claims.tenant_id, claims.workspace_id), claims


_OBSERVED_FIELDS = ("started_at", "heartbeat_at", "completed_at")


def _observed_at(body: WireModel) -> datetime | None:
    # Looked up among the model's fields, not with getattr(body, name, None): a pydantic
    # model raises and catches AttributeError for a name it lacks, which cost a callback
    # more CPU than the rest of this check.
    fields = type(body).model_fields
    for name in _OBSERVED_FIELDS:
        if name in fields:
            value = getattr(body, name)
            if isinstance(value, datetime):
                return value
    return None


def _refreshed_token(
    context: ApiContext, claims: TaskTokenClaims | None, now: datetime
) -> dict[str, str]:
    """A fresh token for the same attempt when the current one is close to expiry."""
    config = context.task_tokens
    if claims is None or not claims.is_scoped or claims.attempt is None:
        return {}
    remaining = claims.exp - math.floor(now.timestamp())
    if remaining >= config.ttl_seconds * TOKEN_REFRESH_FRACTION:
        return {}
    token, expires_at = mint_task_token(
        config,
        task_id=claims.task_id,
        tenant_id=claims.tenant_id,
        workspace_id=claims.workspace_id,
        run_id=claims.run_id,
        attempt=claims.attempt,
        attempt_id=claims.attempt_id,
        now=now,
    )
    return {"taskToken": token, "tokenExpiresAt": format_timestamp(expires_at)}


async def _handle(
    request: Request, task_id: str, phase: str, model: type[Body], handler: Handler
) -> JSONResponse:
    context = api_context(request)
    now = context.clock()
    authenticated = _authenticate(context, request, now)
    if isinstance(authenticated, CallbackResult):
        return _answer(context, phase, authenticated)
    scope, claims = authenticated
    try:
        raw = await read_body(request, context.settings.callback_body_limit)
        parse_json(raw)
        body = model.from_json(raw)
    except BodyError as error:
        return _body_error(context, phase, error)
    except ValidationError as exc:
        return _body_error(context, phase, validation_error(exc))
    if claims is not None and claims.task_id != task_id:
        return _answer(context, phase, invalid_token("task_id_mismatch"))
    for name, value in (("tenant_id", scope.tenant_id), ("workspace_id", scope.workspace_id)):
        if problem := storage_id_problem(name, value):
            return JSONResponse({"code": "BAD_REQUEST", "message": problem}, status_code=400)
    if body.attempt == 0:
        return _answer(
            context,
            phase,
            callback_error(
                CallbackErrorCode.INVALID_ARGUMENT, "Invalid attempt: must be >= 1", 400
            ),
        )
    if "\x00" in task_id:
        # No task id holds NUL (and PostgreSQL could not even compare against it).
        return _answer(
            context,
            phase,
            callback_error(CallbackErrorCode.TASK_NOT_FOUND, f"Task not found: {task_id}", 404),
        )
    observed = _observed_at(body)
    if observed is not None and abs(observed - now) > CLOCK_SKEW_LIMIT:
        context.metrics.clock_skew.labels(phase=phase).inc()
        log.warning("worker_clock_skew", phase=phase, worker_time=observed.isoformat())

    def apply() -> CallbackResult:
        with context.db.transaction() as session:
            return handler(session, scope, task_id, claims, body, now=now)

    try:
        result = await run_in_threadpool(apply)
    except DataError:
        # A value the database cannot hold (an error message longer than its column, an
        # attempt beyond its integer range): the worker's input, and nothing was stored.
        result = callback_error(
            CallbackErrorCode.INVALID_ARGUMENT,
            "a value is too long or out of range for its field",
            400,
        )
    if result.status == 200 and phase == "heartbeat":
        result.body.update(_refreshed_token(context, claims, now))
    structlog.contextvars.bind_contextvars(
        task_id=task_id, attempt=body.attempt, run_id=result.task.run_id if result.task else None
    )
    log.info("callback", phase=phase, status=result.status, applied=result.applied)
    return _answer(context, phase, result)


@router.post(
    "/{task_id}/started",
    summary="Worker reports the attempt started",
    responses=docs.callback_responses(bodies.TaskStartedAck),
    openapi_extra=docs.json_body(TaskStartedRequest, user=False),
)
async def started(request: Request, task_id: str) -> JSONResponse:
    return await _handle(request, task_id, "started", TaskStartedRequest, callbacks.handle_started)


@router.post(
    "/{task_id}/heartbeat",
    summary="Worker heartbeat; answers shouldCancel",
    responses=docs.callback_responses(bodies.HeartbeatAck),
    openapi_extra=docs.json_body(HeartbeatRequest, user=False),
)
async def heartbeat(request: Request, task_id: str) -> JSONResponse:
    return await _handle(
        request, task_id, "heartbeat", HeartbeatRequest, callbacks.handle_heartbeat
    )


@router.post(
    "/{task_id}/completed",
    summary="Worker reports the attempt's outcome",
    responses=docs.callback_responses(bodies.TaskCompletedAck),
    openapi_extra=docs.json_body(TaskCompletedRequest, user=False),
)
async def completed(request: Request, task_id: str) -> JSONResponse:
    retry_base = api_context(request).settings.retry_backoff_base
    handler = functools.partial(callbacks.handle_completed, retry_base=retry_base)
    return await _handle(request, task_id, "completed", TaskCompletedRequest, handler)


def _task_endpoint(endpoint: Callable[[Request, str], Awaitable[JSONResponse]]) -> Endpoint:
    async def serve(request: Request, params: dict[str, str]) -> Response:
        return await endpoint(request, params["task_id"])

    return serve


def fast_routes() -> list[tuple[BaseRoute, Endpoint]]:
    """The three callback routes with their endpoints, for :class:`FastPath`: a callback's
    answer is then byte for byte what the routed endpoint would give."""
    served = (started, heartbeat, completed)
    return [
        (route, _task_endpoint(route.endpoint))
        for route in router.routes
        if isinstance(route, APIRoute) and route.endpoint in served
    ]
