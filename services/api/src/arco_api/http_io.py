"""Request body reading with a size limit and JSON error answers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError


class BodyError(Exception):
    """A body that cannot be used; ``status`` is 400, 413, 415 or 422."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def read_body(request: Request, limit: int, *, require_json: bool = True) -> bytes:
    """The raw body, refusing a non-JSON content type (415) and oversized bodies (413)."""
    if require_json and not _is_json(request.headers.get("content-type", "")):
        raise BodyError(415, "unsupported_media_type", "Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, "payload_too_large", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "payload_too_large", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    """Decode JSON; malformed input is a 400 with a JSON body."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(
            400, "invalid_json", f"Failed to parse the request body as JSON: {exc}"
        ) from None


def validation_error(exc: ValidationError) -> BodyError:
    """A schema mismatch: 422 ``invalid_request`` naming every field (design D9)."""
    detail = [
        {
            "loc": [str(part) for part in error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    fields = ", ".join(".".join(item["loc"]) or "body" for item in detail)
    return BodyError(
        422,
        "invalid_request",
        f"invalid_request: Failed to deserialize the JSON body: {fields}",
        detail,
    )
