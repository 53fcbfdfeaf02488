"""The API error body ``{code, message, requestId?, details?}`` (non-callback routes)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer of a user route."""

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


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def conflict(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(409, "CONFLICT", message, details)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)
