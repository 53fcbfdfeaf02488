"""The response models serialise the use cases' bodies byte for byte: the same keys in the same
order, ``null`` where the use case set it, absent where it left a key out, and worker-provided
JSON (floats, nested nulls, unicode) exactly as the plain JSON encoder writes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from services.api.tests.api_test_support import (
    MANIFESTS,
    RAW,
    RUNS,
    Api,
    manifest_of,
    user_headers,
)

from arco_orchestration.db import Database
from arco_orchestration.scope import Scope
from arco_orchestration.usecases import manifests, reads


def _wire(body: Any) -> bytes:
    """What the routes sent before they had response models: the dict, JSON-encoded."""
    return bytes(JSONResponse(body).body)


def test_run_and_task_views_are_the_use_case_bodies(api: Api, database: Database) -> None:
    scope = api.scope
    run_id = api.run()
    attempt = api.dispatch(run_id)
    assert api.started(attempt).status_code == 200
    extra = {
        "output": {"rows": 1.5e-07, "big": 1e20, "none": None, "name": "données"},
        "metrics": {"seconds": 0.1, "nested": {"list": [1, 2.0, None]}},
    }
    assert api.completed(attempt, extra=extra).status_code == 200
    second = api.run(labels={"team": "ünïcode"})
    views: list[tuple[str, Callable[[], Any]]] = [
        (f"{RUNS}/{run_id}", lambda: reads.run_detail(database, scope, run_id)),
        (f"{RUNS}/{second}", lambda: reads.run_detail(database, scope, second)),
        (f"{RUNS}/{run_id}/tasks", lambda: reads.run_tasks(database, scope, run_id)),
        (
            f"{RUNS}/{run_id}/tasks/{RAW}",
            lambda: reads.task_detail(database, scope, run_id, RAW),
        ),
        (
            RUNS,
            lambda: reads.list_runs(database, scope, limit=20, cursor=None, state=None),
        ),
    ]
    for path, expected in views:
        response = api.get(path)
        assert response.status_code == 200, response.text
        assert response.content == _wire(expected()), path
    page = api.get(RUNS, limit=1)
    assert b'"nextCursor"' in page.content
    assert page.content == _wire(reads.list_runs(database, scope, limit=1, cursor=None, state=None))


def test_manifest_views_are_the_use_case_bodies(api: Api, database: Database) -> None:
    scope: Scope = api.scope
    metadata = {"owner": None, "z": [1.25, {"b": 1, "a": 2}], "a": "é"}
    document = {**manifest_of({"demo.a": [], "demo.b": ["demo.a"]}), "metadata": metadata}
    deployed = api.client.post(
        MANIFESTS, json=document, headers={**user_headers(), "Content-Type": "application/json"}
    )
    assert deployed.status_code == 201, deployed.text
    manifest_id = deployed.json()["manifestId"]
    one = api.get(f"{MANIFESTS}/{manifest_id}")
    assert one.content == _wire(manifests.get_manifest(database, scope, manifest_id))
    assert b'"owner":null' in one.content
    listed = api.get(MANIFESTS)
    assert listed.content == _wire(manifests.list_manifests(database, scope))
    assert b'"gitBranch":null' in listed.content


def test_manifest_metadata_of_any_json_kind_is_answered(api: Api, database: Database) -> None:
    """``metadata`` is free-form JSON (upstream's ``serde_json::Value``): a list or a string is
    stored and answered as sent, and documented as any JSON value."""
    for metadata in ([1, "x", None], "just text", 3):
        document = {**manifest_of({"demo.a": []}), "metadata": metadata}
        deployed = api.client.post(
            MANIFESTS, json=document, headers={**user_headers(), "Content-Type": "application/json"}
        )
        assert deployed.status_code == 201, deployed.text
        one = api.get(f"{MANIFESTS}/{deployed.json()['manifestId']}")
        assert one.status_code == 200, one.text
        assert one.json()["metadata"] == metadata
