"""What every route needs: settings, database, authenticators, metrics, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request

from arco_api.auth import UserAuthenticator
from arco_api.metrics import ApiMetrics
from arco_api.settings import ApiSettings
from arco_envelope.tokens import TaskTokenConfig, TaskTokenVerifier
from arco_orchestration.db import Database


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiContext:
    settings: ApiSettings
    db: Database
    users: UserAuthenticator
    task_tokens: TaskTokenConfig
    metrics: ApiMetrics
    clock: Callable[[], datetime] = field(default=utc_now)
    # Verified task tokens, for the callbacks (each sends its attempt's token again).
    task_token_verifier: TaskTokenVerifier = field(default_factory=TaskTokenVerifier)


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.arco
    return context
