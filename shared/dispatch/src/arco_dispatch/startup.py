"""Starting a service: refuse on bad configuration or an old schema, naming each problem;
then serve on ``ARCO_HTTP_HOST:ARCO_HTTP_PORT``."""

from __future__ import annotations

import argparse
import sys
import time
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from arco_dispatch.settings import FlowSettings, load_settings
from arco_orchestration.db import Database
from arco_orchestration.migrate import schema_problem

S = TypeVar("S", bound=FlowSettings)

EXIT_REFUSED = 2
# A second signal this soon after the first is the same request delivered twice (a wrapper
# such as `uv run` or a shell forwards the signal its process group also received).
REPEATED_SIGNAL_WINDOW_SECS = 1.0


class GracefulServer(uvicorn.Server):
    """uvicorn forces the exit (no lifespan shutdown: deliveries in flight are abandoned) on a
    second SIGINT. Here a repeat within :data:`REPEATED_SIGNAL_WINDOW_SECS` of the first
    signal changes nothing; only a later one can force the exit."""

    _first_signal_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        first = self._first_signal_at
        if first is not None and now - first < REPEATED_SIGNAL_WINDOW_SECS:
            return
        if first is None:
            self._first_signal_at = now
        super().handle_exit(sig, frame)


CONFIGURATION_HELP = (
    "Configured by environment variables only (ARCO_DATABASE_URL, ARCO_FLOW_*, ARCO_HTTP_PORT, "
    "...): see .env.example and docs/operations.md. `arco-stack up` runs every service with a "
    "working local configuration."
)


def parse_service_args(program: str, description: str | None, argv: list[str] | None) -> None:
    """``--help`` (and nothing else) on a service's command line, answered before any
    configuration is read."""
    parser = argparse.ArgumentParser(
        prog=program, description=description, epilog=CONFIGURATION_HELP
    )
    parser.parse_args(argv)


def _refuse(program: str, problems: list[str]) -> None:
    print(f"{program}: refusing to start:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def prepare(program: str, settings_cls: type[S]) -> tuple[S, Database] | None:
    """Settings and database of a service about to start, or ``None`` after printing every
    reason it must not start (bad settings, unreachable database, schema not at head)."""
    settings, problems = load_settings(settings_cls)
    if settings is None or problems:
        _refuse(program, problems)
        return None
    for warning in settings.warnings():
        print(f"{program}: warning (accepted only in the dev posture): {warning}", file=sys.stderr)
    db = Database.from_url(settings.database_url or None, application_name=program)
    if problem := schema_problem(db.engine):
        _refuse(program, [problem])
        db.dispose()
        return None
    return settings, db


def serve(app: FastAPI, settings: FlowSettings) -> None:
    """Serve ``app`` until SIGTERM or SIGINT (then shut down gracefully)."""
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    GracefulServer(config).run()
