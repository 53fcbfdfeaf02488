"""Manifest partitioning (manifest §2.10) and the resolution of a request's partition key
against it (orchestration §2.1 item 6, upstream ``resolve_partition_key``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from arco_orchestration.planning.partition_keys import (
    PARTITION_DIMENSION,
    PartitionKeyError,
    PartitionScalar,
    parse_partition_key,
    render_partition_key,
)
from arco_orchestration.planning.request import PartitionValue, TriggerRequest
from arco_orchestration.planning.rules import (
    MAX_PARTITION_DIM_LEN,
    MAX_PARTITION_KEY_LEN,
    MAX_PARTITION_VALUE_LEN,
    PlanningError,
    utf8_len,
)


@dataclass(frozen=True)
class DimensionSpec:
    """One partition dimension as read leniently from ``partitioning.dimensions``."""

    name: str
    kind: str
    granularity: str | None = None
    values: tuple[str, ...] | None = None

    def signature(self) -> tuple[str, str | None, frozenset[str] | None]:
        """(kind, granularity, value set); an empty value list counts as no list."""
        return (self.kind, self.granularity, frozenset(self.values) if self.values else None)


@dataclass(frozen=True)
class PartitioningSpec:
    """An asset's partitioning; the default is unpartitioned."""

    is_partitioned: bool = False
    dimensions: tuple[DimensionSpec, ...] = ()

    def signature(self) -> dict[str, tuple[str, str | None, frozenset[str] | None]]:
        """Dimension name -> signature (a later duplicate name wins, like a BTreeMap)."""
        return {dimension.name: dimension.signature() for dimension in self.dimensions}

    def matches(self, other: PartitioningSpec) -> bool:
        """Same partitioned flag and, when partitioned, the same signature."""
        if self.is_partitioned != other.is_partitioned:
            return False
        return not self.is_partitioned or self.signature() == other.signature()


def _parse_dimension(value: object) -> DimensionSpec | None:
    if not isinstance(value, dict):
        return None
    name, kind = value.get("name"), value.get("kind")
    if not isinstance(name, str) or not isinstance(kind, str):
        return None
    granularity = value.get("granularity")
    raw_values = value.get("values")
    values = (
        tuple(item for item in raw_values if isinstance(item, str))
        if isinstance(raw_values, list)
        else None
    )
    return DimensionSpec(
        name=name,
        kind=kind,
        granularity=granularity if isinstance(granularity, str) else None,
        values=values,
    )


def parse_partitioning(value: object) -> PartitioningSpec:
    """Read ``assets[].partitioning`` leniently: malformed parts are skipped, never an error.

    ``is_partitioned`` (snake) wins over ``isPartitioned`` when the key is present, even with a
    non-bool value (then the flag falls back to "has dimensions"). Dimensions force it true.
    """
    if not isinstance(value, dict):
        return PartitioningSpec()
    raw_dimensions = value.get("dimensions")
    items = raw_dimensions if isinstance(raw_dimensions, list) else []
    parsed = (_parse_dimension(item) for item in items)
    dimensions = tuple(dimension for dimension in parsed if dimension is not None)
    flag = value["is_partitioned"] if "is_partitioned" in value else value.get("isPartitioned")
    explicit = flag if isinstance(flag, bool) else None
    is_partitioned = bool(dimensions) or (explicit if explicit is not None else False)
    return PartitioningSpec(is_partitioned=is_partitioned, dimensions=dimensions)


def derive_run_partitioning(
    roots: Sequence[str], specs: Mapping[str, PartitioningSpec]
) -> PartitioningSpec:
    """The run's partitioning when a partition was requested: every root partitioned and
    identical; the first (sorted) root provides the spec."""
    base: PartitioningSpec | None = None
    for root in roots:
        spec = specs.get(root, PartitioningSpec())
        if not spec.is_partitioned:
            raise PlanningError(f"partition key provided for unpartitioned asset: {root}")
        if base is None:
            base = spec
        elif not base.matches(spec):
            raise PlanningError("partitioned root assets must share identical partitioning")
    return base if base is not None else PartitioningSpec()


