"""Request body reading with a size limit and JSON error answers."""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from fastapi import Request
from pydantic import ValidationError

# The deepest nesting of arrays and objects any request body may have. Real bodies (manifests,
# callbacks, triggers, logs) nest fewer than 10 levels; the limit keeps every recursive step
# downstream of the parser (the C decoder, pydantic, the manifest's JSON-shape helpers) far
# from the interpreter's recursion limit.
MAX_JSON_DEPTH = 64


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


# A NUL character cannot be stored in PostgreSQL text or jsonb, and an unpaired surrogate (from
# an escape such as "\ud800") cannot be encoded as UTF-8: both would fail deep in a handler.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(value: str) -> bool:
    """Whether ``value`` holds a NUL character or an unpaired surrogate."""
    return _UNSTORABLE.search(value) is not None


def _holds_unstorable(document: Any) -> bool:
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if unstorable_text(value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _no_constant(name: str) -> Any:
    # Python reads NaN and Infinity; JSON (and PostgreSQL jsonb) has no such tokens.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


class _KeepOnly(dict[int, str]):
    """A ``str.translate`` table that deletes every character it does not hold."""

    def __missing__(self, key: int) -> None:
        return None


# Escapes (``\"``, ``\\``, ...) go first, so every quote left delimits a string; then all but
# quotes and brackets; then the strings (every other piece between quotes): what remains is the
# brackets outside strings. All of it runs in C: a 4.5 MB manifest takes about as long as its
# json.loads.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRUCTURE = _KeepOnly({ord(char): char for char in '"[]{}'})
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of JSON ``text`` nest deeper than ``limit``, from the
    running count of the brackets outside strings (no recursion, so any depth is safe)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # too few openers to reach the limit: the common, small body
    outside_strings = "".join(_ESCAPE.sub("", text).translate(_STRUCTURE).split('"')[::2])
    if not outside_strings:
        return False
    return max(accumulate(map(_DEPTH_STEP.__getitem__, outside_strings))) > limit


def parse_json(raw: bytes) -> Any:
    """Decode JSON; malformed input, nesting deeper than :data:`MAX_JSON_DEPTH`, or a string
    no store can hold, is a 400 with a JSON body."""
    try:
        # UTF-8 only (RFC 8259 8.1; json.loads would also guess UTF-16 and UTF-32), with the
        # optional BOM it always accepted.
        text = raw.decode("utf-8-sig")
        if nesting_too_deep(text):
            raise ValueError(f"arrays and objects nest deeper than {MAX_JSON_DEPTH} levels")
        document = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad syntax, bad UTF-8 and the hooks above; RecursionError a
        # document nested deeper than the interpreter's stack.
        raise BodyError(
            400, "invalid_json", f"Failed to parse the request body as JSON: {exc}"
        ) from None
    if _holds_unstorable(document):
        raise BodyError(
            400,
            "invalid_json",
            "Failed to parse the request body as JSON: strings must not contain NUL "
            "characters or unpaired surrogates",
        )
    return document


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
