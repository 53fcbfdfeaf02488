"""The run API (arco-orchestration sections 2 and 6) plus per-task views (design D3).

Each route parses and authorises, calls one use case of :mod:`arco_orchestration.usecases`
in a worker thread, and answers through the response model that documents the body.

A trigger starts every run, so ``POST …/runs`` is served by :func:`trigger_fast` ahead of
FastAPI's router (:class:`~arco_api.fast_path.FastPath`); the route below stays declared for
the OpenAPI document and shares everything after the dependencies with it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from arco_api import bodies
from arco_api import openapi_docs as docs
from arco_api.auth import Principal
from arco_api.context import api_context
from arco_api.deps import PrincipalDep, ScopeDep, current_principal, workspace_scope
from arco_api.errors import ApiError, bad_request
from arco_api.http_io import BodyError, parse_json, read_body
from arco_orchestration.planning import PlanningError, parse_rerun_request, parse_trigger_request
from arco_orchestration.scope import Scope
from arco_orchestration.usecases import reads, runs
from arco_orchestration.usecases.errors import rejected_by_rules

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/runs", tags=["runs"])

JSON_BODY_LIMIT = 2 * 1024 * 1024
# Every route answers through its response model; keys a use case leaves out stay out.
_SERIALISED: dict[str, Any] = {"response_model_exclude_unset": True, "response_class": JSONResponse}


async def _json_body(request: Request, limit: int = JSON_BODY_LIMIT) -> Any:
    try:
        return parse_json(await read_body(request, limit))
    except BodyError as error:
        raise ApiError(error.status, "BAD_REQUEST", error.message) from None


@router.post(
    "",
    status_code=201,
    summary="Trigger a run of selected assets",
    response_model=bodies.RunTriggered,
    **_SERIALISED,
    responses=docs.user_responses(
        {201: bodies.RunTriggered, 200: bodies.RunTriggered}, (400, 401, 404, 409, 413, 415, 422)
    ),
    openapi_extra={
        **docs.json_body(bodies.TriggerRunRequest),
        "parameters": [docs.IDEMPOTENCY_KEY],
    },
)
async def trigger_run(
    request: Request, response: Response, scope: ScopeDep, principal: PrincipalDep
) -> Any:
    triggered = await _trigger(request, scope, principal)
    response.status_code = triggered.status
    return triggered.body


async def _trigger(request: Request, scope: Scope, principal: Principal) -> runs.Triggered:
    context = api_context(request)
    document = await _json_body(request)
    try:
        trigger = parse_trigger_request(
            document, idempotency_key=request.headers.get("idempotency-key")
        )
    except PlanningError as exc:
        raise rejected_by_rules(exc) from None
    triggered = await run_in_threadpool(
        runs.trigger_run,
        context.db,
        scope,
        trigger,
        triggered_by=principal.user_id or "api",
        heartbeat_timeout_secs=context.settings.task_heartbeat_timeout_secs,
        now=context.clock(),
    )
    if triggered.created:
        context.metrics.runs_triggered.inc()
    return triggered


async def trigger_fast(request: Request, params: dict[str, str]) -> JSONResponse:
    """:func:`trigger_run` for :class:`~arco_api.fast_path.FastPath`: the route's
    dependencies in FastAPI's order, and its body as the response model renders it (the
    fields of ``RunTriggered``, in its order, all set)."""
    principal = await current_principal(request)
    scope = await workspace_scope(request, params["workspace_id"], principal)
    triggered = await _trigger(request, scope, principal)
    return JSONResponse(triggered.body, status_code=triggered.status)


TRIGGER_ROUTE = next(
    route for route in router.routes if getattr(route, "endpoint", None) is trigger_run
)


@router.get(
    "",
    summary="List runs, newest first",
    response_model=bodies.RunList,
    **_SERIALISED,
    responses=docs.user_responses({200: bodies.RunList}),
    openapi_extra=docs.USER_AUTH,
)
async def list_runs(
    request: Request,
    scope: ScopeDep,
    limit: Annotated[int, Query()] = 20,
    cursor: Annotated[str | None, Query()] = None,
    state: Annotated[str | None, Query()] = None,
) -> Any:
    context = api_context(request)
    return await run_in_threadpool(
        reads.list_runs, context.db, scope, limit=limit, cursor=cursor, state=state
    )


@router.get(
    "/{run_id}",
    summary="Run detail with task summaries and counts",
    response_model=bodies.RunDetail,
    **_SERIALISED,
    responses=docs.user_responses({200: bodies.RunDetail}),
    openapi_extra=docs.USER_AUTH,
)
async def get_run(request: Request, scope: ScopeDep, run_id: str) -> Any:
    context = api_context(request)
    return await run_in_threadpool(reads.run_detail, context.db, scope, run_id)


@router.post(
    "/{run_id}/cancel",
    summary="Cancel a run",
    response_model=bodies.RunCancelled,
    **_SERIALISED,
    responses=docs.user_responses({200: bodies.RunCancelled}, (400, 401, 404, 409, 413, 415, 422)),
    openapi_extra=docs.json_body(bodies.CancelRunRequest),
)
async def cancel_run(request: Request, scope: ScopeDep, run_id: str) -> Any:
    context = api_context(request)
    document = await _json_body(request)
    if not isinstance(document, dict):
        raise bad_request("cancel body must be a JSON object")
    reason = document.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_request("reason must be a string")
    return await run_in_threadpool(
        runs.cancel_run, context.db, scope, run_id, reason=reason, now=context.clock()
    )


@router.get(
    "/{run_id}/tasks",
    summary="Every task of a run with stored state and history",
    response_model=bodies.RunTasks,
    **_SERIALISED,
    responses=docs.user_responses({200: bodies.RunTasks}),
    openapi_extra=docs.USER_AUTH,
)
async def list_tasks(request: Request, scope: ScopeDep, run_id: str) -> Any:
    context = api_context(request)
    return await run_in_threadpool(reads.run_tasks, context.db, scope, run_id)


@router.get(
    "/{run_id}/tasks/{task_key}",
    summary="One task: state, attempts, history, delivery",
    response_model=bodies.TaskDetail,
    **_SERIALISED,
    responses=docs.user_responses({200: bodies.TaskDetail}),
    openapi_extra=docs.USER_AUTH,
)
async def get_task(request: Request, scope: ScopeDep, run_id: str, task_key: str) -> Any:
    context = api_context(request)
    return await run_in_threadpool(reads.task_detail, context.db, scope, run_id, task_key)


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    summary="Rerun a run from failure or a subset",
    response_model=bodies.RerunTriggered,
    **_SERIALISED,
    responses=docs.user_responses(
        {201: bodies.RerunTriggered, 200: bodies.RerunTriggered},
        (400, 401, 404, 409, 413, 415, 422),
    ),
    openapi_extra=docs.json_body(bodies.RerunRunRequest),
)
async def rerun(
    request: Request, response: Response, scope: ScopeDep, principal: PrincipalDep, run_id: str
) -> Any:
    context = api_context(request)
    document = await _json_body(request)
    try:
        rerun_request = parse_rerun_request(document)
    except PlanningError as exc:
        raise rejected_by_rules(exc) from None
    triggered = await run_in_threadpool(
        runs.rerun,
        context.db,
        scope,
        run_id,
        rerun_request,
        triggered_by=principal.user_id or "api",
        now=context.clock(),
    )
    response.status_code = triggered.status
    return triggered.body
