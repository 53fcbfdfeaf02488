"""ADR-011 partition keys: ``dim=<tag>:<value>`` joined with ``,``, dimensions sorted."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

PartitionTag: TypeAlias = Literal["s", "i", "b", "d", "t", "n"]
PARTITION_DIMENSION = re.compile(r"[a-z][a-z0-9_]*")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_RUST_INT = re.compile(r"[+-]?[0-9]+")
_RUST_UINT = re.compile(r"\+?[0-9]+")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class PartitionKeyError(ValueError):
    """A malformed ADR-011 partition key; the message is upstream's."""


@dataclass(frozen=True)
class PartitionScalar:
    """A typed partition value. ``text`` is the decoded string for ``s``, else the literal."""

    tag: PartitionTag
    text: str

    def canonical(self) -> str:
        """``<tag>:<value>``, strings as unpadded URL-safe base64."""
        if self.tag == "s":
            encoded = base64.urlsafe_b64encode(self.text.encode("utf-8")).rstrip(b"=")
            return f"s:{encoded.decode('ascii')}"
        return f"{self.tag}:{self.text}"


def render_partition_key(dimensions: Mapping[str, PartitionScalar]) -> str:
    """The canonical string: dimensions sorted by name."""
    return ",".join(f"{name}={dimensions[name].canonical()}" for name in sorted(dimensions))


def _rust_uint(text: str) -> int | None:
    # Rust's integer parsing accepts a leading '+', so "2024-+1-15" is a valid ADR-011 date.
    return int(text) if _RUST_UINT.fullmatch(text) else None


def _month_day_ok(month: int, day: int) -> bool:
    # Upstream's ADR-011 check ignores leap years (Feb 29 is always accepted).
    if month == 2:
        return day <= 29
    return day <= 30 if month in (4, 6, 9, 11) else True


def is_adr011_date(text: str) -> bool:
    """``YYYY-MM-DD`` with year >= 1970, as upstream's ADR-011 parser checks it."""
    if not text.isascii() or len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    year, month, day = _rust_uint(text[:4]), _rust_uint(text[5:7]), _rust_uint(text[8:])
    if year is None or month is None or day is None:
        return False
    return year >= 1970 and 1 <= month <= 12 and 1 <= day <= 31 and _month_day_ok(month, day)


def is_adr011_timestamp(text: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (exactly microseconds, UTC)."""
    if not text.isascii() or len(text) != 27 or not text.endswith("Z"):
        return False
    if [text[i] for i in (4, 7, 10, 13, 16, 19)] != ["-", "-", "T", ":", ":", "."]:
        return False
    hour, minute, second = _rust_uint(text[11:13]), _rust_uint(text[14:16]), _rust_uint(text[17:19])
    return (
        is_adr011_date(text[:10])
        and hour is not None
        and hour <= 23
        and minute is not None
        and minute <= 59
        and second is not None
        and second <= 59
        and text[20:26].isdigit()
    )


def _strict_b64url_decode(text: str) -> bytes | None:
    # Upstream's URL_SAFE_NO_PAD engine rejects padding, foreign symbols and non-zero
    # trailing bits; Python's decoder accepts all three, so check them here.
    if not _URLSAFE.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        return None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") != text:
        return None
    return decoded


def _parse_scalar(tag: str, text: str) -> PartitionScalar:
    if tag == "n":
        if text != "null":
            raise PartitionKeyError(f"invalid null value: {text}")
        return PartitionScalar("n", text)
    if tag == "b":
        if text not in ("true", "false"):
            raise PartitionKeyError(f"invalid boolean value: {text}")
        return PartitionScalar("b", text)
    if tag == "i":
        if not _RUST_INT.fullmatch(text) or not _I64_MIN <= int(text) <= _I64_MAX:
            raise PartitionKeyError(f"invalid integer value: {text}")
        return PartitionScalar("i", str(int(text)))
    if tag == "s":
        return PartitionScalar("s", _decode_string(text))
    if tag == "d":
        if not is_adr011_date(text):
            raise PartitionKeyError(f"invalid date value: {text}")
        return PartitionScalar("d", text)
    if tag == "t":
        if not is_adr011_timestamp(text):
            raise PartitionKeyError(f"invalid timestamp value: {text}")
        return PartitionScalar("t", text)
    raise PartitionKeyError(f"unknown type prefix: {tag}")


def _decode_string(text: str) -> str:
    decoded = _strict_b64url_decode(text)
    if decoded is None:
        raise PartitionKeyError(f"invalid base64 encoding: {text}")
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise PartitionKeyError(f"invalid UTF-8 in decoded string: {text}") from None


def parse_partition_key(text: str) -> dict[str, PartitionScalar]:
    """Parse an ADR-011 key (any dimension order); raise :class:`PartitionKeyError`."""
    dimensions: dict[str, PartitionScalar] = {}
    if not text:
        return dimensions
    for part in text.split(","):
        name, has_equals, encoded = part.partition("=")
        if not has_equals:
            raise PartitionKeyError(f"missing '=' in partition segment: {part}")
        if not PARTITION_DIMENSION.fullmatch(name):
            raise PartitionKeyError(f"invalid partition key: {name}")
        tag, has_colon, value = encoded.partition(":")
        if not has_colon:
            raise PartitionKeyError(f"missing type prefix in value: {encoded}")
        scalar = _parse_scalar(tag, value)
        if name in dimensions:
            raise PartitionKeyError(f"duplicate key in partition key: {name}")
        dimensions[name] = scalar
    return dimensions
