"""Manifest deploy and reads (arco-manifest section 2): what arco's SDK ``deploy`` needs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from arco_api import bodies
from arco_api import openapi_docs as docs
from arco_api.context import api_context
from arco_api.deps import PrincipalDep, ScopeDep
from arco_api.errors import ApiError
from arco_api.http_io import BodyError, parse_json, read_body
from arco_orchestration.manifest import ManifestError, parse_manifest_body, usable_idempotency_key
from arco_orchestration.usecases import manifests
from arco_orchestration.usecases.errors import rejected_by_rules

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/manifests", tags=["manifests"])


@router.post(
    "",
    status_code=201,
    summary="Deploy a manifest",
    response_model=bodies.ManifestDeployed,
    response_model_exclude_unset=True,
    response_class=JSONResponse,
    responses=docs.user_responses(
        {201: bodies.ManifestDeployed, 200: bodies.ManifestDeployed},
        (400, 401, 404, 409, 413, 415, 422),
    ),
    openapi_extra={**docs.json_body(bodies.ManifestRequest), "parameters": [docs.IDEMPOTENCY_KEY]},
)
async def deploy_manifest(
    request: Request, response: Response, scope: ScopeDep, principal: PrincipalDep
) -> Any:
    context = api_context(request)
    try:
        raw = await read_body(request, context.settings.manifest_body_limit)
        document = parse_json(raw)
    except BodyError as error:
        raise ApiError(error.status, "BAD_REQUEST", error.message) from None
    try:
        manifest = parse_manifest_body(document)
    except ManifestError as exc:
        raise rejected_by_rules(exc) from None
    # The body and its decoded JSON are not needed past parsing; dropped now, they are not
    # alive beside the stored form while the deploy writes it (a manifest of 10,000 assets:
    # about 10 MB less at the API's peak).
    del raw, document
    deployed = await run_in_threadpool(
        manifests.deploy_manifest,
        context.db,
        scope,
        manifest,
        idempotency_key=usable_idempotency_key(request.headers.get("idempotency-key")),
        user_id=principal.user_id,
        now=context.clock(),
    )
    response.status_code = deployed.status
    return deployed.body


@router.get(
    "",
    summary="List deployed manifests, newest first",
    response_model=bodies.ManifestList,
    response_model_exclude_unset=True,
    response_class=JSONResponse,
    responses=docs.user_responses({200: bodies.ManifestList}),
    openapi_extra=docs.USER_AUTH,
)
async def list_manifests(request: Request, scope: ScopeDep) -> Any:
    context = api_context(request)
    return await run_in_threadpool(manifests.list_manifests, context.db, scope)


@router.get(
    "/{manifest_id}",
    summary="Get one deployed manifest",
    response_model=bodies.StoredManifest,
    response_model_exclude_unset=True,
    response_class=JSONResponse,
    responses=docs.user_responses({200: bodies.StoredManifest}),
    openapi_extra=docs.USER_AUTH,
)
async def get_manifest(request: Request, scope: ScopeDep, manifest_id: str) -> Any:
    context = api_context(request)
    return await run_in_threadpool(manifests.get_manifest, context.db, scope, manifest_id)