_DATE_TEXT = re.compile(r"([0-9]{1,4})-([0-9]{1,2})-([0-9]{1,2})")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _parse_date_text(text: str) -> str | None:
    # chrono's "%Y-%m-%d": up to 4 year digits, 1-2 month and day digits, a real date.
    match = _DATE_TEXT.fullmatch(text)
    if match is None:
        return None
    try:
        parsed = date(*(int(group) for group in match.groups()))
    except ValueError:
        return None
    return f"{parsed.year:04d}-{parsed.month:02d}-{parsed.day:02d}"


def _parse_rfc3339(text: str) -> tuple[datetime, bool] | None:
    """UTC instant (microseconds) and whether it has any sub-second part."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    *clock, fraction, offset = match.groups()
    fraction = fraction or ""
    try:
        year, month, day, hour, minute, second = (int(part) for part in clock)
        micro = int((fraction + "000000")[:6])
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        utc = local - _offset(offset)
    except (ValueError, OverflowError):
        return None
    return utc, fraction.strip("0") != ""


def _offset(text: str) -> timedelta:
    if text in ("Z", "z"):
        return timedelta()
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    sign = -1 if text[0] == "-" else 1
    return sign * timedelta(hours=hours, minutes=minutes)


def _format_timestamp(moment: datetime) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def _timestamp_text(text: str, *, require_hour: bool) -> str | None:
    parsed = _parse_rfc3339(text)
    if parsed is None:
        return None
    moment, has_fraction = parsed
    if require_hour and (moment.minute or moment.second or has_fraction):
        return None
    return _format_timestamp(moment)


def _enforce_granularity(dimension: DimensionSpec, expected: str) -> None:
    if dimension.granularity is not None and dimension.granularity != expected:
        raise PlanningError(f"time dimension '{dimension.name}' expects {expected} granularity")


def _normalize_time_tagged(dimension: DimensionSpec, value: PartitionScalar) -> PartitionScalar:
    if value.tag == "d":
        _enforce_granularity(dimension, "day")
        return value
    _enforce_granularity(dimension, "hour")
    if dimension.granularity == "hour":
        parsed = _parse_rfc3339(value.text)
        if parsed is None:
            raise PlanningError(
                f"time dimension '{dimension.name}' must use canonical UTC timestamp"
            )
        moment, has_fraction = parsed
        if moment.minute or moment.second or has_fraction:
            raise PlanningError(f"time dimension '{dimension.name}' must be aligned to the hour")
    return value


def _normalize_time_string(dimension: DimensionSpec, raw: str) -> PartitionScalar:
    name = dimension.name
    if dimension.granularity == "day":
        day = _parse_date_text(raw)
        if day is None:
            raise PlanningError(f"time dimension '{name}' expects YYYY-MM-DD")
        return PartitionScalar("d", day)
    if dimension.granularity == "hour":
        hour = _timestamp_text(raw, require_hour=True)
        if hour is None:
            raise PlanningError(f"time dimension '{name}' expects RFC3339 timestamp")
        return PartitionScalar("t", hour)
    if dimension.granularity is not None:
        raise PlanningError(f"unsupported time granularity '{dimension.granularity}' for '{name}'")
    day = _parse_date_text(raw)
    if day is not None:
        return PartitionScalar("d", day)
    moment = _timestamp_text(raw, require_hour=False)
    if moment is not None:
        return PartitionScalar("t", moment)
    raise PlanningError(f"time dimension '{name}' expects YYYY-MM-DD or RFC3339 timestamp")


def _normalize_time(
    dimension: DimensionSpec, value: PartitionScalar, *, reject_time_strings: bool
) -> PartitionScalar:
    if value.tag in ("d", "t"):
        return _normalize_time_tagged(dimension, value)
    if value.tag != "s":
        raise PlanningError(f"time dimension '{dimension.name}' must use d:/t: or s: value")
    if reject_time_strings:
        raise PlanningError(f"time partition values must use d:/t: tags for '{dimension.name}'")
    return _normalize_time_string(dimension, value.text)


def _normalize_string_kind(dimension: DimensionSpec, value: PartitionScalar) -> PartitionScalar:
    if value.tag != "s":
        raise PlanningError(f"dimension '{dimension.name}' must use string values")
    if dimension.kind == "static" and dimension.values and value.text not in dimension.values:
        raise PlanningError(f"dimension '{dimension.name}' value '{value.text}' is not allowed")
    return value


def _normalize_dimensions(
    raw: Mapping[str, PartitionScalar],
    spec: PartitioningSpec,
    *,
    reject_time_strings: bool,
) -> dict[str, PartitionScalar]:
    expected = {dimension.name for dimension in spec.dimensions}
    if spec.is_partitioned and set(raw) != expected:
        raise PlanningError(
            "partitionKey dimensions must match manifest dimensions: "
            f"expected [{', '.join(sorted(expected))}], got [{', '.join(sorted(raw))}]"
        )
    normalized: dict[str, PartitionScalar] = {}
    for dimension in spec.dimensions:
        value = raw.get(dimension.name)
        if value is None:
            continue
        if dimension.kind == "time":
            normalized[dimension.name] = _normalize_time(
                dimension, value, reject_time_strings=reject_time_strings
            )
        elif dimension.kind in ("static", "tenant"):
            normalized[dimension.name] = _normalize_string_kind(dimension, value)
        else:
            raise PlanningError(
                f"unsupported partition dimension kind '{dimension.kind}' for '{dimension.name}'"
            )
    return normalized


def _parse_request_partition_key(raw: str) -> dict[str, PartitionScalar]:
    if not raw:
        raise PlanningError("partitionKey cannot be empty")
    try:
        dimensions = parse_partition_key(raw)
    except PartitionKeyError as exc:
        raise PlanningError(f"invalid partitionKey: {exc}") from None
    canonical = render_partition_key(dimensions)
    if canonical != raw:
        raise PlanningError(f"partitionKey must be canonical: expected '{canonical}'")
    return dimensions


def _parse_partition_values(partitions: Sequence[PartitionValue]) -> dict[str, PartitionScalar]:
    values: dict[str, PartitionScalar] = {}
    for partition in partitions:
        key = partition.key.strip()
        if not key:
            raise PlanningError("partition key cannot be empty")
        if utf8_len(key) > MAX_PARTITION_DIM_LEN:
            raise PlanningError(f"partition key exceeds max length ({MAX_PARTITION_DIM_LEN})")
        if not PARTITION_DIMENSION.fullmatch(key):
            raise PlanningError(f"invalid partition key: {key}")
        if key in values:
            raise PlanningError(f"duplicate partition key: {key}")
        if utf8_len(partition.value) > MAX_PARTITION_VALUE_LEN:
            raise PlanningError(f"partition value exceeds max length ({MAX_PARTITION_VALUE_LEN})")
        values[key] = PartitionScalar("s", partition.value)
    return values


def _finish_partition_key(normalized: Mapping[str, PartitionScalar]) -> str:
    canonical = render_partition_key(normalized)
    # Normalization can produce values ADR-011 rejects (e.g. a date before 1970).
    try:
        parse_partition_key(canonical)
    except PartitionKeyError as exc:
        raise PlanningError(f"invalid partitionKey: {exc}") from None
    if utf8_len(canonical) > MAX_PARTITION_KEY_LEN:
        raise PlanningError(f"partitionKey exceeds max length ({MAX_PARTITION_KEY_LEN})")
    return canonical


def resolve_partition_key(
    request: TriggerRequest,
    spec: PartitioningSpec,
    *,
    reject_time_strings: bool = False,
) -> str | None:
    """The run's canonical partition key, normalized against ``spec``; ``None`` if none.

    ``partitionKey`` must already be canonical ADR-011; a ``s:`` value of a ``day`` time
    dimension becomes ``d:YYYY-MM-DD`` and of an ``hour`` one ``t:…`` (on the hour). The
    legacy ``partitions`` list is read as string values and normalized the same way.
    """
    if request.partition_key is not None and request.partitions:
        raise PlanningError("use either partitionKey or partitions, not both")
    if request.has_partition_request and not spec.is_partitioned:
        raise PlanningError("partition key provided for unpartitioned assets")
    if request.partition_key is not None:
        raw = _parse_request_partition_key(request.partition_key)
    elif request.partitions:
        raw = _parse_partition_values(request.partitions)
    else:
        return None
    normalized = _normalize_dimensions(raw, spec, reject_time_strings=reject_time_strings)
    return _finish_partition_key(normalized)
