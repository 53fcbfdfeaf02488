"""RFC 3339 timestamps as they appear on the wire (arco-contract section 2.4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<offset>[Zz]|UTC|[+-]\d{2}:?\d{2})"
)


class NanoDatetime(datetime):
    """A UTC datetime that keeps the nanoseconds below its microsecond, which Python's datetime
    cannot hold: a timestamp read with 7 to 9 fractional digits is written back with them.

    Arithmetic and comparisons are those of ``datetime`` (sub-microsecond digits are ignored
    there); only :func:`format_timestamp` reads :attr:`extra_nanoseconds`.
    """

    __slots__ = ("_extra_nanoseconds",)
    _extra_nanoseconds: int

    @classmethod
    def of(cls, moment: datetime, extra_nanoseconds: int) -> Self:
        """``moment`` plus ``extra_nanoseconds`` (0-999) below its microsecond."""
        if not 0 <= extra_nanoseconds <= 999:
            raise ValueError("extra_nanoseconds must be in 0..999")
        value = cls(
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
            moment.tzinfo,
            fold=moment.fold,
        )
        value._extra_nanoseconds = extra_nanoseconds
        return value

    @property
    def extra_nanoseconds(self) -> int:
        """Nanoseconds below the microsecond, 0-999."""
        return getattr(self, "_extra_nanoseconds", 0)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Copies and pickles keep the nanoseconds (datetime's own reduce would drop them).
        plain = datetime(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.microsecond,
            self.tzinfo,
            fold=self.fold,
        )
        return (NanoDatetime.of, (plain, self.extra_nanoseconds))


def _extra_nanoseconds(value: datetime) -> int:
    return value.extra_nanoseconds if isinstance(value, NanoDatetime) else 0


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp the way upstream's relaxed reader does.

    The offset is mandatory (``Z``, ``z``, ``UTC``, ``+HH:MM`` or ``+HHMM``); the date/time
    separator may be ``T``, ``t`` or a space; fractional seconds are optional. The result is
    timezone-aware and normalised to UTC. Digits 7 to 9 (nanoseconds) are kept in a
    :class:`NanoDatetime`; digits beyond nanoseconds are truncated, as chrono does.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid timestamp {value!r}: expected RFC 3339 with an explicit offset, "
            "e.g. 2026-01-01T00:00:00Z"
        )
    fraction = (match["frac"] or "")[:9].ljust(9, "0")
    frac, nanos = fraction[:6], int(fraction[6:])
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
        utc = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp {value!r}: {exc}") from None
    return NanoDatetime.of(utc, nanos) if nanos else utc


def format_timestamp(value: datetime) -> str:
    """Write a timestamp as upstream does: UTC, ``Z`` suffix, fraction only when non-zero.

    The fraction uses 3, 6 or 9 digits, the fewest that represent the value exactly (9 only
    for a :class:`NanoDatetime` with nanoseconds below its microsecond).
    """
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    nanos = value.microsecond * 1000 + _extra_nanoseconds(value)
    utc = value.astimezone(UTC)
    # strftime("%Y") does not zero-pad years below 1000 on every platform.
    base = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}"
    if nanos == 0:
        return f"{base}Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def _coerce(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone offset")
        utc = value.astimezone(UTC)
        nanos = _extra_nanoseconds(value)
        return NanoDatetime.of(utc, nanos) if nanos else utc
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
