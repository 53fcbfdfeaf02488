"""The deployed manifest: the model a deploy is parsed into (and rebuilt from its stored
form), its parsing and validation entry points, and its fingerprint (§2.5)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from arco_orchestration.json_shape import (
    JsonValue,
    ShapeError,
    compact_json_bytes,
    items,
    required,
    sequence,
    sorted_json,
    string,
    struct,
)
from arco_orchestration.manifest import shape, validation
from arco_orchestration.manifest.parts import (
    GitContext,
    ManifestAsset,
    ManifestError,
    ManifestSchedule,
)


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
    def asset_key_set(self) -> frozenset[str]:
        """The canonical asset keys as a set, built once per manifest: a trigger checks its
        selection against it, and rebuilding it from thousands of keys per request cost more
        than the rest of the planning."""
        return frozenset(self.asset_keys)

    @cached_property
    def _asset_index(self) -> dict[str, ManifestAsset]:
        return {asset.key: asset for asset in self.assets}

    @cached_property
    def _upstream_graph(self) -> dict[str, tuple[str, ...]]:
        known = self.asset_key_set
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

    def upstream_view(self) -> Mapping[str, tuple[str, ...]]:
        """:meth:`upstream_graph` without the copy, for callers that only read it (planning
        a trigger copied the whole graph for each run)."""
        return self._upstream_graph

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
    known = validation.asset_keys(manifest.assets)
    validation.dependencies(manifest.assets, known)
    validation.schedules(manifest.schedules, known)


def parse_manifest_shape(body: object) -> DeployedManifest:
    """Read the body into the model without the §2.4 rules (422 :class:`ManifestError`).

    Unknown fields are ignored at every level. Required: ``manifestVersion``,
    ``codeVersionId``, ``assets``; per asset ``key{namespace,name}`` and ``id``; per
    dependency ``upstreamKey``; per schedule ``id``, ``cron``, ``assets``. Optional fields
    that are present with ``null`` are type errors, except ``deployedBy`` and free-form values.
    """
    try:
        return _parse_manifest_shape(body)
    except ShapeError as error:
        raise ManifestError(error.message, status_code=error.status_code) from None


def _parse_manifest_shape(body: object) -> DeployedManifest:
    obj = struct(body, "", "DeployManifestRequest")
    manifest_version = string(required(obj, "manifestVersion", ""), "manifestVersion")
    code_version_id = string(required(obj, "codeVersionId", ""), "codeVersionId")
    assets = sequence(required(obj, "assets", ""), "assets")
    return DeployedManifest(
        manifest_version=manifest_version,
        code_version_id=code_version_id,
        git=shape.parse_git(obj),
        assets=tuple(shape.parse_asset(item, f"assets[{i}]") for i, item in enumerate(assets)),
        schedules=tuple(
            shape.parse_schedule(item, item_path) for item, item_path in items(obj, "schedules", "")
        ),
        deployed_by=shape.parse_deployed_by(obj),
        metadata=shape.free_form(obj, "metadata"),
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
