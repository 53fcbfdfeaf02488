"""Reading and checking a dispatch body before any callback is sent.

A body that is not a ``WorkerDispatchEnvelope`` (camelCase, or the legacy snake_case
envelope) is refused with every missing or invalid field named, so a dispatcher still sending
a pre-envelope shape learns everything that is wrong from one answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from arco_envelope import MIN_HEARTBEAT_TIMEOUT_SECS, WorkerDispatchEnvelope
from arco_worker.settings import WorkerSettings


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a dispatch body; ``field`` is the camelCase wire name."""

    field: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        """JSON form for the 400 body."""
        return {"field": self.field, "problem": self.problem}


class InvalidDispatchError(Exception):
    """A dispatch refused with 400; :attr:`body` is the JSON answer."""

    def __init__(self, error: str, message: str, problems: list[FieldProblem]) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.problems = problems

    @property
    def body(self) -> dict[str, Any]:
        """``{"error", "message", "fields": [{"field", "problem"}]}``."""
        return {
            "error": self.error,
            "message": self.message,
            "fields": [problem.to_dict() for problem in self.problems],
        }


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) if loc else "(body)"


def parse_envelope(body: bytes) -> WorkerDispatchEnvelope:
    """Parse a dispatch body; raises :class:`InvalidDispatchError` naming every bad field."""
    try:
        return WorkerDispatchEnvelope.from_json(body)
    except ValidationError as exc:
        problems = [
            FieldProblem(_field_name(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors(include_input=False, include_url=False)
        ]
        names = ", ".join(problem.field for problem in problems)
        raise InvalidDispatchError(
            "invalid_envelope",
            f"dispatch body is not a WorkerDispatchEnvelope; bad fields: {names}",
            problems,
        ) from None


def check_envelope(envelope: WorkerDispatchEnvelope, now: datetime) -> None:
    """Refuse an envelope whose callbacks could not succeed, before sending any.

    Raises :class:`InvalidDispatchError` for an expired ``tokenExpiresAt``, a
    ``heartbeatTimeoutSec`` below the 30 s floor or an ``attempt`` of 0.
    """
    problems = []
    if envelope.token_expires_at <= now:
        problems.append(FieldProblem("tokenExpiresAt", "the task token has expired"))
    timeout = envelope.heartbeat_timeout_sec
    if timeout is not None and timeout < MIN_HEARTBEAT_TIMEOUT_SECS:
        problems.append(
            FieldProblem(
                "heartbeatTimeoutSec",
                f"{timeout} is below the {MIN_HEARTBEAT_TIMEOUT_SECS}s floor",
            )
        )
    if envelope.attempt < 1:
        problems.append(FieldProblem("attempt", "attempts are numbered from 1"))
    if problems:
        names = ", ".join(problem.field for problem in problems)
        raise InvalidDispatchError(
            "invalid_envelope", f"unusable dispatch envelope: {names}", problems
        )


def normalize_url(url: str) -> str:
    """Scheme and host lowercased, trailing ``/`` of the path stripped, query and fragment
    dropped (arco-contract 3.2 item 4)."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def check_scope(envelope: WorkerDispatchEnvelope, settings: WorkerSettings) -> None:
    """Refuse an envelope for another tenant, workspace or API than this worker's."""
    problems = []
    if envelope.tenant_id != settings.tenant_id:
        problems.append(FieldProblem("tenantId", "does not match ARCO_FLOW_TENANT_ID"))
    if envelope.workspace_id != settings.workspace_id:
        problems.append(FieldProblem("workspaceId", "does not match ARCO_FLOW_WORKSPACE_ID"))
    if settings.api_url is not None and normalize_url(envelope.callback_base_url) != normalize_url(
        settings.api_url
    ):
        problems.append(FieldProblem("callbackBaseUrl", "does not match ARCO_FLOW_API_URL"))
    if problems:
        # Upstream's message lists the snake_case names of the mismatched scope fields.
        snake = {"tenantId": "tenant_id", "workspaceId": "workspace_id"}
        names = ", ".join(snake.get(p.field, "callback_base_url") for p in problems)
        raise InvalidDispatchError(
            "scope_mismatch", f"dispatch envelope scope mismatch: {names}", problems
        )
