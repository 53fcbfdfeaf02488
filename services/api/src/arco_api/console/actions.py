"""What the console's buttons do: trigger, cancel, rerun from failure.

Each action calls the run API's own parser and use case (``arco_orchestration.usecases.runs``)
with the signed-in user's scope, so the console obeys the API's rules, idempotency and error
messages and cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from arco_api.console.session import ConsoleSession
from arco_api.context import api_context
from arco_orchestration.planning import PlanningError, parse_rerun_request, parse_trigger_request
from arco_orchestration.usecases import runs
from arco_orchestration.usecases.errors import Rejected, rejected_by_rules
from arco_orchestration.usecases.runs import Triggered

PARTITION_LINES = 64


class FormError(ValueError):
    """A form value the console cannot turn into an API request (shown next to the form)."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message") or f"the API answered {self.status}")


def parse_partitions(text: str) -> list[dict[str, str]]:
    """``key=value`` lines (blank lines ignored) as the API's ``partitions`` list."""
    partitions = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > PARTITION_LINES:
        raise FormError(f"at most {PARTITION_LINES} partition lines")
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FormError(f"partition line {line!r} is not key=value")
        partitions.append({"key": key.strip(), "value": value.strip()})
    return partitions


def trigger_body(
    selection: list[str], partitions: str, run_key: str, *, include_upstream: bool = False
) -> dict[str, Any]:
    if not selection:
        raise FormError("select at least one asset")
    body: dict[str, Any] = {"selection": selection}
    if include_upstream:
        body["includeUpstream"] = True
    if parsed := parse_partitions(partitions):
        body["partitions"] = parsed
    if run_key.strip():
        body["runKey"] = run_key.strip()
    return body


async def _decided(work: Callable[[], Any]) -> ApiAnswer:
    """Run a use case in a worker thread; a refusal becomes the API's status and message."""
    try:
        result = await run_in_threadpool(work)
    except PlanningError as exc:
        refused = rejected_by_rules(exc)
        return ApiAnswer(refused.status, refused.body(None))
    except Rejected as refused:
        return ApiAnswer(refused.status, refused.body(None))
    if isinstance(result, Triggered):
        return ApiAnswer(result.status, result.body)
    return ApiAnswer(200, result)


async def trigger(request: Request, session: ConsoleSession, body: dict[str, Any]) -> ApiAnswer:
    """Trigger a run as ``POST .../runs`` does (the same parser and use case)."""
    context = api_context(request)

    def work() -> Triggered:
        triggered = runs.trigger_run(
            context.db,
            session.scope,
            parse_trigger_request(body, idempotency_key=None),
            triggered_by=session.principal.user_id or "api",
            heartbeat_timeout_secs=context.settings.task_heartbeat_timeout_secs,
            now=context.clock(),
        )
        if triggered.created:
            context.metrics.runs_triggered.inc()
        return triggered

    return await _decided(work)


async def cancel(request: Request, session: ConsoleSession, run_id: str, reason: str) -> ApiAnswer:
    """Request a run's cancellation as ``POST .../runs/{id}/cancel`` does."""
    context = api_context(request)
    return await _decided(
        lambda: runs.cancel_run(
            context.db, session.scope, run_id, reason=reason, now=context.clock()
        )
    )


async def rerun_from_failure(request: Request, session: ConsoleSession, run_id: str) -> ApiAnswer:
    """Rerun a run from failure as ``POST .../runs/{id}/rerun`` does."""
    context = api_context(request)
    return await _decided(
        lambda: runs.rerun(
            context.db,
            session.scope,
            run_id,
            parse_rerun_request({"mode": "fromFailure"}),
            triggered_by=session.principal.user_id or "api",
            now=context.clock(),
        )
    )
