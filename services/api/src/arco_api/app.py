"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import structlog
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from arco_api import (
    callback_routes,
    console,
    log_routes,
    manifest_routes,
    openapi_docs,
    run_routes,
    system_routes,
)
from arco_api.auth import UserAuthenticator
from arco_api.context import ApiContext, utc_now
from arco_api.errors import ApiError
from arco_api.fast_path import FastPath
from arco_api.http_io import MAX_JSON_DEPTH
from arco_api.metrics import ApiMetrics
from arco_api.middleware import RequestContextMiddleware
from arco_api.settings import ApiSettings
from arco_orchestration.db import Database

log = structlog.get_logger("arco_api.http")

# nginx's "client closed request": what the metrics record for a request whose client hung
# up before the answer (nobody receives the response, so the status is only a label).
CLIENT_CLOSED_REQUEST = 499

DESCRIPTION = f"""The arco run API, worker callbacks, logs and manifests.

Every JSON request body (manifests, triggers, callbacks, logs) may nest arrays and objects at
most {MAX_JSON_DEPTH} levels deep; a deeper body is refused with 400 before anything reads it:
`{{"error": "invalid_json", ...}}` on worker callbacks, `{{"code": "BAD_REQUEST", ...}}` on user
routes, like any other body that is not JSON."""

_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def create_app(
    settings: ApiSettings,
    db: Database | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the API. ``db`` defaults to the database of ``ARCO_DATABASE_URL``."""
    database = db or Database.from_url(settings.database_url or None)
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Every blocking database call runs on the thread pool: with no more threads than
        # pooled connections, a burst of callbacks queues for a thread instead of opening
        # and closing overflow connections.
        if slots := database.pool_size:
            to_thread.current_default_thread_limiter().total_tokens = slots
        yield

    # Paths are exact (arco-contract 4): a trailing slash is 404, never a redirect.
    app = FastAPI(
        title="arco-api",
        version="0.1.0",
        description=DESCRIPTION,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.arco = ApiContext(
        settings=settings,
        db=database,
        users=UserAuthenticator(settings),
        task_tokens=settings.task_token_config(),
        metrics=metrics,
        clock=clock,
    )
    # Innermost first: the fast path runs inside the request context. Callbacks come first
    # in it: two per task, against one trigger per run.
    app.add_middleware(
        FastPath,
        api=app,
        method="POST",
        routes=[
            *callback_routes.fast_routes(),
            (run_routes.TRIGGER_ROUTE, run_routes.trigger_fast),
        ],
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # The router tries routes in this order and stops at the first full match, so the routes
    # every run takes come first (no two routers' paths overlap, so the order changes nothing
    # else).
    for router in (
        run_routes.router,
        callback_routes.router,
        log_routes.router,
        manifest_routes.router,
        system_routes.router,
    ):
        app.include_router(router)
    openapi_docs.install(app)
    console.install(app)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(_request_id(request)), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": [str(p) for p in error["loc"]], "msg": error["msg"]} for error in exc.errors()
        ]
        body = {
            "code": "BAD_REQUEST",
            "error": "invalid_request",
            "message": "invalid_request: request does not match the schema",
            "detail": detail,
        }
        if request_id := _request_id(request):
            body["requestId"] = request_id
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        body: dict[str, str] = {"code": code, "message": str(exc.detail)}
        if request_id := _request_id(request):
            body["requestId"] = request_id
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up while sending its body: not a server fault, and no one will read
        # an answer. Nothing was stored (bodies are read before any transaction).
        route = getattr(request.scope.get("route"), "path", None)
        log.info("client_disconnected", method=request.method, route=route)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        # The database is unreachable (down, restarting, failing over) or busy: transient,
        # and callbacks are idempotent, so clients retry.
        body = {"code": "UNAVAILABLE", "message": "database unavailable; retry shortly"}
        if request_id := _request_id(request):
            body["requestId"] = request_id
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(DataError)
    async def _unstorable_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value of the request (a string longer than its column, an
        # integer out of range): the client's input, so a 400, and nothing was stored.
        body = {
            "code": "BAD_REQUEST",
            "message": "invalid_request: a value is too long or out of range for its field",
        }
        if request_id := _request_id(request):
            body["requestId"] = request_id
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        body = {"code": "INTERNAL", "message": f"internal error: {type(exc).__name__}"}
        headers: dict[str, str] = {}
        if request_id := _request_id(request):
            body["requestId"] = request_id
            # This handler answers outside the request-id middleware: set the header here.
            headers["x-request-id"] = request_id
        return JSONResponse(body, status_code=500, headers=headers)

    return app
