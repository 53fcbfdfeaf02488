"""A route served ahead of FastAPI's router, for the few requests every run makes.

FastAPI's route matching, dependency solving and response-model serialisation cost more
CPU than the rest of a one-task trigger outside the database. :class:`FastPath` answers one
method and path pattern with a plain endpoint function and passes everything else on. The
route stays declared on its router (the OpenAPI document's), and errors are answered by the
application's own exception handlers, so the answer is byte for byte the routed one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

Endpoint = Callable[[Request, dict[str, str]], Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def route_path(scope: AsgiScope) -> str:
    """The path the router would match: without the application's mount prefix."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(f"{root}/"):
        return path[len(root) :]
    return path


class FastPath:
    """Serves ``method`` on ``route`` (its path template, ``{name}`` one segment each, as
    the router matches them on the decoded path) with ``endpoint``, called with the request
    and the path parameters."""

    def __init__(
        self, app: ASGIApp, *, api: FastAPI, method: str, route: BaseRoute, endpoint: Endpoint
    ) -> None:
        self.app = app
        self._api = api
        self._method = method
        self._route = route
        template: str = getattr(route, "path", "")
        # Literal text escaped, each {name} one path segment (Starlette's default convertor).
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._pattern = re.compile(pattern)
        self._endpoint = endpoint
        self._handlers: Mapping[Any, ExceptionHandler] | None = None

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        if self._handlers is None:
            # Read at the first error: every handler is registered by then.
            self._handlers = cast(Mapping[Any, ExceptionHandler], self._api.exception_handlers)
        for cls in type(exc).__mro__:
            if cls is Exception:
                # Unexpected errors go on to Starlette's server-error layer, which answers
                # with the application's 500 handler and lets the server log the traceback.
                return None
            if cls in self._handlers:
                return self._handlers[cls]
        return None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        match = (
            self._pattern.fullmatch(route_path(scope))
            if scope["type"] == "http" and scope["method"] == self._method
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        params = match.groupdict()
        # As the router would have set them: the metrics label the route's template.
        scope["route"] = self._route
        scope["path_params"] = params
        request = Request(scope, receive)
        response: Response
        try:
            response = await self._endpoint(request, params)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
