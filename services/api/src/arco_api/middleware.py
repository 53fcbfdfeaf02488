"""Request id on every response, structured request logs and latency metrics (pure ASGI, so
it adds little to the hot callback path)."""

from __future__ import annotations

import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from arco_api.metrics import ApiMetrics

log = structlog.get_logger("arco_api.http")
REQUEST_ID_HEADER = b"x-request-id"
# A client's X-Request-Id is kept only when short and plain; anything else (long, spaces,
# control or non-ASCII characters) is replaced with a fresh id so logs and headers stay clean.
_PLAIN_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Metric labels come from a closed set: any other method counts as OTHER, an unmatched path
# as "unmatched", so a client cannot grow the histogram with made-up values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
UNMATCHED_ROUTE = "unmatched"


def request_id_of(given: bytes | None) -> str:
    """The client's request id when it is plain enough to echo and log, else a fresh ULID."""
    if given is not None:
        text = given.decode("latin-1")
        if _PLAIN_REQUEST_ID.fullmatch(text):
            return text
    return str(ULID())


def method_label(method: str) -> str:
    """``method`` when it is a standard HTTP method, else ``OTHER``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (value for name, value in scope.get("headers", []) if name == REQUEST_ID_HEADER), None
        )
        request_id = request_id_of(given)
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
            # The route's template (``/api/v1/tasks/{task_id}/started``), never the raw path.
            path = getattr(route, "path", UNMATCHED_ROUTE)
            method = method_label(scope["method"])
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(method=method, route=path, status=str(status)).observe(
                elapsed
            )
            # No access log on the hot path, but every server error leaves a line behind.
            if status >= 500:
                log.error(
                    "server_error",
                    method=method,
                    route=path,
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(elapsed * 1000, 1),
                )
