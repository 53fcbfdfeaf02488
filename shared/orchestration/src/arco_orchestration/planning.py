"""Run trigger requests, planning and rerun selection (arco-orchestration §2.1, §2.2, §2.5).

Pure logic only. The api service does, for ``POST …/runs``::

    request = parse_trigger_request(body, idempotency_key=header)   # 422 / 400
    manifest = <latest manifest>  or 400 NO_MANIFEST_MESSAGE
    plan = plan_trigger(manifest, request)                          # 400
    <reserve plan.request_fingerprint under request.run_key, append facts>

Errors are :class:`PlanningError`; ``status_code`` is 400 unless stated (422 for body-shape
errors, 409 for the rerun parent checks). Messages are upstream's.

Lengths are counted in UTF-8 bytes, as upstream's Rust ``str::len`` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypeAlias

from arco_orchestration.manifest import (
    AssetKeyError,
    DeployedManifest,
    JsonValue,
    canonical_asset_key,
    compact_json_bytes,
    describe_json_value,
    shape_error_message,
)

MAX_RUN_KEY_LEN = 256
MAX_PARTITION_KEY_LEN = 1024
MAX_SELECTION_ITEMS = 10_000
MAX_SELECTION_ITEM_LEN = 256
MAX_LABELS = 128
MAX_LABEL_KEY_LEN = 128
MAX_LABEL_VALUE_LEN = 2048
MAX_PARTITIONS = 128
MAX_PARTITION_DIM_LEN = 64
MAX_PARTITION_VALUE_LEN = 256

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_HEARTBEAT_TIMEOUT_SEC = 300

LABEL_PARENT_RUN_ID = "arco.parent_run_id"
LABEL_RERUN_KIND = "arco.rerun.kind"
RESERVED_LABEL_KEYS = (LABEL_PARENT_RUN_ID, LABEL_RERUN_KIND)

NO_MANIFEST_MESSAGE = (
    "no manifest deployed for workspace; deploy a manifest before triggering a run"
)


class PlanningError(ValueError):
    """A rejected trigger or rerun: 400 by default, 422 for body shape, 409 for rerun parents."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionValue:
    """One item of the legacy ``partitions`` list."""

    key: str
    value: str


@dataclass(frozen=True)
class TriggerRequest:
    """A parsed ``POST …/runs`` body. ``selection`` is kept as sent (not canonicalized)."""

    selection: tuple[str, ...]
    include_upstream: bool = False
    include_downstream: bool = False
    partition_key: str | None = None
    partitions: tuple[PartitionValue, ...] = ()
    run_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_partition_request(self) -> bool:
        """Whether partitioning must be consulted (``partitionKey`` present or ``partitions``)."""
        return self.partition_key is not None or bool(self.partitions)


def _shape_error(path: str, problem: str) -> PlanningError:
    return PlanningError(shape_error_message(path, problem), status_code=422)


def _type_error(path: str, value: object, expected: str) -> PlanningError:
    return _shape_error(path, f"invalid type: {describe_json_value(value)}, expected {expected}")


