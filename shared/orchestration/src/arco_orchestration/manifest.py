"""The manifest deploy contract (arco-manifest.md): parsing, validation, fingerprint, read shapes.

Pure logic only: the api service parses the HTTP body, calls :func:`parse_manifest_body`, stores
:meth:`DeployedManifest.to_stored` and builds responses with the read-shape helpers below.

Errors are :class:`ManifestError`. Its ``status_code`` is 400 for the validation rules of
§2.4 and 422 for body-shape errors (wrong JSON type, missing required field), which upstream
reports through axum's ``Json`` extractor before validation runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Literal, TypeAlias

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

# axum's Json extractor prefixes every deserialization failure with this text (a 422).
SHAPE_ERROR_PREFIX = "Failed to deserialize the JSON body into the target type: "
IDEMPOTENCY_CONFLICT_MESSAGE = "idempotency key already used for a different manifest"

_SEGMENT = re.compile(r"[a-z][a-z0-9_]*")
_GIT_FIELDS = ("repository", "branch", "commitSha", "commitMessage", "author")


class AssetKeyError(ValueError):
    """An asset key that does not canonicalize; the message is upstream's."""


class ManifestError(ValueError):
    """A rejected manifest body: 400 for validation rules, 422 for body-shape errors."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


# ---------------------------------------------------------------------------------------------
# Asset keys (orchestration §2.1 "Asset key canonical form", upstream selection.rs)
# ---------------------------------------------------------------------------------------------


def canonical_asset_key(text: str) -> str:
    """Return ``ns.name`` for ``ns.name`` or ``ns/name``, or raise :class:`AssetKeyError`.

    Checks run in upstream's order with upstream's messages: empty, surrounding whitespace,
    inner whitespace, separator, empty parts, namespace segment, name segments. A slash wins
    over a dot as the separator, so ``ns/a.b`` is namespace ``ns`` with the dotted name ``a.b``.
    """
    trimmed = text.strip()
    if not trimmed:
        raise AssetKeyError("asset key cannot be empty")
    if trimmed != text:
        raise AssetKeyError("asset key cannot have leading/trailing whitespace")
    if any(char.isspace() for char in trimmed):
        raise AssetKeyError("asset key cannot contain whitespace")
    if "/" in trimmed:
        namespace, _, name = trimmed.partition("/")
    elif "." in trimmed:
        namespace, _, name = trimmed.partition(".")
    else:
        raise AssetKeyError(
            f"invalid asset key '{trimmed}': expected 'namespace.name' or 'namespace/name'"
        )
    if not namespace or not name:
        raise AssetKeyError(f"invalid asset key '{trimmed}': namespace and name must be non-empty")
    if not _is_segment(namespace):
        raise AssetKeyError(f"invalid asset key '{trimmed}': invalid namespace '{namespace}'")
    if not all(_is_segment(segment) for segment in name.split(".")):
        raise AssetKeyError(f"invalid asset key '{trimmed}': invalid name '{name}'")
    return f"{namespace}.{name}"


def _is_segment(text: str) -> bool:
    # fullmatch on an ASCII class: str.islower()/isdigit() would also accept non-ASCII letters.
    return _SEGMENT.fullmatch(text) is not None


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitContext:
    """The ``git`` object; every field defaults to ``""``/``false`` like upstream."""

    repository: str = ""
    branch: str = ""
    commit_sha: str = ""
    commit_message: str = ""
    author: str = ""
    dirty: bool = False

    def to_json(self) -> dict[str, JsonValue]:
        """The camelCase object in upstream's field order (used by the fingerprint too)."""
        return {
            "repository": self.repository,
            "branch": self.branch,
            "commitSha": self.commit_sha,
            "commitMessage": self.commit_message,
            "author": self.author,
            "dirty": self.dirty,
        }


@dataclass(frozen=True)
class ManifestDependency:
    """One ``dependencies[]`` item; only ``upstream_key`` is read by planning."""

    namespace: str
    name: str
    parameter_name: str = ""
    mapping: str = ""

    @cached_property
    def upstream_key(self) -> str:
        """Canonical ``ns.name`` of the upstream asset (valid once the manifest is validated)."""
        return canonical_asset_key(f"{self.namespace}/{self.name}")

    def to_json(self) -> dict[str, JsonValue]:
        """The camelCase object in upstream's field order."""
        return {
            "upstreamKey": {"namespace": self.namespace, "name": self.name},
            "parameterName": self.parameter_name,
            "mapping": self.mapping,
        }


