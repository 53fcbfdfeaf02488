"""Manifest deploy and reads (arco-manifest section 2): what arco's SDK ``deploy`` needs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from ulid import ULID

from arco_api import openapi_docs as docs
from arco_api.context import api_context
from arco_api.deps import PrincipalDep, ScopeDep
from arco_api.errors import ApiError, conflict, not_found
from arco_api.http_io import BodyError, parse_json, read_body
from arco_envelope import format_timestamp
from arco_orchestration.manifest import DeployedManifest, ManifestError, parse_manifest_body
from arco_orchestration.models import Manifest

MANIFEST_CACHE_SIZE = 32
# Parsed manifests by id (stored manifests are immutable); bounded, oldest entry evicted first.
_cached_manifests: dict[str, DeployedManifest] = {}

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/manifests", tags=["manifests"])


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value


def _deploy_response(row: Manifest) -> dict[str, Any]:
    return {
        "manifestId": row.manifest_id,
        "workspaceId": row.workspace_id,
        "codeVersionId": row.code_version_id,
        "fingerprint": row.fingerprint,
        "assetCount": row.asset_count,
        "deployedAt": format_timestamp(row.deployed_at),
    }


def _stored_manifest(row: Manifest) -> dict[str, Any]:
    body = dict(row.body)
    return {
        "manifestId": row.manifest_id,
        "tenantId": row.tenant_id,
        "workspaceId": row.workspace_id,
        "manifestVersion": body.get("manifestVersion"),
        "codeVersionId": row.code_version_id,
        "fingerprint": row.fingerprint,
        "git": body.get("git"),
        "assets": body.get("assets", []),
        "schedules": body.get("schedules", []),
        "deployedAt": format_timestamp(row.deployed_at),
        "deployedBy": row.deployed_by,
        "metadata": body.get("metadata"),
    }


@router.post(
    "",
    status_code=201,
    summary="Deploy a manifest",
    responses=docs.user_responses(
        {201: docs.ManifestDeployed, 200: docs.ManifestDeployed},
        (400, 401, 404, 409, 413, 415, 422),
    ),
    openapi_extra={**docs.json_body(docs.ManifestRequest), "parameters": [docs.IDEMPOTENCY_KEY]},
)
async def deploy_manifest(
    request: Request, scope: ScopeDep, principal: PrincipalDep
) -> JSONResponse:
    context = api_context(request)
    try:
        raw = await read_body(request, context.settings.manifest_body_limit)
        document = parse_json(raw)
    except BodyError as error:
        raise ApiError(error.status, "BAD_REQUEST", error.message) from None
    try:
        manifest = parse_manifest_body(document)
    except ManifestError as exc:
        code = "UNPROCESSABLE_ENTITY" if exc.status_code == 422 else "BAD_REQUEST"
        raise ApiError(exc.status_code, code, exc.message) from None
    key = _idempotency_key(request)
    now = context.clock()
    deployed_by = (
        manifest.deployed_by if manifest.deployed_by is not None else (principal.user_id or "api")
    )

    def store(session: Session) -> tuple[int, Manifest]:
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
                if existing.fingerprint != fingerprint:
                    raise conflict("idempotency key already used for a different manifest")
                return 200, existing
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
        return 201, row

    def deploy() -> tuple[int, Manifest]:
        try:
            with context.db.transaction() as session:
                return store(session)
        except IntegrityError:
            # A concurrent deploy with the same key won; answer as a replay of it.
            with context.db.transaction() as session:
                return store(session)

    status, row = await run_in_threadpool(deploy)
    return JSONResponse(_deploy_response(row), status_code=status)


@router.get(
    "",
    summary="List deployed manifests, newest first",
    response_model=None,
    responses=docs.user_responses({200: docs.ManifestList}),
    openapi_extra=docs.USER_AUTH,
)
async def list_manifests(request: Request, scope: ScopeDep) -> dict[str, Any]:
    context = api_context(request)

    def load() -> list[dict[str, Any]]:
        with context.db.transaction() as session:
            rows = session.scalars(
                select(Manifest)
                .where(
                    Manifest.tenant_id == scope.tenant_id,
                    Manifest.workspace_id == scope.workspace_id,
                )
                .order_by(Manifest.deployed_at.desc(), Manifest.manifest_id.desc())
            )
            items = []
            for row in rows:
                git = dict(row.body.get("git") or {})
                items.append(
                    {
                        "manifestId": row.manifest_id,
                        "codeVersionId": row.code_version_id,
                        "fingerprint": row.fingerprint,
                        "assetCount": row.asset_count,
                        "gitBranch": git.get("branch") or None,
                        "gitCommit": git.get("commitSha") or None,
                        "deployedAt": format_timestamp(row.deployed_at),
                        "deployedBy": row.deployed_by,
                    }
                )
            return items

    return {"manifests": await run_in_threadpool(load)}


@router.get(
    "/{manifest_id}",
    summary="Get one deployed manifest",
    response_model=None,
    responses=docs.user_responses({200: docs.StoredManifest}),
    openapi_extra=docs.USER_AUTH,
)
async def get_manifest(request: Request, scope: ScopeDep, manifest_id: str) -> dict[str, Any]:
    context = api_context(request)

    def load() -> dict[str, Any] | None:
        with context.db.transaction() as session:
            row = session.get(Manifest, manifest_id)
            if row is None or (row.tenant_id, row.workspace_id) != (
                scope.tenant_id,
                scope.workspace_id,
            ):
                return None
            return _stored_manifest(row)

    found = await run_in_threadpool(load)
    if found is None:
        raise not_found(f"manifest not found: {manifest_id}")
    return found


def latest_manifest(
    session: Session, tenant_id: str, workspace_id: str
) -> tuple[str, DeployedManifest] | None:
    """The id and parsed form of a workspace's latest manifest (greatest ``deployedAt``).

    Manifests never change once stored, so the parsed form is cached by id: loading and
    re-validating a manifest of thousands of assets on every trigger dominated its cost.
    """
    latest_id = session.scalar(
        select(Manifest.manifest_id)
        .where(Manifest.tenant_id == tenant_id, Manifest.workspace_id == workspace_id)
        .order_by(Manifest.deployed_at.desc(), Manifest.manifest_id.desc())
        .limit(1)
    )
    if latest_id is None:
        return None
    cached = _cached_manifests.get(latest_id)
    if cached is None:
        body = session.scalar(select(Manifest.body).where(Manifest.manifest_id == latest_id))
        cached = DeployedManifest.from_stored(body)
        if len(_cached_manifests) >= MANIFEST_CACHE_SIZE:
            _cached_manifests.pop(next(iter(_cached_manifests)))
        _cached_manifests[latest_id] = cached
    return latest_id, cached