def _struct(value: object, path: str, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _type_error(path, value, f"struct {name}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _type_error(path, value, "a string")
    return value


def _field_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _required_string(obj: Mapping[str, object], key: str, path: str) -> str:
    if key not in obj:
        raise _shape_error(path, f"missing field `{key}`")
    return _string(obj[key], _field_path(path, key))


def _flag(obj: Mapping[str, object], key: str) -> bool:
    if key not in obj:
        return False
    value = obj[key]
    if not isinstance(value, bool):
        raise _type_error(key, value, "a boolean")
    return value


def _optional_string(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _string(value, key)


def _list(obj: Mapping[str, object], key: str) -> list[object]:
    if key not in obj:
        return []
    value = obj[key]
    if not isinstance(value, list):
        raise _type_error(key, value, "a sequence")
    return value


def _selection(obj: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(_string(item, f"selection[{i}]") for i, item in enumerate(_list(obj, "selection")))


def _partitions(obj: Mapping[str, object]) -> tuple[PartitionValue, ...]:
    parsed: list[PartitionValue] = []
    for index, item in enumerate(_list(obj, "partitions")):
        path = f"partitions[{index}]"
        entry = _struct(item, path, "PartitionValue")
        key = _required_string(entry, "key", path)
        parsed.append(PartitionValue(key=key, value=_required_string(entry, "value", path)))
    return tuple(parsed)


def _labels(obj: Mapping[str, object]) -> dict[str, str]:
    if "labels" not in obj:
        return {}
    value = obj["labels"]
    if not isinstance(value, dict):
        raise _type_error("labels", value, "a map")
    return {str(key): _string(item, f"labels.{key}") for key, item in value.items()}


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _check_selection_limits(selection: Sequence[str]) -> None:
    if len(selection) > MAX_SELECTION_ITEMS:
        raise PlanningError(f"selection exceeds max items ({MAX_SELECTION_ITEMS})")
    if any(_utf8_len(item) > MAX_SELECTION_ITEM_LEN for item in selection):
        raise PlanningError(f"selection item exceeds max length ({MAX_SELECTION_ITEM_LEN})")


def _check_label_limits(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise PlanningError(f"labels exceed max properties ({MAX_LABELS})")
    for key, value in labels.items():
        if _utf8_len(key) > MAX_LABEL_KEY_LEN:
            raise PlanningError(f"label key exceeds max length ({MAX_LABEL_KEY_LEN})")
        if _utf8_len(value) > MAX_LABEL_VALUE_LEN:
            raise PlanningError(f"label value exceeds max length ({MAX_LABEL_VALUE_LEN})")


def _check_partition_limits(partitions: Sequence[PartitionValue]) -> None:
    if len(partitions) > MAX_PARTITIONS:
        raise PlanningError(f"partitions exceed max items ({MAX_PARTITIONS})")
    for partition in partitions:
        if _utf8_len(partition.key) > MAX_PARTITION_DIM_LEN:
            raise PlanningError(f"partition key exceeds max length ({MAX_PARTITION_DIM_LEN})")
        if _utf8_len(partition.value) > MAX_PARTITION_VALUE_LEN:
            raise PlanningError(f"partition value exceeds max length ({MAX_PARTITION_VALUE_LEN})")


def _check_run_key_limit(run_key: str | None) -> None:
    if run_key is not None and _utf8_len(run_key) > MAX_RUN_KEY_LEN:
        raise PlanningError(f"runKey exceeds max length ({MAX_RUN_KEY_LEN})")


def _check_partition_key_limit(partition_key: str | None) -> None:
    if partition_key is not None and _utf8_len(partition_key) > MAX_PARTITION_KEY_LEN:
        raise PlanningError(f"partitionKey exceeds max length ({MAX_PARTITION_KEY_LEN})")


def check_reserved_labels(labels: Mapping[str, str]) -> None:
    """Reject the lineage labels only reruns may set (400)."""
    forbidden = [key for key in RESERVED_LABEL_KEYS if key in labels]
    if forbidden:
        raise PlanningError(f"labels cannot include reserved keys: {', '.join(forbidden)}")


def parse_trigger_request(body: object, *, idempotency_key: str | None) -> TriggerRequest:
    """Parse and check a trigger body in upstream's order (§2.1 items 1-3).

    Shape errors are 422. Then: empty selection, the limits (selection, labels, partitions,
    runKey, partitionKey), reserved labels. Unknown fields are ignored. ``runKey`` falls
    back to the ``Idempotency-Key`` header, and the runKey limit applies to whichever is used.
    Manifest-dependent checks (unknown keys, partitions, including "partitionKey and
    partitions together") happen in :func:`plan_trigger`, as upstream orders them.
    """
    obj = _struct(body, "", "TriggerRunRequest")
    run_key = _optional_string(obj, "runKey")
    request = TriggerRequest(
        selection=_selection(obj),
        include_upstream=_flag(obj, "includeUpstream"),
        include_downstream=_flag(obj, "includeDownstream"),
        partitions=_partitions(obj),
        partition_key=_optional_string(obj, "partitionKey"),
        run_key=run_key if run_key is not None else idempotency_key,
        labels=_labels(obj),
    )
    if not request.selection:
        raise PlanningError("selection cannot be empty")
    _check_selection_limits(request.selection)
    _check_label_limits(request.labels)
    _check_partition_limits(request.partitions)
    _check_run_key_limit(request.run_key)
    _check_partition_key_limit(request.partition_key)
    check_reserved_labels(request.labels)
    return request


# ---------------------------------------------------------------------------------------------
# Selection and graph closure
# ---------------------------------------------------------------------------------------------


def canonical_key(text: str) -> str:
    """:func:`canonical_asset_key` raising a 400 :class:`PlanningError`."""
    try:
        return canonical_asset_key(text)
    except AssetKeyError as exc:
        raise PlanningError(str(exc)) from None


def canonical_selection(selection: Iterable[str]) -> tuple[str, ...]:
    """Canonical keys, sorted and de-duplicated; the first invalid entry raises (400)."""
    return tuple(sorted({canonical_key(item) for item in selection}))


def _resolve_roots(selection: Iterable[str], known: Iterable[str], noun: str) -> tuple[str, ...]:
    # Every entry is canonicalized first (an invalid one fails at once); unknown keys are
    # then reported together, sorted and de-duplicated.
    canonical = [canonical_key(item) for item in selection]
    known_set = set(known)
    unknown = sorted({key for key in canonical if key not in known_set})
    if unknown:
        raise PlanningError(f"unknown {noun} keys: {', '.join(unknown)}")
    return tuple(sorted(set(canonical)))


def resolve_root_assets(manifest: DeployedManifest, selection: Iterable[str]) -> tuple[str, ...]:
    """The canonical roots of a selection, sorted; ``unknown asset keys: a, b`` otherwise."""
    return _resolve_roots(selection, manifest.asset_keys, "asset")


def _downstream_of(upstream: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    downstream: dict[str, list[str]] = {key: [] for key in upstream}
    for key, parents in upstream.items():
        for parent in parents:
            downstream.setdefault(parent, []).append(key)
    return downstream


def _walk(roots: Iterable[str], neighbours: Mapping[str, Sequence[str]]) -> set[str]:
    reached = set(roots)
    queue = deque(reached)
    while queue:
        for neighbour in neighbours.get(queue.popleft(), ()):
            if neighbour not in reached:
                reached.add(neighbour)
                queue.append(neighbour)
    return reached


def close_selection(
    roots: Iterable[str],
    upstream: Mapping[str, Sequence[str]],
    *,
    include_upstream: bool,
    include_downstream: bool,
) -> list[str]:
    """Roots plus, if asked, their transitive upstream and/or downstream, sorted.

    The two expansions both start from the roots (the downstream of an upstream is not
    added), and nothing is added that was not asked for (no autofill).
    """
    root_list = list(roots)
    planned = set(root_list)
    if include_upstream:
        planned |= _walk(root_list, upstream)
    if include_downstream:
        planned |= _walk(root_list, _downstream_of(upstream))
    return sorted(planned)


# ---------------------------------------------------------------------------------------------
# Planned tasks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedTask:
    """One task of a PlanCreated fact."""

    key: str
    asset_key: str | None
    depends_on: tuple[str, ...] = ()
    partition_key: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    heartbeat_timeout_sec: int = DEFAULT_HEARTBEAT_TIMEOUT_SEC
    requires_visible_output: bool = True

    def to_dict(self) -> dict[str, JsonValue]:
        """Upstream's ``TaskDef`` as a snake_case JSON object."""
        return {
            "key": self.key,
            "depends_on": list(self.depends_on),
            "asset_key": self.asset_key,
            "partition_key": self.partition_key,
            "max_attempts": self.max_attempts,
            "heartbeat_timeout_sec": self.heartbeat_timeout_sec,
            "requires_visible_output": self.requires_visible_output,
        }


def _planned_dependencies(parents: Iterable[str], planned: set[str]) -> tuple[str, ...]:
    # De-duplicated, unlike upstream: a repeated upstream would count twice in deps_total but
    # create a single edge, leaving the task BLOCKED forever.
    return tuple(sorted({parent for parent in parents if parent in planned}))


def build_tasks(
    planned: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    partition_key: str | None,
) -> list[PlannedTask]:
    """One task per planned asset, sorted by key, depending only on planned upstreams."""
    planned_set = set(planned)
    return [
        PlannedTask(
            key=key,
            asset_key=key,
            depends_on=_planned_dependencies(upstream.get(key, ()), planned_set),
            partition_key=partition_key,
        )
        for key in sorted(planned_set)
    ]


@dataclass(frozen=True)
class RunPlan:
    """Everything the trigger route needs after planning."""

    root_assets: tuple[str, ...]
    partition_key: str | None
    tasks: tuple[PlannedTask, ...]
    request_fingerprint: str


def plan_trigger(
    manifest: DeployedManifest,
    request: TriggerRequest,
    *,
    reject_time_strings: bool = False,
) -> RunPlan:
    """Plan a trigger against the latest manifest (§2.1 items 5-6, §2.2).

    Order as upstream: roots (invalid key, ``unknown asset keys``), then, only when the
    request carries a partition, the roots' partitioning and the partition key. Without a
    partition the manifest's partitioning is never read. ``reject_time_strings`` is
    ``ARCO_PARTITION_TIME_STRING_CUTOFF`` being set and in the past.
    """
    roots = resolve_root_assets(manifest, request.selection)
    partition_key: str | None = None
    if request.has_partition_request:
        specs = {asset.key: parse_partitioning(asset.partitioning) for asset in manifest.assets}
        spec = derive_run_partitioning(roots, specs)
        partition_key = resolve_partition_key(
            request, spec, reject_time_strings=reject_time_strings
        )
    graph = manifest.upstream_graph()
    planned = close_selection(
        roots,
        graph,
        include_upstream=request.include_upstream,
        include_downstream=request.include_downstream,
    )
    return RunPlan(
        root_assets=roots,
        partition_key=partition_key,
        tasks=tuple(build_tasks(planned, graph, partition_key)),
        request_fingerprint=run_request_fingerprint(request, partition_key),
    )


def plan_run(
    manifest: DeployedManifest,
    request: TriggerRequest,
    *,
    reject_time_strings: bool = False,
) -> list[PlannedTask]:
    """The tasks of :func:`plan_trigger`."""
    return list(plan_trigger(manifest, request, reject_time_strings=reject_time_strings).tasks)


def _sha256_hex(document: JsonValue) -> str:
    return hashlib.sha256(compact_json_bytes(document)).hexdigest()


def run_request_fingerprint(request: TriggerRequest, resolved_partition_key: str | None) -> str:
    """Hex SHA-256 of the run-key payload (§2.1 "Run-key fingerprint").

    The JSON object is ``{selection, include_upstream, include_downstream, partition_key?,
    labels}`` in that order: canonical, sorted, de-duplicated selection; the resolved
    (normalized) partition key, omitted when absent; labels sorted by key.
    """
    payload: dict[str, JsonValue] = {
        "selection": list(canonical_selection(request.selection)),
        "include_upstream": request.include_upstream,
        "include_downstream": request.include_downstream,
    }
    if resolved_partition_key is not None:
        payload["partition_key"] = resolved_partition_key
    payload["labels"] = {key: request.labels[key] for key in sorted(request.labels)}
    return _sha256_hex(payload)


# ---------------------------------------------------------------------------------------------
# Manifest partitioning (manifest §2.10)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# ADR-011 partition keys: `dim=<tag>:<value>` joined with `,`, dimensions sorted
# ---------------------------------------------------------------------------------------------

PartitionTag: TypeAlias = Literal["s", "i", "b", "d", "t", "n"]
_PARTITION_DIMENSION = re.compile(r"[a-z][a-z0-9_]*")
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
        if not _PARTITION_DIMENSION.fullmatch(name):
            raise PartitionKeyError(f"invalid partition key: {name}")
        tag, has_colon, value = encoded.partition(":")
        if not has_colon:
            raise PartitionKeyError(f"missing type prefix in value: {encoded}")
        scalar = _parse_scalar(tag, value)
        if name in dimensions:
            raise PartitionKeyError(f"duplicate key in partition key: {name}")
        dimensions[name] = scalar
    return dimensions


# ---------------------------------------------------------------------------------------------
# Partition key resolution (orchestration §2.1 item 6, upstream resolve_partition_key)
# ---------------------------------------------------------------------------------------------

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
        if _utf8_len(key) > MAX_PARTITION_DIM_LEN:
            raise PlanningError(f"partition key exceeds max length ({MAX_PARTITION_DIM_LEN})")
        if not _PARTITION_DIMENSION.fullmatch(key):
            raise PlanningError(f"invalid partition key: {key}")
        if key in values:
            raise PlanningError(f"duplicate partition key: {key}")
        if _utf8_len(partition.value) > MAX_PARTITION_VALUE_LEN:
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
    if _utf8_len(canonical) > MAX_PARTITION_KEY_LEN:
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


# ---------------------------------------------------------------------------------------------
# Reruns (§2.5)
# ---------------------------------------------------------------------------------------------

RerunKind: TypeAlias = Literal["FROM_FAILURE", "SUBSET"]
_RERUN_MODES: dict[str, RerunKind] = {"fromFailure": "FROM_FAILURE", "subset": "SUBSET"}
_RERUN_REASONS: dict[RerunKind, str] = {
    "FROM_FAILURE": "from_failure_unsucceeded_tasks",
    "SUBSET": "subset_selection",
}


@dataclass(frozen=True)
class RerunRequest:
    """A parsed ``POST …/runs/{id}/rerun`` body."""

    kind: RerunKind
    selection: tuple[str, ...] = ()
    include_upstream: bool = False
    include_downstream: bool = False
    run_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def _rerun_kind(obj: Mapping[str, object]) -> RerunKind:
    if "mode" not in obj:
        raise _shape_error("", "missing field `mode`")
    mode = _string(obj["mode"], "mode")
    kind = _RERUN_MODES.get(mode)
    if kind is None:
        raise _shape_error("mode", f"unknown variant `{mode}`, expected `fromFailure` or `subset`")
    return kind


def parse_rerun_request(body: object) -> RerunRequest:
    """Parse and check a rerun body: shape (422), then labels, selection and runKey limits,
    then reserved labels (400), in upstream's order."""
    obj = _struct(body, "", "RerunRunRequest")
    request = RerunRequest(
        kind=_rerun_kind(obj),
        selection=_selection(obj),
        include_upstream=_flag(obj, "includeUpstream"),
        include_downstream=_flag(obj, "includeDownstream"),
        run_key=_optional_string(obj, "runKey"),
        labels=_labels(obj),
    )
    _check_label_limits(request.labels)
    _check_selection_limits(request.selection)
    _check_run_key_limit(request.run_key)
    check_reserved_labels(request.labels)
    return request


@dataclass(frozen=True)
class ParentTask:
    """A task row of the parent run, as far as a rerun needs it."""

    key: str
    state: str
    asset_key: str | None = None
    partition_key: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    heartbeat_timeout_sec: int = DEFAULT_HEARTBEAT_TIMEOUT_SEC
    requires_visible_output: bool = True


ParentEdge: TypeAlias = tuple[str, str]
"""A dependency edge of the parent run: ``(upstream_task_key, downstream_task_key)``."""


@dataclass(frozen=True)
class RerunPlan:
    """The selection and tasks of a rerun."""

    kind: RerunKind
    roots: tuple[str, ...]
    include_upstream: bool
    include_downstream: bool
    tasks: tuple[PlannedTask, ...]

    @property
    def selected_tasks(self) -> tuple[str, ...]:
        """Planned task keys, sorted."""
        return tuple(task.key for task in self.tasks)

    @property
    def partition_keys(self) -> tuple[str, ...]:
        """Distinct partition keys of the planned tasks, sorted."""
        return tuple(sorted({t.partition_key for t in self.tasks if t.partition_key is not None}))

    @property
    def reason(self) -> str:
        """The response's ``rerunReason``."""
        return rerun_reason(self.kind)


def rerun_reason(kind: RerunKind) -> str:
    """``from_failure_unsucceeded_tasks`` or ``subset_selection``."""
    return _RERUN_REASONS[kind]


def check_rerun_parent(kind: RerunKind, parent_run_state: str) -> None:
    """A from-failure rerun needs a stored-FAILED parent run (409 otherwise)."""
    if kind == "FROM_FAILURE" and parent_run_state != "FAILED":
        raise PlanningError("rerun-from-failure requires a FAILED parent run", status_code=409)


def _parent_upstream(
    tasks: Mapping[str, ParentTask], edges: Iterable[ParentEdge]
) -> dict[str, list[str]]:
    # Edges whose ends are not both tasks of the parent are ignored.
    upstream: dict[str, set[str]] = {key: set() for key in tasks}
    for parent, child in edges:
        if parent in tasks and child in tasks:
            upstream[child].add(parent)
    return {key: sorted(parents) for key, parents in upstream.items()}


def _rerun_tasks(
    tasks: Mapping[str, ParentTask], selected: Sequence[str], upstream: Mapping[str, list[str]]
) -> tuple[PlannedTask, ...]:
    # Each task keeps the parent row's asset, partition and retry settings.
    selected_set = set(selected)
    return tuple(
        PlannedTask(
            key=key,
            asset_key=tasks[key].asset_key,
            depends_on=_planned_dependencies(upstream.get(key, ()), selected_set),
            partition_key=tasks[key].partition_key,
            max_attempts=tasks[key].max_attempts,
            heartbeat_timeout_sec=tasks[key].heartbeat_timeout_sec,
            requires_visible_output=tasks[key].requires_visible_output,
        )
        for key in sorted(selected_set)
    )


def plan_rerun(
    kind: RerunKind,
    parent_tasks: Iterable[ParentTask],
    parent_edges: Iterable[ParentEdge],
    *,
    selection: Sequence[str] = (),
    include_upstream: bool = False,
    include_downstream: bool = False,
) -> RerunPlan:
    """Select and plan a rerun from the parent's tasks and dependency edges.

    ``FROM_FAILURE``: every parent task not SUCCEEDED, no expansion (the flags are ignored).
    ``SUBSET``: the canonical selection (each a parent task key, else ``unknown task keys``)
    expanded over the parent's edges. A parent without tasks is a 409; an empty result 400.
    Call :func:`check_rerun_parent` first, as upstream checks the parent state before this.
    """
    tasks = {task.key: task for task in parent_tasks}
    if not tasks:
        raise PlanningError("parent run has no plan; cannot rerun", status_code=409)
    upstream = _parent_upstream(tasks, parent_edges)
    if kind == "FROM_FAILURE":
        roots = tuple(sorted(key for key, task in tasks.items() if task.state != "SUCCEEDED"))
        selected: Sequence[str] = roots
        include_upstream = include_downstream = False
    else:
        if not selection:
            raise PlanningError("selection cannot be empty")
        roots = _resolve_roots(selection, tasks, "task")
        selected = close_selection(
            roots,
            upstream,
            include_upstream=include_upstream,
            include_downstream=include_downstream,
        )
    if not selected:
        raise PlanningError("rerun selection is empty")
    return RerunPlan(
        kind=kind,
        roots=roots,
        include_upstream=include_upstream,
        include_downstream=include_downstream,
        tasks=_rerun_tasks(tasks, selected, upstream),
    )


def plan_rerun_from_failure(
    parent_tasks: Iterable[ParentTask], parent_edges: Iterable[ParentEdge]
) -> list[PlannedTask]:
    """The tasks of a ``fromFailure`` rerun (see :func:`plan_rerun`)."""
    return list(plan_rerun("FROM_FAILURE", parent_tasks, parent_edges).tasks)


def plan_rerun_subset(
    parent_tasks: Iterable[ParentTask],
    parent_edges: Iterable[ParentEdge],
    selection: Sequence[str],
    *,
    include_upstream: bool = False,
    include_downstream: bool = False,
) -> list[PlannedTask]:
    """The tasks of a ``subset`` rerun (see :func:`plan_rerun`)."""
    plan = plan_rerun(
        "SUBSET",
        parent_tasks,
        parent_edges,
        selection=selection,
        include_upstream=include_upstream,
        include_downstream=include_downstream,
    )
    return list(plan.tasks)


def rerun_labels(labels: Mapping[str, str], parent_run_id: str, kind: RerunKind) -> dict[str, str]:
    """The request's labels plus the lineage labels ``arco.parent_run_id``/``arco.rerun.kind``."""
    return {**labels, LABEL_PARENT_RUN_ID: parent_run_id, LABEL_RERUN_KIND: kind}


def deterministic_rerun_run_key(
    parent_run_id: str,
    kind: RerunKind,
    selected_tasks: Iterable[str],
    partition_keys: Iterable[str],
) -> str:
    """The run key of a rerun sent without ``runKey``.

    Format (upstream's ``compute_rerun_run_key``):
    ``rerun:{parent_run_id}:{from_failure|subset}:{h}`` where ``h`` is the first 16 hex
    characters of SHA-256 over the compact JSON ``{"parent_run_id", "rerun_kind"
    (FROM_FAILURE|SUBSET), "selected_tasks" (sorted), "partition_keys" (sorted, distinct)}``.
    """
    payload: dict[str, JsonValue] = {
        "parent_run_id": parent_run_id,
        "rerun_kind": kind,
        "selected_tasks": list[JsonValue](sorted(set(selected_tasks))),
        "partition_keys": list[JsonValue](sorted(set(partition_keys))),
    }
    return f"rerun:{parent_run_id}:{kind.lower()}:{_sha256_hex(payload)[:16]}"


def rerun_request_fingerprint(
    parent_run_id: str, plan: RerunPlan, labels: Mapping[str, str]
) -> str:
    """The run-key fingerprint of a rerun; ``labels`` should include the lineage labels."""
    payload: dict[str, JsonValue] = {
        "parent_run_id": parent_run_id,
        "rerun_kind": plan.kind,
        "roots": list(plan.roots),
        "include_upstream": plan.include_upstream,
        "include_downstream": plan.include_downstream,
        "selected_tasks": list(plan.selected_tasks),
        "partition_keys": list(plan.partition_keys),
        "labels": {key: labels[key] for key in sorted(labels)},
    }
    return _sha256_hex(payload)
