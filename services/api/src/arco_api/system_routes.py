"""Unauthenticated routes: health, readiness, version, Prometheus metrics."""

from __future__ import annotations

from importlib.metadata import version

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from arco_api import bodies
from arco_api import openapi_docs as docs
from arco_api.context import api_context
from arco_api.errors import not_found
from arco_api.settings import Posture
from arco_orchestration.migrate import schema_problem
from arco_orchestration.queries import count_tasks_by_state
from arco_orchestration.states import TaskState

router = APIRouter(tags=["system"])


@router.get("/health", response_class=JSONResponse, response_description="OK")
async def health() -> bodies.Health:
    return bodies.Health(status="ok")


@router.get(
    "/ready",
    response_model=None,
    responses={
        200: docs.json_response(bodies.Readiness, 200),
        503: docs.json_response(bodies.Readiness, 503),
    },
)
async def ready(request: Request) -> JSONResponse:
    """Ready when the database answers and its schema is at the head revision."""
    context = api_context(request)
    problem = await run_in_threadpool(schema_problem, context.db.engine)
    if problem:
        return JSONResponse({"ready": False, "message": problem}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/version", response_class=JSONResponse, response_description="OK")
async def version_info(request: Request) -> bodies.VersionInfo:
    context = api_context(request)
    return bodies.VersionInfo(
        service="arco-api",
        package_version=version("arco-api"),
        code_version=context.settings.code_version,
    )


@router.get(
    "/metrics",
    # The route answers with its own Response; the class only documents the media type.
    response_class=PlainTextResponse,
    responses={
        200: docs.text_response("Prometheus metrics (text exposition format)"),
        404: docs.json_response(bodies.ApiErrorBody, 404),
    },
)
async def metrics(request: Request) -> Response:
    context = api_context(request)
    if context.settings.posture is Posture.PUBLIC:
        raise not_found("not found")

    def refresh() -> None:
        with context.db.transaction() as session:
            counts = count_tasks_by_state(session)
        for state in TaskState:
            context.metrics.tasks_by_state.labels(state=state.value).set(counts.get(state, 0))

    await run_in_threadpool(refresh)
    # Rendering walks every series: off the event loop, so a scrape never stalls requests.
    text = await run_in_threadpool(generate_latest, context.metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
