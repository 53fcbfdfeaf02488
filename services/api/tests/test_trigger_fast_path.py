"""The trigger's fast path (``FastPath`` on ``POST …/runs``) answers byte for byte as the
routed endpoint: the same requests, sent to an app with the fast path and to one without
it (each on its own database, with the same ids and clock), get the same status, headers
and body, for new runs, run-key replays and every kind of refusal. Plus the route label in
the metrics, the application's error answers, and the requests it leaves to the router."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    EXAMPLE_MANIFEST,
    MANIFESTS,
    RAW,
    RUNS,
    api_settings,
    sqlite_only,
    user_headers,
)
from services.api.tests.test_edge_hardening import request_series

from arco_api.app import create_app
from arco_api.fast_path import FastPath
from arco_orchestration.db import Database
from arco_orchestration.usecases import runs
from arco_testkit.clock import T0
from arco_testkit.values import WORKSPACE

pytestmark = sqlite_only

JSON = {"Content-Type": "application/json"}
# (headers besides a user's token, body) of each request, in order.
REQUESTS: list[tuple[dict[str, str], bytes]] = [
    (JSON, json.dumps({"selection": [RAW]}).encode()),
    (JSON, json.dumps({"selection": [RAW], "runKey": "k-1", "labels": {"a": "b"}}).encode()),
    (JSON, json.dumps({"selection": [RAW], "runKey": "k-1", "labels": {"a": "b"}}).encode()),
    (JSON, json.dumps({"selection": [RAW], "runKey": "k-1"}).encode()),
    ({**JSON, "Idempotency-Key": "h-1"}, json.dumps({"selection": [RAW]}).encode()),
    ({**JSON, "Idempotency-Key": "h-1"}, json.dumps({"selection": [RAW]}).encode()),
    ({**JSON, "Idempotency-Key": "bad\x00key"}, json.dumps({"selection": [RAW]}).encode()),
    (JSON, json.dumps({"selection": ["analytics.nope"]}).encode()),
    (JSON, json.dumps({"selection": ["Bad Key"]}).encode()),
    (JSON, json.dumps({"selection": []}).encode()),
    (JSON, json.dumps({"selection": "x"}).encode()),
    (JSON, json.dumps({"selection": [RAW], "includeUpstream": "yes"}).encode()),
    (JSON, json.dumps([1]).encode()),
    (JSON, b"{not json"),
    (JSON, b""),
    ({"Content-Type": "text/plain"}, b"{}"),
    ({}, json.dumps({"selection": [RAW]}).encode()),
    (JSON, json.dumps({"selection": [RAW], "includeDownstream": True}).encode()),
]


def _without_fast_path(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPath]  # type: ignore[comparison-overlap]
    return app


@pytest.fixture
def pair(database: Database, sqlite_template: Path, tmp_path: Path) -> Iterator[list[TestClient]]:
    """A client of an app with the fast path, and one of an app without it."""
    shutil.copy(sqlite_template, tmp_path / "routed.db")
    routed_db = Database.from_url(f"sqlite:///{tmp_path / 'routed.db'}")
    apps = [
        create_app(api_settings(), database, clock=lambda: T0),
        _without_fast_path(create_app(api_settings(), routed_db, clock=lambda: T0)),
    ]
    with TestClient(apps[0]) as fast, TestClient(apps[1]) as routed:
        yield [fast, routed]
    routed_db.dispose()


def _ids(counter: Iterator[int]) -> Callable[[], tuple[str, str]]:
    return lambda: (f"run-{next(counter):04d}", f"plan-{next(counter):04d}")


def _answer(client: TestClient, path: str, headers: dict[str, str], body: bytes) -> Any:
    response = client.post(path, content=body, headers=headers)
    return response.status_code, sorted(response.headers.items()), response.content


def test_the_fast_path_answers_as_the_routed_endpoint(
    pair: list[TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = user_headers()
    for client in pair:
        deployed = client.post(MANIFESTS, json=EXAMPLE_MANIFEST, headers=token)
        assert deployed.status_code == 201
    answers: list[list[Any]] = [[], []]
    for side, client in enumerate(pair):
        monkeypatch.setattr(runs, "_new_ids", _ids(itertools.count()))
        for index, (headers, body) in enumerate(REQUESTS):
            request_headers = {**token, **headers, "X-Request-Id": f"req-{index}"}
            answers[side].append(_answer(client, RUNS, request_headers, body))
        # Not the caller's workspace, no token, a bad token.
        body = json.dumps({"selection": [RAW]}).encode()
        rid = {"X-Request-Id": "req-x", **JSON}
        answers[side].append(_answer(client, RUNS.replace(WORKSPACE, "other"), token | rid, body))
        answers[side].append(_answer(client, RUNS, rid, body))
        answers[side].append(_answer(client, RUNS, {"Authorization": "Bearer x", **rid}, body))
    statuses = [status for status, _, _ in answers[0]]
    assert {201, 200, 400, 401, 404, 409, 415, 422} <= set(statuses)
    for fast, routed in zip(answers[0], answers[1], strict=True):
        assert fast == routed


def test_triggers_are_counted_under_their_route_template(pair: list[TestClient]) -> None:
    fast = pair[0]
    fast.post(MANIFESTS, json=EXAMPLE_MANIFEST, headers=user_headers())
    assert fast.post(RUNS, json={"selection": [RAW]}, headers=user_headers()).status_code == 201
    series = request_series(fast)
    route = "/api/v1/workspaces/{workspace_id}/runs"
    assert {"method": "POST", "route": route, "status": "201"} in series


def test_other_methods_and_paths_go_to_the_router(pair: list[TestClient]) -> None:
    fast = pair[0]
    headers = user_headers()
    assert fast.get(RUNS, headers=headers).status_code == 200
    assert fast.put(RUNS, json={}, headers=headers).status_code == 405
    assert fast.post(f"{RUNS}/", json={}, headers=headers).status_code == 404
    assert fast.post("/api/v1/workspaces//runs", json={}, headers=headers).status_code == 404


def test_a_bug_in_a_trigger_is_a_500_with_the_request_id(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> runs.Triggered:
        raise RuntimeError("boom")

    monkeypatch.setattr(runs, "trigger_run", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            RUNS, json={"selection": [RAW]}, headers={**user_headers(), "X-Request-Id": "req-7"}
        )
    assert response.status_code == 500
    assert response.json()["requestId"] == "req-7"
