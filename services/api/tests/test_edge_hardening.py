"""The API's edge against hostile clients (issue 15 findings 1, 2, 6 and 8): metric labels
from a closed set, rendered off the event loop; one nesting limit for every JSON body; plain
request ids only; a client that hangs up is not a server error."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from services.api.tests.api_test_support import (
    MANIFESTS,
    RUNS,
    Api,
    Attempt,
    api_settings,
    bearer,
    error_of,
    manifest_of,
    sqlite_only,
    user_headers,
)
from structlog.testing import capture_logs

from arco_api.app import create_app
from arco_api.context import api_context
from arco_api.http_io import MAX_JSON_DEPTH
from arco_orchestration.db import Database
from arco_testkit.values import WORKSPACE

pytestmark = sqlite_only

DEEP = 500


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def request_series(client: TestClient) -> list[dict[str, str]]:
    """The label sets of the API's request histogram."""
    text = client.get("/metrics").text
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "arco_api_request_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    ]


# --- finding 1: metric labels and rendering -------------------------------------------------


def test_unknown_methods_and_raw_paths_do_not_grow_the_metrics(client: TestClient) -> None:
    """3,000 made-up methods once took /metrics from 17 KB to 5 MB. Now every non-standard
    method is one ``OTHER`` label, a path is labelled by its route template and an unmatched
    path by ``unmatched``."""
    for index in range(300):
        client.request(f"X{index}", "/health")
        client.get(f"{RUNS}/run-{index}", headers=user_headers())
        client.get(f"/no-such-path-{index}")
    series = request_series(client)
    assert {labels["method"] for labels in series} <= {"GET", "OTHER"}
    routes = {labels["route"] for labels in series}
    assert routes <= {
        "/health",
        "/metrics",
        "unmatched",
        "/api/v1/workspaces/{workspace_id}/runs/{run_id}",
    }
    assert len(series) < 10
    assert len(client.get("/metrics").content) < 20_000