@dataclass(frozen=True)
class ManifestAsset:
    """One asset entry. Free-form fields are kept verbatim (``None`` when absent)."""

    namespace: str
    name: str
    id: str
    description: str = ""
    owners: tuple[str, ...] = ()
    tags: JsonValue = None
    partitioning: JsonValue = None
    dependencies: tuple[ManifestDependency, ...] = ()
    code: JsonValue = None
    checks: tuple[JsonValue, ...] = ()
    execution: JsonValue = None
    resources: JsonValue = None
    io: JsonValue = None
    transform_fingerprint: str = ""

    # Cached: planning reads keys of every asset on each trigger (the manifest is immutable).
    @cached_property
    def key(self) -> str:
        """Canonical ``ns.name`` (valid once the manifest is validated)."""
        return canonical_asset_key(f"{self.namespace}/{self.name}")

    @cached_property
    def upstream_keys(self) -> tuple[str, ...]:
        """Canonical upstream keys in declaration order."""
        return tuple(dependency.upstream_key for dependency in self.dependencies)

    def to_json(self) -> dict[str, JsonValue]:
        """The §2.5 projection: upstream's field order, object keys sorted, defaults filled."""
        return {
            "key": {"namespace": self.namespace, "name": self.name},
            "id": self.id,
            "description": self.description,
            "owners": list(self.owners),
            "tags": sorted_json(self.tags),
            "partitioning": sorted_json(self.partitioning),
            "dependencies": [dependency.to_json() for dependency in self.dependencies],
            "code": sorted_json(self.code),
            "checks": [sorted_json(check) for check in self.checks],
            "execution": sorted_json(self.execution),
            "resources": sorted_json(self.resources),
            "io": sorted_json(self.io),
            "transformFingerprint": self.transform_fingerprint,
        }


