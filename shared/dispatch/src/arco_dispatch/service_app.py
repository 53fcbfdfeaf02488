"""The HTTP frame both services share: ``GET /health``, ``/ready``, ``/version``,
``/metrics`` and ``POST /run``."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from arco_dispatch.metrics import ServiceMetrics
from arco_dispatch.runner import CycleRunner
from arco_orchestration.db import Database
from arco_orchestration.migrate import schema_problem
from arco_orchestration.queries import count_tasks_by_state
from arco_orchestration.states import TaskState

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def bearer_matches(request: Request, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` was sent, compared in constant time."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def create_service_app(
    *,
    service: str,
    db: Database,
    runner: CycleRunner[Any],
    metrics: ServiceMetrics,
    lifespan: Lifespan | None = None,
    run_token: str = "",
) -> FastAPI:
    """The app of service ``service`` (``dispatcher`` or ``sweeper``). With ``run_token``
    (``ARCO_FLOW_RUN_TOKEN``), ``POST /run`` requires it as a bearer token."""
    app = FastAPI(
        title=f"arco-{service}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """Ready when the database answers and its schema is at the head revision."""
        problem = await run_in_threadpool(schema_problem, db.engine)
        if problem:
            return JSONResponse({"ready": False, "message": problem}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/version")
    async def version_info() -> dict[str, str]:
        return {"service": f"arco-{service}", "packageVersion": version(f"arco-{service}")}

    @app.get("/metrics")
    async def prometheus() -> Response:
        def refresh() -> None:
            with db.transaction() as session:
                counts = count_tasks_by_state(session)
            for state in TaskState:
                metrics.tasks_by_state.labels(state=state.value).set(counts.get(state, 0))

        await run_in_threadpool(refresh)
        # Rendering walks every series: off the event loop, so a scrape never stalls a cycle.
        text = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @app.post("/run")
    async def run(request: Request) -> JSONResponse:
        """One full cycle: 200 with the summary, or 500 with the summary when an item
        failed; a hard failure (no database, say) is 500 ``{"error": ...}``. 401 without the
        run token when one is configured."""
        if run_token and not bearer_matches(request, run_token):
            return JSONResponse(
                {
                    "error": "unauthorized",
                    "message": "POST /run needs the ARCO_FLOW_RUN_TOKEN bearer",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            summary = await runner.run_once()
        except Exception as exc:  # noqa: BLE001 - reported to the caller, as upstream does
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
        return JSONResponse(summary.to_dict(), status_code=500 if summary.errors else 200)

    return app
