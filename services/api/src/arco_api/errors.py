"""The API error body ``{code, message, requestId?, details?}`` (non-callback routes).

A use case's refusal and an HTTP-level one (bad body, bad credentials) are the same error:
the app answers both with one handler.
"""

from __future__ import annotations

from arco_orchestration.usecases.errors import Rejected, bad_request, conflict, not_found

ApiError = Rejected

__all__ = ["ApiError", "bad_request", "conflict", "not_found", "unauthorized"]


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message)
