"""Deploy a manifest and read deployed ones (arco-manifest section 2).

Manifests never change once stored, so their parsed form is cached by id: loading and
re-validating a manifest of thousands of assets on every trigger dominated its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from ulid import ULID

from arco_orchestration.db import Database
from arco_orchestration.manifest import (
    IDEMPOTENCY_CONFLICT_MESSAGE,
    DeployedManifest,
    JsonValue,
    ManifestRecord,
    deploy_response,
    idempotency_outcome,
    manifest_document,
    manifest_list_item,
    manifest_not_found_message,
    resolve_deployed_by,
)
from arco_orchestration.models import Manifest
from arco_orchestration.scope import Scope
from arco_orchestration.usecases.errors import conflict, not_found

MANIFEST_CACHE_SIZE = 32
# Parsed manifests by id; bounded, oldest entry evicted first.
_cached_manifests: dict[str, DeployedManifest] = {}


@dataclass(frozen=True)
class Deployed:
    """The answer of a deploy: 201 for a new manifest, 200 for a keyed replay."""

    status: int
    body: dict[str, JsonValue]


def _record(row: Manifest) -> ManifestRecord:
    return ManifestRecord(
        manifest_id=row.manifest_id,
        tenant_id=row.tenant_id,
        workspace_id=row.workspace_id,
        fingerprint=row.fingerprint,
        deployed_at=row.deployed_at,
        deployed_by=row.deployed_by,
    )


def _remember(manifest_id: str, manifest: DeployedManifest) -> None:
    if len(_cached_manifests) >= MANIFEST_CACHE_SIZE:
        _cached_manifests.pop(next(iter(_cached_manifests)))
    _cached_manifests[manifest_id] = manifest


def _parsed(manifest_id: str, body: object) -> DeployedManifest:
    cached = _cached_manifests.get(manifest_id)
    if cached is None:
        cached = DeployedManifest.from_stored(body)
        _remember(manifest_id, cached)
    return cached


def _store(
    session: Session,
    scope: Scope,
    manifest: DeployedManifest,
    *,
    key: str | None,
    deployed_by: str,
    now: datetime,
) -> Deployed:
    fingerprint = manifest.fingerprint()
    if key is not None:
        existing = session.scalars(
            select(Manifest).where(
                Manifest.tenant_id == scope.tenant_id,
                Manifest.workspace_id == scope.workspace_id,
                Manifest.idempotency_key == key,
            )
        ).one_or_none()
        if existing is not None:
            outcome = idempotency_outcome(existing.fingerprint, fingerprint)
            if outcome == "conflict":
                raise conflict(IDEMPOTENCY_CONFLICT_MESSAGE)
            # The same fingerprint means the same codeVersionId and assets, so this manifest
            # gives the original answer; id, time and author are the stored ones.
            return Deployed(200, deploy_response(manifest, _record(existing)))
    row = Manifest(
        manifest_id=str(ULID()),
        tenant_id=scope.tenant_id,
        workspace_id=scope.workspace_id,
        code_version_id=manifest.code_version_id,
        fingerprint=fingerprint,
        deployed_at=now,
        deployed_by=deployed_by,
        idempotency_key=key,
        asset_count=manifest.asset_count,
        body=manifest.to_stored(),
    )
    session.add(row)
    session.flush()
    # The first trigger then plans from this parsed form (``from_stored`` of its stored body
    # gives an equal manifest) instead of reading the body back and parsing it again: for
    # 10,000 assets that was a second ~10 MB of JSON and objects at the API's peak. Cached
    # before the commit: an id whose transaction rolls back is never read, and the cache is
    # bounded.
    _remember(row.manifest_id, manifest)
    return Deployed(201, deploy_response(manifest, _record(row)))


def deploy_manifest(
    db: Database,
    scope: Scope,
    manifest: DeployedManifest,
    *,
    idempotency_key: str | None,
    user_id: str | None,
    now: datetime,
) -> Deployed:
    """Store a parsed manifest, or replay the deploy recorded under ``idempotency_key`` (§2.6).

    ``idempotency_key`` is the usable key (``usable_idempotency_key``) or ``None``.
    """
    deployed_by = resolve_deployed_by(manifest.deployed_by, user_id)
    try:
        with db.transaction() as session:
            return _store(
                session, scope, manifest, key=idempotency_key, deployed_by=deployed_by, now=now
            )
    except IntegrityError:
        # A concurrent deploy with the same key won; answer as a replay of it.
        with db.transaction() as session:
            return _store(
                session, scope, manifest, key=idempotency_key, deployed_by=deployed_by, now=now
            )


def list_manifests(db: Database, scope: Scope) -> dict[str, JsonValue]:
    """``{"manifests": [...]}``, newest ``deployedAt`` first (ties: greatest id first)."""
    with db.transaction() as session:
        rows = session.scalars(
            select(Manifest)
            .where(
                Manifest.tenant_id == scope.tenant_id,
                Manifest.workspace_id == scope.workspace_id,
            )
            .order_by(Manifest.deployed_at.desc(), Manifest.manifest_id.desc())
        )
        items: list[JsonValue] = [
            manifest_list_item(_parsed(row.manifest_id, row.body), _record(row)) for row in rows
        ]
    return {"manifests": items}


def get_manifest(db: Database, scope: Scope, manifest_id: str) -> dict[str, JsonValue]:
    """The stored manifest; 404 for an unknown id or one of another workspace."""
    with db.transaction() as session:
        row = session.get(Manifest, manifest_id)
        if row is None or (row.tenant_id, row.workspace_id) != (
            scope.tenant_id,
            scope.workspace_id,
        ):
            raise not_found(manifest_not_found_message(manifest_id))
        return manifest_document(_parsed(row.manifest_id, row.body), _record(row))


# Built once (every trigger asks): a statement object keeps its SQL cache key.
_LATEST_ID = (
    select(Manifest.manifest_id)
    .where(
        Manifest.tenant_id == bindparam("tenant_id"),
        Manifest.workspace_id == bindparam("workspace_id"),
    )
    .order_by(Manifest.deployed_at.desc(), Manifest.manifest_id.desc())
    .limit(1)
)


def latest_manifest(
    session: Session, tenant_id: str, workspace_id: str
) -> tuple[str, DeployedManifest] | None:
    """The id and parsed form of a workspace's latest manifest (greatest ``deployedAt``)."""
    # On the session's connection: a plain Core SELECT of one column needs none of the ORM
    # execution layer, which cost more than the query on every trigger.
    latest_id = (
        session.connection()
        .execute(_LATEST_ID, {"tenant_id": tenant_id, "workspace_id": workspace_id})
        .scalar()
    )
    if latest_id is None:
        return None
    cached = _cached_manifests.get(latest_id)
    if cached is None:
        body = session.scalar(select(Manifest.body).where(Manifest.manifest_id == latest_id))
        cached = _parsed(latest_id, body)
    return latest_id, cached
