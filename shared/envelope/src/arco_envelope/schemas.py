"""JSON Schemas of the wire models, as committed under ``shared/envelope/schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from arco_envelope.callbacks import (
    CallbackErrorPayload,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCompletedRequest,
    TaskCompletedResponse,
    TaskStartedRequest,
    TaskStartedResponse,
)
from arco_envelope.envelope import WorkerDispatchEnvelope

SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    WorkerDispatchEnvelope,
    TaskStartedRequest,
    TaskStartedResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCompletedRequest,
    TaskCompletedResponse,
    CallbackErrorPayload,
)


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) describing what a reader of ``model`` accepts."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render_schemas() -> dict[str, str]:
    """File name -> file text for every schema."""
    return {
        f"{model.__name__}.schema.json": json.dumps(schema_for(model), indent=2, sort_keys=True)
        + "\n"
        for model in SCHEMA_MODELS
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