@dataclass(frozen=True)
class ManifestSchedule:
    """One ``schedules[]`` item; ``assets`` are kept as sent (``ns.name`` or ``ns/name``)."""

    id: str
    cron: str
    assets: tuple[str, ...]
    timezone: str = "UTC"

    @property
    def asset_keys(self) -> tuple[str, ...]:
        """Canonical asset keys (valid once the manifest is validated)."""
        return tuple(canonical_asset_key(asset) for asset in self.assets)

    def to_json(self) -> dict[str, JsonValue]:
        """The object in upstream's field order."""
        return {
            "id": self.id,
            "cron": self.cron,
            "assets": list(self.assets),
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class DeployedManifest:
    """A parsed and validated deploy body (what the server keeps of it).

    ``tenantId``, ``workspaceId`` and ``deployedAt`` of the body are ignored, as upstream does:
    the tenant and workspace come from auth and the path, the timestamp from the server.
    """

    manifest_version: str
    code_version_id: str
    assets: tuple[ManifestAsset, ...]
    git: GitContext = field(default_factory=GitContext)
    schedules: tuple[ManifestSchedule, ...] = ()
    deployed_by: str | None = None
    metadata: JsonValue = None

    @property
    def asset_count(self) -> int:
        """Number of assets (the ``assetCount`` of responses)."""
        return len(self.assets)

    @cached_property
    def asset_keys(self) -> tuple[str, ...]:
        """Canonical asset keys in request order."""
        return tuple(asset.key for asset in self.assets)

    @cached_property
    def _asset_index(self) -> dict[str, ManifestAsset]:
        return {asset.key: asset for asset in self.assets}

    @cached_property
    def _upstream_graph(self) -> dict[str, tuple[str, ...]]:
        known = set(self.asset_keys)
        return {
            asset.key: tuple(key for key in asset.upstream_keys if key in known)
            for asset in self.assets
        }

    def asset_by_key(self) -> dict[str, ManifestAsset]:
        """Assets indexed by canonical key (a copy the caller may change)."""
        return dict(self._asset_index)

    def upstream_graph(self) -> dict[str, tuple[str, ...]]:
        """Upstream keys per asset, dropping edges to assets not in this manifest (§2.10);
        a copy the caller may change."""
        return dict(self._upstream_graph)

    def fingerprint(self) -> str:
        """The server fingerprint of §2.5."""
        return manifest_fingerprint(self)

    def to_stored(self) -> dict[str, JsonValue]:
        """A JSON document for a JSON column; :meth:`from_stored` reads it back."""
        document: dict[str, JsonValue] = {
            "manifestVersion": self.manifest_version,
            "codeVersionId": self.code_version_id,
            "git": self.git.to_json(),
            "assets": [asset.to_json() for asset in self.assets],
            "schedules": [schedule.to_json() for schedule in self.schedules],
            "metadata": sorted_json(self.metadata),
        }
        if self.deployed_by is not None:
            document["deployedBy"] = self.deployed_by
        return document

    @classmethod
    def from_stored(cls, document: object) -> DeployedManifest:
        """Rebuild a manifest from :meth:`to_stored` output.

        The document goes through :func:`parse_manifest_body` again, so a corrupt row raises
        :class:`ManifestError`; callers should treat that as a 500 (upstream does the same for
        an unreadable stored manifest).
        """
        return parse_manifest_body(document)


# ---------------------------------------------------------------------------------------------
# Body shape (upstream: serde into DeployManifestRequest; failures are 422)
# ---------------------------------------------------------------------------------------------


def describe_json_value(value: object) -> str:
    """Describe a JSON value the way serde's ``invalid type`` errors do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def shape_error_message(path: str, problem: str) -> str:
    """Upstream's 422 text for a problem at a JSON path (no path at the body root)."""
    return SHAPE_ERROR_PREFIX + (f"{path}: {problem}" if path else problem)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shape_error(path: str, problem: str) -> ManifestError:
    return ManifestError(shape_error_message(path, problem), status_code=422)


def _type_error(path: str, value: object, expected: str) -> ManifestError:
    return _shape_error(path, f"invalid type: {describe_json_value(value)}, expected {expected}")


def _struct(value: object, path: str, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _type_error(path, value, f"struct {name}")
    return value


def _required(obj: Mapping[str, object], key: str, path: str) -> object:
    if key not in obj:
        raise _shape_error(path, f"missing field `{key}`")
    return obj[key]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _type_error(path, value, "a string")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(path, value, "a boolean")
    return value


def _sequence(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _type_error(path, value, "a sequence")
    return value


def _opt_string(obj: Mapping[str, object], key: str, path: str, default: str = "") -> str:
    # serde `#[serde(default)] String`: absent -> default, null -> type error.
    return _string(obj[key], _join(path, key)) if key in obj else default


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = _sequence(value, path)
    return tuple(_string(item, f"{path}[{index}]") for index, item in enumerate(items))


def _items(obj: Mapping[str, object], key: str, path: str) -> list[tuple[object, str]]:
    # An optional array field: absent -> [], null -> type error; yields (item, item path).
    if key not in obj:
        return []
    item_path = _join(path, key)
    items = _sequence(obj[key], item_path)
    return [(item, f"{item_path}[{index}]") for index, item in enumerate(items)]


def _free_form(obj: Mapping[str, object], key: str) -> JsonValue:
    # serde_json::Value with a default: anything goes, absent -> null.
    return _as_json(obj.get(key))


def _as_json(value: object) -> JsonValue:
    if isinstance(value, dict):
        return {str(key): _as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise _shape_error("", f"unsupported JSON value {value!r}")


def _parse_key(value: object, path: str) -> tuple[str, str]:
    obj = _struct(value, path, "AssetKey")
    namespace = _string(_required(obj, "namespace", path), _join(path, "namespace"))
    name = _string(_required(obj, "name", path), _join(path, "name"))
    return namespace, name


def _parse_git(body: Mapping[str, object]) -> GitContext:
    if "git" not in body:
        return GitContext()
    obj = _struct(body["git"], "git", "GitContext")
    strings = {key: _opt_string(obj, key, "git") for key in _GIT_FIELDS}
    dirty = _boolean(obj["dirty"], "git.dirty") if "dirty" in obj else False
    return GitContext(
        repository=strings["repository"],
        branch=strings["branch"],
        commit_sha=strings["commitSha"],
        commit_message=strings["commitMessage"],
        author=strings["author"],
        dirty=dirty,
    )


def _parse_dependency(value: object, path: str) -> ManifestDependency:
    obj = _struct(value, path, "AssetDependency")
    namespace, name = _parse_key(_required(obj, "upstreamKey", path), _join(path, "upstreamKey"))
    return ManifestDependency(
        namespace=namespace,
        name=name,
        parameter_name=_opt_string(obj, "parameterName", path),
        mapping=_opt_string(obj, "mapping", path),
    )


def _parse_asset(value: object, path: str) -> ManifestAsset:
    obj = _struct(value, path, "AssetEntry")
    namespace, name = _parse_key(_required(obj, "key", path), _join(path, "key"))
    owners = _strings(obj["owners"], _join(path, "owners")) if "owners" in obj else ()
    return ManifestAsset(
        namespace=namespace,
        name=name,
        id=_string(_required(obj, "id", path), _join(path, "id")),
        description=_opt_string(obj, "description", path),
        owners=owners,
        tags=_free_form(obj, "tags"),
        partitioning=_free_form(obj, "partitioning"),
        dependencies=tuple(
            _parse_dependency(item, item_path)
            for item, item_path in _items(obj, "dependencies", path)
        ),
        code=_free_form(obj, "code"),
        checks=tuple(_as_json(item) for item, _ in _items(obj, "checks", path)),
        execution=_free_form(obj, "execution"),
        resources=_free_form(obj, "resources"),
        io=_free_form(obj, "io"),
        transform_fingerprint=_opt_string(obj, "transformFingerprint", path),
    )


def _parse_schedule(value: object, path: str) -> ManifestSchedule:
    obj = _struct(value, path, "ScheduleEntry")
    return ManifestSchedule(
        id=_string(_required(obj, "id", path), _join(path, "id")),
        cron=_string(_required(obj, "cron", path), _join(path, "cron")),
        assets=_strings(_required(obj, "assets", path), _join(path, "assets")),
        timezone=_opt_string(obj, "timezone", path, default="UTC"),
    )


def _parse_deployed_by(body: Mapping[str, object]) -> str | None:
    value = body.get("deployedBy")
    return None if value is None else _string(value, "deployedBy")


def parse_manifest_shape(body: object) -> DeployedManifest:
    """Read the body into the model without the §2.4 rules (422 :class:`ManifestError`).

    Unknown fields are ignored at every level. Required: ``manifestVersion``,
    ``codeVersionId``, ``assets``; per asset ``key{namespace,name}`` and ``id``; per
    dependency ``upstreamKey``; per schedule ``id``, ``cron``, ``assets``. Optional fields
    that are present with ``null`` are type errors, except ``deployedBy`` and free-form values.
    """
    obj = _struct(body, "", "DeployManifestRequest")
    manifest_version = _string(_required(obj, "manifestVersion", ""), "manifestVersion")
    code_version_id = _string(_required(obj, "codeVersionId", ""), "codeVersionId")
    assets = _sequence(_required(obj, "assets", ""), "assets")
    return DeployedManifest(
        manifest_version=manifest_version,
        code_version_id=code_version_id,
        git=_parse_git(obj),
        assets=tuple(_parse_asset(item, f"assets[{i}]") for i, item in enumerate(assets)),
        schedules=tuple(
            _parse_schedule(item, item_path) for item, item_path in _items(obj, "schedules", "")
        ),
        deployed_by=_parse_deployed_by(obj),
        metadata=_free_form(obj, "metadata"),
    )


# ---------------------------------------------------------------------------------------------
# Validation (§2.4, all 400, in upstream's order)
# ---------------------------------------------------------------------------------------------


def parse_manifest_body(body: object) -> DeployedManifest:
    """Parse and validate a deploy body; raise :class:`ManifestError` (422 shape, 400 rules)."""
    manifest = parse_manifest_shape(body)
    validate_manifest(manifest)
    return manifest


def validate_manifest(manifest: DeployedManifest) -> None:
    """Apply the §2.4 rules in order; the first failure raises a 400 :class:`ManifestError`."""
    if not manifest.manifest_version.strip():
        raise ManifestError("manifestVersion is required")
    if not manifest.code_version_id.strip():
        raise ManifestError("codeVersionId is required")
    if not manifest.assets:
        raise ManifestError("manifest must contain at least one asset")
    known = _validate_asset_keys(manifest.assets)
    _validate_dependencies(manifest.assets, known)
    _validate_schedules(manifest.schedules, known)


def _checked_key(text: str) -> str:
    try:
        return canonical_asset_key(text)
    except AssetKeyError as exc:
        raise ManifestError(str(exc)) from None


def _validate_asset_keys(assets: Sequence[ManifestAsset]) -> set[str]:
    known: set[str] = set()
    for asset in assets:
        if not asset.namespace.strip() or not asset.name.strip():
            raise ManifestError("asset key must include namespace and name")
        if not asset.id.strip():
            raise ManifestError("asset id is required")
        key = _checked_key(f"{asset.namespace}/{asset.name}")
        if key in known:
            raise ManifestError("duplicate asset key in manifest")
        known.add(key)
    return known


def _validate_dependencies(assets: Sequence[ManifestAsset], known: set[str]) -> None:
    # A second pass, so a dependent may come before its upstream. No cycle detection, and a
    # self-dependency passes, exactly like upstream.
    for asset in assets:
        for dependency in asset.dependencies:
            upstream = _checked_key(f"{dependency.namespace}/{dependency.name}")
            if upstream not in known:
                raise ManifestError(f"asset '{asset.key}' depends on unknown asset '{upstream}'")


def _validate_schedules(schedules: Sequence[ManifestSchedule], known: set[str]) -> None:
    seen: set[str] = set()
    for schedule in schedules:
        if not schedule.id.strip():
            raise ManifestError("schedule id is required")
        if not schedule.cron.strip():
            raise ManifestError("schedule cron is required")
        if len(schedule.cron.split()) not in (5, 6):
            raise ManifestError(
                "schedule cron must have 5 fields (min..dow) or 6 fields (sec..dow)"
            )
        if not cron_is_valid(schedule.cron):
            raise ManifestError("invalid schedule cron")
        if not timezone_is_valid(schedule.timezone):
            raise ManifestError("invalid schedule timezone")
        if not schedule.assets:
            raise ManifestError("schedule must include at least one asset")
        for asset in schedule.assets:
            key = _checked_key(asset)
            if key not in known:
                raise ManifestError(f"schedule '{schedule.id}' references unknown asset '{key}'")
        # Upstream checks the id for duplicates only after the schedule's assets.
        if schedule.id in seen:
            raise ManifestError("duplicate schedule id in manifest")
        seen.add(schedule.id)


# ---------------------------------------------------------------------------------------------
# Cron and timezone (the Rust `cron` and `chrono-tz` crates)
# ---------------------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
# The cron crate numbers days of the week 1..7 starting on Sunday.
_WEEKDAYS = {
    name: number
    for number, names in enumerate(
        (
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tues", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thurs", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        ),
        start=1,
    )
    for name in names
}


@dataclass(frozen=True)
class _CronField:
    low: int
    high: int
    names: Mapping[str, int] | None = None
    allows_any: bool = False  # `?` is accepted in day-of-month and day-of-week only


_CRON_FIELDS = (
    _CronField(0, 59),
    _CronField(0, 59),
    _CronField(0, 23),
    _CronField(1, 31, allows_any=True),
    _CronField(1, 12, names=_MONTHS),
    _CronField(1, 7, names=_WEEKDAYS, allows_any=True),
)
_DIGITS = re.compile(r"[0-9]+")
_LETTERS = re.compile(r"[A-Za-z]+")


def cron_is_valid(expression: str) -> bool:
    """Whether ``expression`` (5 or 6 fields) parses like upstream's ``cron::Schedule``.

    A 5-field expression gets a ``0`` seconds field first. Fields accept ``*``, numbers,
    ranges ``a-b``, names (months, weekdays) and name ranges, lists ``a,b`` and steps
    ``x/n``; ``?`` only in day-of-month and day-of-week. A zero step is rejected (in Rust it
    would panic).
    """
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return False
    return all(
        all(_cron_item_is_valid(item, spec) for item in text.split(","))
        for text, spec in zip(fields, _CRON_FIELDS, strict=True)
    )


def _cron_item_is_valid(item: str, spec: _CronField) -> bool:
    base, has_step, step = item.partition("/")
    if has_step:
        if not _DIGITS.fullmatch(step) or int(step) == 0:
            return False
        if _LETTERS.fullmatch(base):
            return False  # a named point cannot carry a step
    if base == "*" or (base == "?" and spec.allows_any):
        return True
    low_text, is_range, high_text = base.partition("-")
    low = _cron_ordinal(low_text, spec)
    if low is None:
        return False
    if not is_range:
        return True
    high = _cron_ordinal(high_text, spec)
    same_kind = bool(_DIGITS.fullmatch(low_text)) == bool(_DIGITS.fullmatch(high_text))
    return high is not None and same_kind and low <= high


def _cron_ordinal(text: str, spec: _CronField) -> int | None:
    if _DIGITS.fullmatch(text):
        value = int(text)
    elif _LETTERS.fullmatch(text) and spec.names is not None:
        found = spec.names.get(text.lower())
        if found is None:
            return None
        value = found
    else:
        return None
    return value if spec.low <= value <= spec.high else None


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_is_valid(name: str) -> bool:
    """Whether ``name`` is an IANA zone name (case-sensitive, like chrono-tz)."""
    return name in _known_timezones()


# ---------------------------------------------------------------------------------------------
# Fingerprint (§2.5)
# ---------------------------------------------------------------------------------------------


def sorted_json(value: JsonValue) -> JsonValue:
    """Copy a JSON value with object keys sorted at every depth (serde_json's BTreeMap order).

    Python sorts strings by code point, which is the same as Rust's UTF-8 byte order.
    """
    if isinstance(value, dict):
        return {key: sorted_json(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_json(item) for item in value]
    return value


def compact_json_bytes(value: JsonValue) -> bytes:
    """Compact UTF-8 JSON with only ``"``, ``\\`` and control characters escaped (serde_json).

    Floats are not byte-compatible with serde_json's ryu output; the SDK never sends floats.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def manifest_fingerprint_document(manifest: DeployedManifest) -> dict[str, JsonValue]:
    """The object that is hashed: fixed field order, assets and schedules sorted."""
    assets = sorted(manifest.assets, key=lambda asset: (asset.namespace, asset.name, asset.id))
    schedules = sorted(manifest.schedules, key=lambda schedule: (schedule.id, schedule.cron))
    return {
        "manifestVersion": manifest.manifest_version,
        "codeVersionId": manifest.code_version_id,
        "git": manifest.git.to_json(),
        "assets": [asset.to_json() for asset in assets],
        "schedules": [schedule.to_json() for schedule in schedules],
        "metadata": sorted_json(manifest.metadata),
    }


def manifest_fingerprint_preimage(manifest: DeployedManifest) -> bytes:
    """The exact bytes hashed by :func:`manifest_fingerprint`."""
    return compact_json_bytes(manifest_fingerprint_document(manifest))


def manifest_fingerprint(manifest: DeployedManifest) -> str:
    """Lowercase hex SHA-256 of the §2.5 projection (excludes ``deployedBy``, tenant, ...)."""
    return hashlib.sha256(manifest_fingerprint_preimage(manifest)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Idempotency-Key (§2.6) and id/timestamp rules (§2.7): the pure parts
# ---------------------------------------------------------------------------------------------

IdempotencyOutcome: TypeAlias = Literal["create", "replay", "conflict"]


def usable_idempotency_key(header_value: str | None) -> str | None:
    """The key as used by upstream: a value with anything but visible ASCII counts as absent.

    Like the ``http`` crate's ``HeaderValue::to_str``, tab and space are accepted. No trimming
    and no length or format limit.
    """
    if header_value is None:
        return None
    if all(char == "\t" or " " <= char <= "~" for char in header_value):
        return header_value
    return None


def idempotency_outcome(existing_fingerprint: str | None, fingerprint: str) -> IdempotencyOutcome:
    """What a keyed deploy does given the fingerprint already recorded for the key, if any.

    ``replay`` answers 200 with the original values and writes nothing; ``conflict`` is a 409
    with :data:`IDEMPOTENCY_CONFLICT_MESSAGE`.
    """
    if existing_fingerprint is None:
        return "create"
    return "replay" if existing_fingerprint == fingerprint else "conflict"


def resolve_deployed_by(request_value: str | None, user_id: str | None) -> str:
    """The stored ``deployedBy``: the request's value (even ``""``), else the user, else api."""
    if request_value is not None:
        return request_value
    return user_id if user_id is not None else "api"


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and 0, 3 or 6 fraction digits (like chrono)."""
    if moment.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    utc = moment.astimezone(UTC)
    base = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}"
    if utc.microsecond == 0:
        return f"{base}Z"
    if utc.microsecond % 1000 == 0:
        return f"{base}.{utc.microsecond // 1000:03d}Z"
    return f"{base}.{utc.microsecond:06d}Z"


# ---------------------------------------------------------------------------------------------
# Read shapes (§2.7 step 6, §2.8), camelCase
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRecord:
    """The server-side facts kept with a manifest (what the api stores next to the body)."""

    manifest_id: str
    tenant_id: str
    workspace_id: str
    fingerprint: str
    deployed_at: datetime
    deployed_by: str


def deploy_response(manifest: DeployedManifest, record: ManifestRecord) -> dict[str, JsonValue]:
    """The 201 (or replayed 200) body of ``POST …/manifests``."""
    return {
        "manifestId": record.manifest_id,
        "workspaceId": record.workspace_id,
        "codeVersionId": manifest.code_version_id,
        "fingerprint": record.fingerprint,
        "assetCount": manifest.asset_count,
        "deployedAt": format_timestamp(record.deployed_at),
    }


def manifest_document(manifest: DeployedManifest, record: ManifestRecord) -> dict[str, JsonValue]:
    """The ``GET …/manifests/{id}`` body (StoredManifest), fields in upstream's order.

    Assets and schedules keep request order; each asset is the §2.5 projection.
    """
    return {
        "manifestId": record.manifest_id,
        "tenantId": record.tenant_id,
        "workspaceId": record.workspace_id,
        "manifestVersion": manifest.manifest_version,
        "codeVersionId": manifest.code_version_id,
        "fingerprint": record.fingerprint,
        "git": manifest.git.to_json(),
        "assets": [asset.to_json() for asset in manifest.assets],
        "schedules": [schedule.to_json() for schedule in manifest.schedules],
        "deployedAt": format_timestamp(record.deployed_at),
        "deployedBy": record.deployed_by,
        "metadata": sorted_json(manifest.metadata),
    }


def manifest_list_item(manifest: DeployedManifest, record: ManifestRecord) -> dict[str, JsonValue]:
    """One item of ``GET …/manifests``; empty git branch/commit become ``null``."""
    return {
        "manifestId": record.manifest_id,
        "codeVersionId": manifest.code_version_id,
        "fingerprint": record.fingerprint,
        "assetCount": manifest.asset_count,
        "gitBranch": manifest.git.branch or None,
        "gitCommit": manifest.git.commit_sha or None,
        "deployedAt": format_timestamp(record.deployed_at),
        "deployedBy": record.deployed_by,
    }


def manifest_list(
    entries: Iterable[tuple[DeployedManifest, ManifestRecord]],
) -> dict[str, JsonValue]:
    """The list body ``{"manifests": [...]}``, newest ``deployedAt`` first."""
    ordered = sorted(entries, key=lambda entry: entry[1].deployed_at, reverse=True)
    return {"manifests": [manifest_list_item(manifest, record) for manifest, record in ordered]}


def manifest_not_found_message(manifest_id: str) -> str:
    """The 404 message of ``GET …/manifests/{id}``."""
    return f"manifest not found: {manifest_id}"
