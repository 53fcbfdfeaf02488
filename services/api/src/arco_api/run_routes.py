"""The run API (arco-orchestration sections 2 and 6) plus per-task views (design D3)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from ulid import ULID

from arco_api import openapi_docs as docs
from arco_api.context import ApiContext, api_context
from arco_api.deps import PrincipalDep, ScopeDep
from arco_api.errors import ApiError, bad_request, conflict, not_found
from arco_api.http_io import BodyError, parse_json, read_body
from arco_api.manifest_routes import latest_manifest
from arco_envelope import format_timestamp
from arco_orchestration import facts, queries
from arco_orchestration.facts import CancelDisposition
from arco_orchestration.manifest import ManifestError
from arco_orchestration.models import Run, Task, TaskDependency
from arco_orchestration.planning import (
    ParentTask,
    PlanningError,
    check_rerun_parent,
    deterministic_rerun_run_key,
    parse_rerun_request,
    parse_trigger_request,
    plan_rerun,
    plan_run,
    rerun_labels,
    rerun_request_fingerprint,
    run_request_fingerprint,
)
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/runs", tags=["runs"])

JSON_BODY_LIMIT = 2 * 1024 * 1024
NO_MANIFEST = "no manifest deployed for workspace; deploy a manifest before triggering a run"


async def _json_body(request: Request, limit: int = JSON_BODY_LIMIT) -> Any:
    try:
        return parse_json(await read_body(request, limit))
    except BodyError as error:
        raise ApiError(error.status, "BAD_REQUEST", error.message) from None


async def _in_transaction(context: ApiContext, work: Any) -> Any:
    def run() -> Any:
        with context.db.transaction() as session:
            return work(session)

    return await run_in_threadpool(run)


def _trigger_response(run: Run, *, created: bool, state: str, created_at: str) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "planId": run.plan_id,
        "state": state,
        "created": created,
        "createdAt": created_at,
    }


@router.post(
    "",
    status_code=201,
    summary="Trigger a run of selected assets",
    responses=docs.user_responses(
        {201: docs.RunTriggered, 200: docs.RunTriggered}, (400, 401, 404, 409, 413, 415, 422)
    ),
    openapi_extra={**docs.json_body(docs.TriggerRunRequest), "parameters": [docs.IDEMPOTENCY_KEY]},
)
async def trigger_run(request: Request, scope: ScopeDep, principal: PrincipalDep) -> JSONResponse:
    context = api_context(request)
    document = await _json_body(request)
    try:
        trigger = parse_trigger_request(
            document, idempotency_key=request.headers.get("idempotency-key")
        )
    except PlanningError as exc:
        raise _planning_error(exc) from None
    now = context.clock()

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        latest = latest_manifest(session, scope.tenant_id, scope.workspace_id)
        if latest is None:
            raise bad_request(NO_MANIFEST)
        manifest_id, manifest = latest
        try:
            tasks = plan_run(manifest, trigger)
        except (PlanningError, ManifestError) as exc:
            raise _planning_error(exc) from None
        timeout = context.settings.task_heartbeat_timeout_secs
        tasks = [replace(task, heartbeat_timeout_sec=timeout) for task in tasks]
        partition_key = tasks[0].partition_key if tasks else None
        fingerprint = run_request_fingerprint(trigger, partition_key)
        run_id, plan_id = str(ULID()), str(ULID())
        if trigger.run_key is not None:
            reservation = facts.reserve_run_key(
                session,
                scope,
                run_key=trigger.run_key,
                run_id=run_id,
                plan_id=plan_id,
                fingerprint=fingerprint,
                now=now,
            )
            if not reservation.created:
                return _replay(session, scope, reservation, fingerprint)
        run = facts.trigger_run(
            session,
            scope,
            run_id=run_id,
            plan_id=plan_id,
            tasks=tasks,
            now=now,
            triggered_by=principal.user_id or "api",
            run_key=trigger.run_key,
            labels=dict(trigger.labels),
            code_version=manifest.code_version_id,
            manifest_id=manifest_id,
        )
        return 201, _trigger_response(
            run, created=True, state="PENDING", created_at=format_timestamp(now)
        )

    status, body = await _in_transaction(context, work)
    if status == 201:
        context.metrics.runs_triggered.inc()
    return JSONResponse(body, status_code=status)


def _planning_error(exc: PlanningError | ManifestError) -> ApiError:
    status = exc.status_code
    code = {409: "CONFLICT", 422: "UNPROCESSABLE_ENTITY"}.get(status, "BAD_REQUEST")
    return ApiError(status, code, exc.message)


def _replay(
    session: Session, scope: Scope, reservation: facts.RunKeyReservation, fingerprint: str
) -> tuple[int, dict[str, Any]]:
    if reservation.fingerprint != fingerprint:
        raise conflict(
            f"run_key '{reservation.run_key}' already reserved with different trigger payload",
            {
                "conflictType": "RUN_KEY_FINGERPRINT_MISMATCH",
                "runKey": reservation.run_key,
                "existingRunId": reservation.run_id,
                "existingPlanId": reservation.plan_id,
                "existingFingerprint": reservation.fingerprint,
                "requestedFingerprint": fingerprint,
                "existingCreatedAt": format_timestamp(reservation.created_at),
            },
        )
    run = queries.get_run(session, scope, reservation.run_id)
    state = queries.public_state_of(session, run).value if run else "PENDING"
    return 200, {
        "runId": reservation.run_id,
        "planId": reservation.plan_id,
        "state": state,
        "created": False,
        "createdAt": format_timestamp(reservation.created_at),
    }


@router.get(
    "",
    summary="List runs, newest first",
    response_model=None,
    responses=docs.user_responses({200: docs.RunList}),
    openapi_extra=docs.USER_AUTH,
)
async def list_runs(
    request: Request,
    scope: ScopeDep,
    limit: Annotated[int, Query()] = 20,
    cursor: Annotated[str | None, Query()] = None,
    state: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    context = api_context(request)
    if not 1 <= limit <= 200:
        raise bad_request("limit must be between 1 and 200")
    wanted: PublicRunState | None = None
    if state is not None:
        try:
            wanted = PublicRunState(state)
        except ValueError:
            raise bad_request(f"invalid state filter: {state}") from None

    def work(session: Session) -> dict[str, Any]:
        try:
            return queries.list_runs(session, scope, limit=limit, cursor=cursor, state=wanted)
        except queries.InvalidCursor:
            raise bad_request("invalid cursor") from None

    result: dict[str, Any] = await _in_transaction(context, work)
    return result


@router.get(
    "/{run_id}",
    summary="Run detail with task summaries and counts",
    response_model=None,
    responses=docs.user_responses({200: docs.RunDetail}),
    openapi_extra=docs.USER_AUTH,
)
async def get_run(request: Request, scope: ScopeDep, run_id: str) -> dict[str, Any]:
    context = api_context(request)
    found = await _in_transaction(
        context, lambda session: queries.run_detail(session, scope, run_id)
    )
    if found is None:
        raise not_found(f"run not found: {run_id}")
    result: dict[str, Any] = found
    return result


@router.post(
    "/{run_id}/cancel",
    summary="Cancel a run",
    response_model=None,
    responses=docs.user_responses({200: docs.RunCancelled}, (400, 401, 404, 409, 413, 415, 422)),
    openapi_extra=docs.json_body(docs.CancelRunRequest),
)
async def cancel_run(request: Request, scope: ScopeDep, run_id: str) -> dict[str, Any]:
    context = api_context(request)
    document = await _json_body(request)
    if not isinstance(document, dict):
        raise bad_request("cancel body must be a JSON object")
    reason = document.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_request("reason must be a string")
    now = context.clock()

    def work(session: Session) -> dict[str, Any]:
        disposition, run = facts.cancel_run(session, scope, run_id, reason=reason, now=now)
        if disposition is CancelDisposition.NOT_FOUND or run is None:
            raise not_found(f"run not found: {run_id}")
        if disposition is CancelDisposition.ALREADY_TERMINAL:
            raise conflict(f"run {run_id} is already in terminal state {run.state}")
        state = queries.public_state_of(session, run).value
        cancelled_at = run.cancel_requested_at or now
        return {"runId": run.run_id, "state": state, "cancelledAt": format_timestamp(cancelled_at)}

    result: dict[str, Any] = await _in_transaction(context, work)
    return result


@router.get(
    "/{run_id}/tasks",
    summary="Every task of a run with stored state and history",
    response_model=None,
    responses=docs.user_responses({200: docs.RunTasks}),
    openapi_extra=docs.USER_AUTH,
)
async def list_tasks(request: Request, scope: ScopeDep, run_id: str) -> dict[str, Any]:
    context = api_context(request)
    found = await _in_transaction(
        context, lambda session: queries.list_task_details(session, scope, run_id)
    )
    if found is None:
        raise not_found(f"run not found: {run_id}")
    return {"runId": run_id, "tasks": found}


@router.get(
    "/{run_id}/tasks/{task_key}",
    summary="One task: state, attempts, history, delivery",
    response_model=None,
    responses=docs.user_responses({200: docs.TaskDetail}),
    openapi_extra=docs.USER_AUTH,
)
async def get_task(request: Request, scope: ScopeDep, run_id: str, task_key: str) -> dict[str, Any]:
    context = api_context(request)
    found = await _in_transaction(
        context, lambda session: queries.get_task_detail(session, scope, run_id, task_key)
    )
    if found is None:
        raise not_found(f"task not found: {run_id}/{task_key}")
    result: dict[str, Any] = found
    return result


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    summary="Rerun a run from failure or a subset",
    responses=docs.user_responses(
        {201: docs.RerunTriggered, 200: docs.RerunTriggered}, (400, 401, 404, 409, 413, 415, 422)
    ),
    openapi_extra=docs.json_body(docs.RerunRunRequest),
)
async def rerun(
    request: Request, scope: ScopeDep, principal: PrincipalDep, run_id: str
) -> JSONResponse:
    context = api_context(request)
    document = await _json_body(request)
    try:
        rerun_request = parse_rerun_request(document)
    except PlanningError as exc:
        raise _planning_error(exc) from None
    now = context.clock()

    def work(session: Session) -> tuple[int, dict[str, Any]]:
        parent = queries.get_run(session, scope, run_id)
        if parent is None:
            raise not_found(f"run not found: {run_id}")
        parent_tasks = [
            ParentTask(
                key=task.task_key,
                state=task.state,
                asset_key=task.asset_key,
                partition_key=task.partition_key,
                max_attempts=task.max_attempts,
                heartbeat_timeout_sec=task.heartbeat_timeout_sec,
                requires_visible_output=task.requires_visible_output,
            )
            for task in session.scalars(select(Task).where(Task.run_id == run_id))
        ]
        edges = [
            (edge.upstream_key, edge.downstream_key)
            for edge in session.scalars(
                select(TaskDependency).where(TaskDependency.run_id == run_id)
            )
        ]
        try:
            check_rerun_parent(rerun_request.kind, parent.state)
            plan = plan_rerun(
                rerun_request.kind,
                parent_tasks,
                edges,
                selection=rerun_request.selection,
                include_upstream=rerun_request.include_upstream,
                include_downstream=rerun_request.include_downstream,
            )
        except PlanningError as exc:
            raise _planning_error(exc) from None
        labels = rerun_labels(dict(rerun_request.labels), run_id, rerun_request.kind)
        run_key = rerun_request.run_key or deterministic_rerun_run_key(
            run_id, rerun_request.kind, plan.selected_tasks, plan.partition_keys
        )
        fingerprint = rerun_request_fingerprint(run_id, plan, labels)
        new_run_id, plan_id = str(ULID()), str(ULID())
        extras = {
            "parentRunId": run_id,
            "rerunKind": rerun_request.kind,
            "rerunReason": plan.reason,
        }
        reservation = facts.reserve_run_key(
            session,
            scope,
            run_key=run_key,
            run_id=new_run_id,
            plan_id=plan_id,
            fingerprint=fingerprint,
            now=now,
        )
        if not reservation.created:
            status, body = _replay(session, scope, reservation, fingerprint)
            return status, {**body, **extras}
        run = facts.trigger_run(
            session,
            scope,
            run_id=new_run_id,
            plan_id=plan_id,
            tasks=plan.tasks,
            now=now,
            triggered_by=principal.user_id or "api",
            run_key=run_key,
            labels=labels,
            code_version=parent.code_version,
            manifest_id=parent.manifest_id,
            parent_run_id=run_id,
            rerun_kind=rerun_request.kind,
            rerun_reason=plan.reason,
        )
        body = _trigger_response(
            run, created=True, state="PENDING", created_at=format_timestamp(now)
        )
        return 201, {**body, **extras}

    status, body = await _in_transaction(context, work)
    return JSONResponse(body, status_code=status)
