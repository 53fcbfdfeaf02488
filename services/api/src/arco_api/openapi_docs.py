"""The OpenAPI document: response and error declarations of the routes, security schemes.

The bodies themselves are the models of :mod:`arco_api.bodies`; this module only says which
route answers which of them, and registers every model (request bodies too) as a component.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from arco_api.bodies import (
    ApiErrorBody,
    CallbackErrorBody,
    CancelRunRequest,
    Health,
    HeartbeatAck,
    LogUploaded,
    LogUploadRequest,
    ManifestDeployed,
    ManifestList,
    ManifestRequest,
    Readiness,
    RerunRunRequest,
    RerunTriggered,
    RunCancelled,
    RunDetail,
    RunList,
    RunTasks,
    RunTriggered,
    StorageIdErrorBody,
    StoredManifest,
    TaskCompletedAck,
    TaskDetail,
    TaskStartedAck,
    TriggerRunRequest,
    VersionInfo,
)
from arco_envelope import HeartbeatRequest, TaskCompletedRequest, TaskStartedRequest

USER_SECURITY = "userBearer"
TASK_SECURITY = "taskToken"

_DOC_MODELS: tuple[type[BaseModel], ...] = (
    ApiErrorBody,
    CallbackErrorBody,
    StorageIdErrorBody,
    Health,
    Readiness,
    VersionInfo,
    ManifestRequest,
    ManifestDeployed,
    ManifestList,
    StoredManifest,
    TriggerRunRequest,
    RerunRunRequest,
    CancelRunRequest,
    RunTriggered,
    RerunTriggered,
    RunList,
    RunDetail,
    RunCancelled,
    TaskDetail,
    RunTasks,
    LogUploadRequest,
    LogUploaded,
    TaskStartedAck,
    HeartbeatAck,
    TaskCompletedAck,
    # The worker's request bodies are the contract's own models (arco_envelope).
    TaskStartedRequest,
    HeartbeatRequest,
    TaskCompletedRequest,
)

_REF = "#/components/schemas/{model}"
UNAVAILABLE = "Not ready, or the database is unreachable: retry after Retry-After seconds"

# --- route declarations ------------------------------------------------------------------------

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    400: "Bad request: malformed JSON, a rule of the request violated, or an invalid id",
    401: "Missing, invalid or expired credentials",
    403: "The credential does not cover this resource (a task token of another attempt)",
    404: "Not found (also a workspace other than the caller's)",
    409: "Conflict with the current state",
    410: "The task is no longer active",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    422: "The request does not match the schema",
    503: UNAVAILABLE,
}


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema}},
    }


def user_responses(
    ok: dict[int, type[BaseModel]], errors: Iterable[int] = (400, 401, 404, 422)
) -> dict[int | str, dict[str, Any]]:
    """Responses of a route behind user authentication: ``ok`` bodies, then error bodies."""
    out: dict[int | str, dict[str, Any]] = {
        status: _json(ref(model), status) for status, model in ok.items()
    }
    out.update({status: _json(ref(ApiErrorBody), status) for status in errors})
    return out


def callback_responses(ack: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: _json(ref(ack), 200)}
    for status in (401, 404, 409, 410, 413, 415, 422):
        out[status] = _json(ref(CallbackErrorBody), status)
    out[400] = _json({"anyOf": [ref(CallbackErrorBody), ref(StorageIdErrorBody)]}, 400)
    return out


def text_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def json_response(model: type[BaseModel], status: int) -> dict[str, Any]:
    return _json(ref(model), status)


def json_body(model: type[BaseModel], *, user: bool = True) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON body itself, and its security."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref(model)}},
        },
        "security": [{USER_SECURITY if user else TASK_SECURITY: []}],
    }


USER_AUTH: dict[str, Any] = {"security": [{USER_SECURITY: []}]}
IDEMPOTENCY_KEY: dict[str, Any] = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string"},
}


def install(app: FastAPI) -> None:
    """Complete the generated document: the documentation-only models, security schemes."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            routes=app.routes,
        )
        # Any route answers 503 (Retry-After) while the database is unreachable.
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault(
                    "503", _json(ref(ApiErrorBody), 503, UNAVAILABLE)
                )
        components: dict[str, Any] = document.setdefault("components", {})
        schemas: dict[str, Any] = components.setdefault("schemas", {})
        for model in _DOC_MODELS:
            schema = model.model_json_schema(by_alias=True, ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        # FastAPI registers its own 422 body for routes with parameters; ours replaces it.
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        components["securitySchemes"] = {
            USER_SECURITY: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            TASK_SECURITY: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "the per-attempt task token of the dispatch envelope",
            },
        }
        app.openapi_schema = document
        return document

    openapi: Callable[[], dict[str, Any]] = build
    app.openapi = openapi  # type: ignore[method-assign]
