"""The refusal of a use case: an HTTP status, arco's error code and message, optional details.

The API answers it as ``{code, message, requestId?, details?}`` (arco-contract, user routes).
"""

from __future__ import annotations

from typing import Any

from arco_orchestration.manifest import ManifestError
from arco_orchestration.planning import PlanningError

_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 409: "CONFLICT", 422: "UNPROCESSABLE_ENTITY"}


class Rejected(Exception):  # noqa: N818 - reads as "the request was rejected"
    """A request the rules refuse; nothing was written."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self, request_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if request_id:
            out["requestId"] = request_id
        if self.details is not None:
            out["details"] = self.details
        return out


def bad_request(message: str) -> Rejected:
    return Rejected(400, "BAD_REQUEST", message)


def not_found(message: str) -> Rejected:
    return Rejected(404, "NOT_FOUND", message)


def conflict(message: str, details: dict[str, Any] | None = None) -> Rejected:
    return Rejected(409, "CONFLICT", message, details)


def rejected_by_rules(exc: PlanningError | ManifestError) -> Rejected:
    """A planning or manifest rule's refusal, with the status the rule chose."""
    status = exc.status_code
    return Rejected(status, _CODES.get(status, "BAD_REQUEST"), exc.message)
