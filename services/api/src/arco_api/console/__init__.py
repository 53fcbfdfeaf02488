"""The web console under ``/ui``: runs, a run's task graph and timeline, tasks with their
attempts, errors and logs, manifests and a trigger form. Server-rendered, with one small
script of its own for live refresh; every asset is in the package."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from arco_api import local_docs
from arco_api.console.routes import install_error_pages, router


def install(app: FastAPI) -> None:
    """Mount the console (and the offline ``/docs``) on the API application."""
    app.mount(
        "/ui/static",
        StaticFiles(directory=str(files("arco_api.console") / "static")),
        name="console-static",
    )
    app.include_router(router)
    install_error_pages(app)
    local_docs.install(app)
