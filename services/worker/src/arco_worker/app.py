"""The HTTP face of the worker: ``POST /dispatch`` and ``GET /health``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from arco_worker.auth import UNAUTHORIZED_MESSAGE, dispatch_authorized
from arco_worker.dispatch_checks import InvalidDispatchError, parse_envelope
from arco_worker.registry import TaskRegistry
from arco_worker.service import RETRY_AFTER_SHUTTING_DOWN, ServiceOptions, WorkerService
from arco_worker.settings import WorkerSettings


def create_app(
    settings: WorkerSettings,
    worker: TaskRegistry,
    *,
    options: ServiceOptions | None = None,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the worker app; ``app.state.service`` is its :class:`WorkerService`.

    Raises ``RegistrationError`` when ``worker`` has no handlers. On lifespan shutdown the
    service drains as on SIGTERM (running handlers get ``ARCO_WORKER_SHUTDOWN_GRACE_SECS``).
    """
    service = WorkerService(settings, worker, options=options, http=http)
    secret = settings.dispatch_secret_value

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.shutdown()
            await service.aclose()

    app = FastAPI(
        title="arco-worker", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.post("/dispatch")
    async def dispatch(request: Request) -> Response:
        # Authentication looks at headers only: an unauthenticated body is never read.
        if not dispatch_authorized(request.headers, secret):
            return JSONResponse(
                {"error": "unauthorized", "message": UNAUTHORIZED_MESSAGE}, status_code=401
            )
        if not service.accepting:
            return JSONResponse(
                {"error": "shutting_down", "message": "worker is shutting down"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SHUTTING_DOWN)},
            )
        try:
            envelope = parse_envelope(await request.body())
        except InvalidDispatchError as exc:
            return JSONResponse(exc.body, status_code=400)
        admission = await service.dispatch(envelope)
        headers = {}
        if admission.retry_after is not None:
            headers["Retry-After"] = str(admission.retry_after)
        return JSONResponse(admission.body, status_code=admission.status, headers=headers)

    return app
