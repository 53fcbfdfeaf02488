"""The manifests page: the active (latest) manifest's assets, their dependency graph, and
what the trigger form offers."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arco_api.console.dag_layout import DagLayout, layout
from arco_envelope import format_timestamp
from arco_orchestration.models import Manifest
from arco_orchestration.scope import Scope
from arco_orchestration.usecases.manifests import latest_manifest


@dataclass(frozen=True)
class AssetRow:
    key: str
    description: str
    upstream: tuple[str, ...]
    partitioning: str | None


@dataclass(frozen=True)
class ManifestsView:
    manifest_id: str | None
    code_version_id: str | None
    deployed_at: str | None
    deployed_by: str | None
    manifest_count: int
    assets: tuple[AssetRow, ...]
    dag: DagLayout


def _partitioning(value: object) -> str | None:
    """The partition dimensions of a partitioned asset, as JSON; ``None`` when unpartitioned."""
    if not value or (isinstance(value, dict) and not value.get("isPartitioned", True)):
        return None
    if isinstance(value, dict) and "dimensions" in value:
        value = value["dimensions"]
    return json.dumps(value, sort_keys=True)


def load_manifests_view(session: Session, scope: Scope) -> ManifestsView:
    latest = latest_manifest(session, scope.tenant_id, scope.workspace_id)
    count = session.scalar(
        select(func.count())
        .select_from(Manifest)
        .where(Manifest.tenant_id == scope.tenant_id, Manifest.workspace_id == scope.workspace_id)
    )
    if latest is None:
        return ManifestsView(None, None, None, None, 0, (), layout([], []))
    manifest_id, manifest = latest
    row = session.get(Manifest, manifest_id)
    assets = tuple(
        AssetRow(
            key=asset.key,
            description=asset.description,
            upstream=asset.upstream_keys,
            partitioning=_partitioning(asset.partitioning),
        )
        for asset in sorted(manifest.assets, key=lambda asset: asset.key)
    )
    edges = [(upstream, asset.key) for asset in assets for upstream in asset.upstream]
    return ManifestsView(
        manifest_id=manifest_id,
        code_version_id=manifest.code_version_id,
        deployed_at=format_timestamp(row.deployed_at) if row else None,
        deployed_by=row.deployed_by if row else None,
        manifest_count=int(count or 0),
        assets=assets,
        dag=layout([asset.key for asset in assets], edges),
    )
