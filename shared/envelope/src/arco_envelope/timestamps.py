"""RFC 3339 timestamps as they appear on the wire (arco-contract section 2.4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|UTC|[+-]\d{2}:?\d{2})"
)


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp the way upstream's relaxed reader does.

    The offset is mandatory (``Z``, ``z``, ``UTC``, ``+HH:MM`` or ``+HHMM``); the date/time
    separator may be ``T``, ``t`` or a space; fractional seconds are optional. The result is
    timezone-aware and normalised to UTC. Digits beyond microseconds are truncated, because
    Python datetimes hold microseconds.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid timestamp {value!r}: expected RFC 3339 with an explicit offset, "
            "e.g. 2026-01-01T00:00:00Z"
        )
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    offset = match["offset"]
    if offset in ("Z", "z", "UTC"):
        tz = UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid timestamp {value!r}: offset out of range")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}.{frac}").replace(
            tzinfo=tz
        )
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp {value!r}: {exc}") from None


def format_timestamp(value: datetime) -> str:
    """Write a timestamp as upstream does: UTC, ``Z`` suffix, fraction only when non-zero.

    The fraction uses 3 or 6 digits, the fewest that represent the value exactly.
    """
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    utc = value.astimezone(UTC)
    # strftime("%Y") does not zero-pad years below 1000 on every platform.
    base = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}"
    micros = utc.microsecond
    if micros == 0:
        return f"{base}Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def _coerce(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone offset")
        return value.astimezone(UTC)
    if isinstance(value, str):
        return parse_timestamp(value)
    raise ValueError("timestamp must be an RFC 3339 string")


Timestamp = Annotated[
    datetime,
    BeforeValidator(_coerce),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A timezone-aware UTC datetime that reads and writes the wire format of section 2.4."""