class LoopProbe:
    """A collector that records whether it is collected on a thread running an event loop."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def collect(self) -> Iterable[Metric]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        yield GaugeMetricFamily("probe", "collected off the event loop", value=1)


def test_metrics_are_rendered_off_the_event_loop(app: FastAPI) -> None:
    probe = LoopProbe()
    api_context_of(app).metrics.registry.register(probe)
    with TestClient(app) as client:
        assert "probe 1.0" in client.get("/metrics").text
    assert probe.on_loop == [False]


def api_context_of(app: FastAPI) -> Any:
    class _Request:
        def __init__(self, app: FastAPI) -> None:
            self.app = app

    return api_context(_Request(app))  # type: ignore[arg-type]


# --- finding 2: one nesting limit for every JSON body ---------------------------------------


def test_a_deep_manifest_is_400_not_a_recursion_error(client: TestClient) -> None:
    """A 1.3 KB manifest whose ``tags`` nest 500 deep was a 500 with a 179 KB traceback."""
    manifest = json.dumps(manifest_of({"analytics.raw_orders": []}))
    body = manifest.replace('"dependencies": []', f'"dependencies": [], "tags": {nested(DEEP)}')
    assert nested(DEEP) in body
    with capture_logs() as logs:
        response = client.post(
            MANIFESTS,
            content=body,
            headers={**user_headers(), "Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "BAD_REQUEST"
    assert f"nest deeper than {MAX_JSON_DEPTH} levels" in response.json()["message"]
    assert not [line for line in logs if line["event"] == "server_error"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200, 990])
def test_a_deep_callback_body_is_400_invalid_json(api: Api, running: Attempt, depth: int) -> None:
    """Bodies nested 200-990 deep got 422 from the schema parser; they are not usable JSON."""
    body = json.dumps(running.body(outcome="SUCCEEDED"))
    deep = body[:-1] + f', "partialProgress": {nested(depth)}}}'
    before = api.snapshot(running.run_id)
    response = api.client.post(
        f"/api/v1/tasks/{running.task_id}/completed",
        content=deep,
        headers={**bearer(running.token()), "Content-Type": "application/json"},
    )
    status, code, message = error_of(response)
    assert (status, code) == (400, "invalid_json")
    assert f"nest deeper than {MAX_JSON_DEPTH} levels" in message
    assert api.snapshot(running.run_id) == before


def test_a_body_at_the_limit_is_accepted(api: Api, running: Attempt) -> None:
    """The limit counts the body's own object: 64 levels in all is fine."""
    body = json.dumps(running.body(outcome="SUCCEEDED"))
    at_limit = body[:-1] + f', "partialProgress": {nested(MAX_JSON_DEPTH - 1)}}}'
    response = api.client.post(
        f"/api/v1/tasks/{running.task_id}/completed",
        content=at_limit,
        headers={**bearer(running.token()), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_brackets_inside_strings_do_not_count(api: Api, running: Attempt) -> None:
    body = running.body(outcome="SUCCEEDED", partialProgress={"text": "[{" * 500 + '"\\'})
    response = api.completed(running, extra={"partialProgress": body["partialProgress"]})
    assert response.status_code == 200, response.text


def test_deep_trigger_and_log_bodies_are_400(api: Api, client: TestClient) -> None:
    run_id = api.run()
    headers = {**user_headers(), "Content-Type": "application/json"}
    trigger = client.post(RUNS, content=f'{{"selection": {nested(DEEP)}}}', headers=headers)
    logs = client.post(
        f"{RUNS}/{run_id}/logs", content=f'{{"taskKey": {nested(DEEP)}}}', headers=headers
    )
    for response in (trigger, logs):
        assert response.status_code == 400, response.text
        assert f"nest deeper than {MAX_JSON_DEPTH} levels" in response.json()["message"]


# --- finding 8: X-Request-Id ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["req-1", "a" * 128, "trace.id:42_x-y", "01J0ABCDEFGHJKMNPQRSTVWXYZ"],
)
def test_a_plain_request_id_is_echoed(client: TestClient, given: str) -> None:
    assert client.get("/health", headers={"X-Request-Id": given}).headers["x-request-id"] == given


@pytest.mark.parametrize(
    "given",
    ["a" * 129, "x" * 5000, "has space", "semi;colon", "new\tline", "caf\u00e9", "<script>"],
)
def test_any_other_request_id_is_replaced_with_a_fresh_one(client: TestClient, given: str) -> None:
    raw = given.encode("utf-8")
    response = client.get("/health", headers={"X-Request-Id": raw})
    echoed = response.headers["x-request-id"]
    assert echoed != given
    assert len(echoed) == 26  # a ULID
    headers: Any = {**user_headers(), "X-Request-Id": raw}
    error = client.get(f"{RUNS}/nope", headers=headers)
    assert error.json()["requestId"] == error.headers["x-request-id"] != given


# --- finding 6: a client that hangs up ------------------------------------------------------


class Server:
    """The API served by uvicorn on an ephemeral loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def hang_up_mid_body(self, path: str, token: str) -> None:
        """Send headers announcing 1,000 bytes, then 10 bytes, then close the connection."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as connection:
            connection.sendall(
                (
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    "Content-Length: 1000\r\n\r\n"
                ).encode()
                + b'{"attempt"'
            )
            time.sleep(0.2)  # let the app start reading the body


@pytest.fixture
def served(database: Database) -> Iterator[Server]:
    with Server(create_app(api_settings(), database)) as server:
        yield server


def test_a_client_hanging_up_mid_body_is_info_and_never_a_5xx(
    served: Server, api: Api, running: Attempt
) -> None:
    """Callback and user routes: the disconnect is an info line and a 499 in the metrics, not a
    ``server_error`` line and a 500."""
    user_token = user_headers()["Authorization"].removeprefix("Bearer ")
    with capture_logs() as logs:
        served.hang_up_mid_body(f"/api/v1/tasks/{running.task_id}/completed", running.token())
        served.hang_up_mid_body(f"/api/v1/workspaces/{WORKSPACE}/runs", user_token)
        base = f"http://127.0.0.1:{served.port}"
        deadline = time.monotonic() + 10
        while True:
            text = httpx.get(f"{base}/metrics", timeout=5).text
            series = [
                sample.labels
                for family in text_string_to_metric_families(text)
                if family.name == "arco_api_request_seconds"
                for sample in family.samples
                if sample.name.endswith("_count") and sample.labels["status"] == "499"
            ]
            if len(series) == 2:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
    assert {labels["route"] for labels in series} == {
        "/api/v1/tasks/{task_id}/completed",
        "/api/v1/workspaces/{workspace_id}/runs",
    }
    assert 'status="5' not in text
    gone = [line for line in logs if line["event"] == "client_disconnected"]
    assert [line["log_level"] for line in gone] == ["info", "info"]
    assert not [line for line in logs if line["event"] == "server_error"]
    assert api.snapshot(running.run_id)["task"]["state"] == "RUNNING"
