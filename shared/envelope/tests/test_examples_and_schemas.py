"""The golden examples and the committed JSON Schemas (``shared/envelope/examples`` and
``shared/envelope/schemas``), the schema CLI, and the package's import footprint."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from arco_envelope import (
    CallbackErrorPayload,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCompletedRequest,
    TaskCompletedResponse,
    TaskStartedRequest,
    TaskStartedResponse,
    WorkerDispatchEnvelope,
)
from arco_envelope.__main__ import main
from arco_envelope.schemas import render_schemas
from arco_envelope.wire import WireModel

PACKAGE_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = PACKAGE_DIR / "examples"
SCHEMAS = PACKAGE_DIR / "schemas"

LEGACY_EXAMPLE = "dispatch-envelope-legacy.json"


def _model_for(name: str) -> type[WireModel]:
    """The model an example file holds, from its file name."""
    if name.startswith("dispatch-envelope"):
        return WorkerDispatchEnvelope
    if name.startswith("heartbeat-response"):
        return HeartbeatResponse
    by_name: dict[str, type[WireModel]] = {
        "task-started-request.json": TaskStartedRequest,
        "task-started-response.json": TaskStartedResponse,
        "heartbeat-request.json": HeartbeatRequest,
        "task-completed-success.json": TaskCompletedRequest,
        "task-completed-failure.json": TaskCompletedRequest,
        "task-completed-response.json": TaskCompletedResponse,
        "callback-error.json": CallbackErrorPayload,
    }
    return by_name[name]


EXAMPLE_NAMES = sorted(p.name for p in EXAMPLES.glob("*.json"))
CANONICAL_EXAMPLE_NAMES = [name for name in EXAMPLE_NAMES if name != LEGACY_EXAMPLE]


def _text(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8")


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def _validator(model: type[WireModel]) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{model.__name__}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


# ---------------------------------------------------------------------------------------------
# Examples


def test_every_example_file_is_known() -> None:
    assert set(EXAMPLE_NAMES) == {
        "callback-error.json",
        "dispatch-envelope-legacy.json",
        "dispatch-envelope.json",
        "heartbeat-request.json",
        "heartbeat-response-token-refresh.json",
        "heartbeat-response.json",
        "task-completed-failure.json",
        "task-completed-response.json",
        "task-completed-success.json",
        "task-started-request.json",
        "task-started-response.json",
    }
    assert sorted(p.name for p in EXAMPLES.iterdir()) == EXAMPLE_NAMES


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_parses(name: str) -> None:
    model = _model_for(name)
    parsed = model.from_json(_text(name))
    assert isinstance(parsed, model)
    assert parsed == model.from_json(_text(name).encode())


@pytest.mark.parametrize("name", CANONICAL_EXAMPLE_NAMES)
def test_canonical_example_round_trips_byte_for_byte(name: str) -> None:
    text = _text(name)
    assert _model_for(name).from_json(text).to_json() == _compact(text)


def test_callback_request_fixtures_roundtrip() -> None:
    """Upstream: contract_roundtrip.rs::callback_request_fixtures_roundtrip."""
    for name in (
        "task-started-request.json",
        "heartbeat-request.json",
        "heartbeat-response.json",
        "task-completed-success.json",
        "callback-error.json",
    ):
        text = _text(name)
        model = _model_for(name)
        parsed = model.from_json(text)
        assert json.loads(parsed.to_json()) == json.loads(text), name
        assert model.from_json(parsed.to_json()) == parsed, name


def test_legacy_example_reserialises_canonically() -> None:
    envelope = WorkerDispatchEnvelope.from_json(_text(LEGACY_EXAMPLE))
    canonical = json.loads(_text("dispatch-envelope.json"))
    expected = {
        k: v
        for k, v in canonical.items()
        if k not in ("partitionKey", "heartbeatTimeoutSec", "traceparent")
    } | {"taskId": "analytics.daily_sales"}
    assert json.loads(envelope.to_json()) == expected
    assert not any("_" in key for key in json.loads(envelope.to_json()))


# ---------------------------------------------------------------------------------------------
# Committed schemas


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_validates_against_its_committed_schema(name: str) -> None:
    validator = _validator(_model_for(name))
    errors = [e.message for e in validator.iter_errors(json.loads(_text(name)))]
    assert errors == []


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_committed_schemas_are_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_committed_schemas_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.iterdir() if p.is_file()}
    hint = "the committed JSON Schemas drifted from the models: run `make schemas` and commit"
    assert sorted(rendered) == sorted(on_disk), hint
    stale = sorted(name for name in rendered if rendered[name] != on_disk[name])
    assert stale == [], f"{hint} (stale: {', '.join(stale)})"


def test_schema_cli_writes_the_committed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "schemas"
    assert main(["schema", str(target)]) == 0
    written = {p.name: p.read_text(encoding="utf-8") for p in target.iterdir()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.iterdir()}
    assert written == render_schemas()
    assert written == committed
    printed = capsys.readouterr().out.splitlines()
    assert sorted(Path(line).name for line in printed) == sorted(committed)


def test_schema_cli_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2
    assert "schema" in capsys.readouterr().err


def test_envelope_schema_rejects_both_spellings_of_one_field() -> None:
    validator = _validator(WorkerDispatchEnvelope)
    document = json.loads(_text("dispatch-envelope.json")) | {"tenant_id": "tenant-a"}
    assert not validator.is_valid(document)
    legacy = json.loads(_text(LEGACY_EXAMPLE)) | {"workspaceId": "workspace-b"}
    assert not validator.is_valid(legacy)


def test_envelope_schema_rejects_a_missing_required_field() -> None:
    validator = _validator(WorkerDispatchEnvelope)
    document = json.loads(_text("dispatch-envelope.json"))
    del document["callbackBaseUrl"]
    assert not validator.is_valid(document)
    legacy = json.loads(_text(LEGACY_EXAMPLE))
    del legacy["callback_base_url"]
    assert not validator.is_valid(legacy)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"taskId": None}, id="taskId-null"),
        pytest.param({"executionLocationId": None, "partitionKey": None}, id="optional-nulls"),
        pytest.param({"taskId": ""}, id="taskId-empty"),
        pytest.param({"payload": None}, id="payload-null"),
    ],
)
def test_envelope_schema_accepts_what_the_model_accepts(change: dict[str, Any]) -> None:
    """The schema describes what a reader accepts; section 2.1 makes ``taskId`` "string or
    null" (null means "use taskKey"), and the model reads it, so the schema must too."""
    document = json.loads(_text("dispatch-envelope.json")) | change
    WorkerDispatchEnvelope.from_dict(document)
    errors = [e.message for e in _validator(WorkerDispatchEnvelope).iter_errors(document)]
    assert errors == []


