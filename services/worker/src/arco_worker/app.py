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
from arco_worker.transport import Transport


class BodyTooLargeError(Exception):
    """A /dispatch body over ``ARCO_WORKER_MAX_BODY_BYTES``."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused before reading when Content-Length is over ``limit`` and as soon as
    a body without one (chunked) grows past it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: WorkerSettings,
    worker: TaskRegistry,
    *,
    options: ServiceOptions | None = None,
    http: httpx.AsyncClient | Transport | None = None,
) -> FastAPI:
    """Build the worker app; ``app.state.service`` is its :class:`WorkerService`.

    Raises ``RegistrationError`` when ``worker`` has no handlers. On lifespan shutdown the
    service drains as on SIGTERM (running handlers get ``ARCO_WORKER_SHUTDOWN_GRACE_SECS``).
    """
    service = WorkerService(settings, worker, options=options, http=http)
    secret = settings.dispatch_secret_value
    limit = settings.max_body_bytes

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
            envelope = parse_envelope(await read_limited(request, limit))
        except BodyTooLargeError:
            return JSONResponse(
                {
                    "error": "payload_too_large",
                    "message": f"dispatch body exceeds {limit} bytes (ARCO_WORKER_MAX_BODY_BYTES)",
                },
                status_code=413,
            )
        except InvalidDispatchError as exc:
            return JSONResponse(exc.body, status_code=400)
        admission = await service.dispatch(envelope)
        headers = {}
        if admission.retry_after is not None:
            headers["Retry-After"] = str(admission.retry_after)
        return JSONResponse(admission.body, status_code=admission.status, headers=headers)

    # A plain route: the endpoint takes the request and builds its response itself, so
    # FastAPI's dependency solving and response handling (a tenth of the worker's CPU per
    # task) have nothing to do.
    app.router.add_route("/dispatch", dispatch, methods=["POST"])
    return app
