"""A route served ahead of FastAPI's router, for the few requests every run makes.

FastAPI's route matching, dependency solving and response-model serialisation cost more
CPU than the rest of a one-task trigger or callback outside the database. :class:`FastPath`
answers a few routes of one method with plain endpoint functions and passes everything else
on. The routes stay declared on their routers (the OpenAPI document's), and errors are
answered by the application's own exception handlers, so the answer is byte for byte the
routed one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
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


def _pattern(route: BaseRoute) -> re.Pattern[str]:
    """The route's path template as the router matches it on the decoded path: literal text
    escaped, each ``{name}`` one path segment (Starlette's default convertor)."""
    template: str = getattr(route, "path", "")
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


class FastPath:
    """Serves ``method`` on each of ``routes`` with its endpoint, called with the request and
    the path parameters; the first route that matches serves."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api: FastAPI,
        method: str,
        routes: Sequence[tuple[BaseRoute, Endpoint]],
    ) -> None:
        self.app = app
        self._api = api
        self._method = method
        self._routes = [(_pattern(route), route, endpoint) for route, endpoint in routes]
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

    def _match(self, scope: AsgiScope) -> tuple[BaseRoute, Endpoint, dict[str, str]] | None:
        if scope["type"] != "http" or scope["method"] != self._method:
            return None
        path = route_path(scope)
        for pattern, route, endpoint in self._routes:
            if match := pattern.fullmatch(path):
                return route, endpoint, match.groupdict()
        return None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        matched = self._match(scope)
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, endpoint, params = matched
        # As the router would have set them: the metrics label the route's template.
        scope["route"] = route
        scope["path_params"] = params
        request = Request(scope, receive)
        response: Response
        try:
            response = await endpoint(request, params)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)
