"""Request id on every response, structured request logs and latency metrics (pure ASGI, so
it adds little to the hot callback path)."""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from arco_api.metrics import ApiMetrics

log = structlog.get_logger("arco_api.http")
REQUEST_ID_HEADER = b"x-request-id"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", []):
            if name == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1").strip()
                break
        request_id = request_id or str(ULID())
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(
                method=scope["method"], route=path, status=str(status)
            ).observe(elapsed)
            # No access log on the hot path, but every server error leaves a line behind.
            if status >= 500:
                log.error(
                    "server_error",
                    method=scope["method"],
                    route=path,
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(elapsed * 1000, 1),
                )
