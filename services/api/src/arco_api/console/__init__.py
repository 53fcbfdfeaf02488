"""The web console under ``/ui``: runs, a run's task graph and timeline, tasks with their
attempts, errors and logs, manifests and a trigger form. Server-rendered, with one small
script of its own for live refresh; every asset is in the package."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from arco_api import local_docs
from arco_api.console.routes import install_error_pages, router


class ConsoleCompression:
    """Gzip for the console's pages only (a 500-task run page is ~550 KB of HTML and SVG, ~10
    times less compressed); the API's answers are left exactly as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=4096, compresslevel=5)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/ui/"):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Mount the console (and the offline ``/docs``) on the API application."""
    app.mount(
        "/ui/static",
        StaticFiles(directory=str(files("arco_api.console") / "static")),
        name="console-static",
    )
    app.include_router(router)
    app.add_middleware(ConsoleCompression)
    install_error_pages(app)
    local_docs.install(app)