def test_legacy_envelope_schema_accepts_null_task_id() -> None:
    """Same as above, for the legacy spelling ``task_id``."""
    document = json.loads(_text(LEGACY_EXAMPLE)) | {"task_id": None}
    WorkerDispatchEnvelope.from_dict(document)
    errors = [e.message for e in _validator(WorkerDispatchEnvelope).iter_errors(document)]
    assert errors == []


def test_worker_callback_endpoints_use_contract_schemas() -> None:
    """Upstream: openapi_orchestration_routes.rs::worker_callback_endpoints_use_contract_schemas
    (the schema half; the routes are the API's)."""
    schemas = {name: json.loads(text) for name, text in render_schemas().items()}
    for model in (TaskStartedRequest, HeartbeatRequest, TaskCompletedRequest):
        schema = schemas[f"{model.__name__}.schema.json"]
        assert "workerId" in schema["properties"]
        assert schema["properties"]["attempt"]["minimum"] == 1
        assert {"attempt", "attemptId", "workerId"} <= set(schema["required"])
    progress = schemas["HeartbeatRequest.schema.json"]["properties"]["progressPct"]
    assert {"type": "integer", "minimum": 0, "maximum": 100} in progress["anyOf"]
    assert "outcome" in schemas["TaskCompletedRequest.schema.json"]["required"]
    assert "expectedAttemptId" in schemas["CallbackErrorPayload.schema.json"]["properties"]


def test_callback_schemas_reject_out_of_contract_values() -> None:
    heartbeat = _validator(HeartbeatRequest)
    base = json.loads(_text("heartbeat-request.json"))
    assert heartbeat.is_valid(base)
    assert not heartbeat.is_valid(base | {"progressPct": 101})
    assert not heartbeat.is_valid(base | {"progressPct": 50.5})
    assert not heartbeat.is_valid({k: v for k, v in base.items() if k != "attemptId"})
    completed = _validator(TaskCompletedRequest)
    success = json.loads(_text("task-completed-success.json"))
    assert completed.is_valid(success)
    assert not completed.is_valid(success | {"outcome": "succeeded"})


# ---------------------------------------------------------------------------------------------
# Import footprint


FORBIDDEN_MODULES = {
    "fastapi",
    "sqlalchemy",
    "httpx",
    "starlette",
    "arco_orchestration",
    "arco_api",
    "arco_worker",
    "arco_dispatcher",
    "arco_sweeper",
}


def test_package_imports_no_service_library_and_nothing_of_ours() -> None:
    code = (
        "import sys, arco_envelope, arco_envelope.tokens, arco_envelope.schemas, "
        "arco_envelope.__main__; print(sorted(sys.modules))"
    )
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    modules: list[str] = ast.literal_eval(result.stdout.strip())
    top_level = {name.split(".")[0] for name in modules}
    assert "arco_envelope" in top_level
    assert FORBIDDEN_MODULES.isdisjoint(top_level), sorted(FORBIDDEN_MODULES & top_level)
    ours = sorted(name for name in top_level if name.startswith("arco") and name != "arco_envelope")
    assert ours == []
