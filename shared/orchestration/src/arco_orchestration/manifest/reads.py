"""The pure parts of a deploy and the read shapes: Idempotency-Key (§2.6), id and timestamp
rules (§2.7), responses (§2.7 step 6, §2.8), camelCase."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from arco_envelope.timestamps import format_timestamp
from arco_orchestration.json_shape import (
    JsonValue,
    sorted_json,
)
from arco_orchestration.manifest.document import DeployedManifest

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
