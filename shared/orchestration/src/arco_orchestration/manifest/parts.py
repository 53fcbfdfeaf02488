"""The parts of a deployed manifest (arco-manifest.md §2): git context, assets, their
dependencies, schedules; and the error every manifest rule raises."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from arco_orchestration.json_shape import (
    JsonValue,
    sorted_json,
)
from arco_orchestration.manifest.keys import canonical_asset_key

IDEMPOTENCY_CONFLICT_MESSAGE = "idempotency key already used for a different manifest"


class ManifestError(ValueError):
    """A rejected manifest body: 400 for validation rules, 422 for body-shape errors."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


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
