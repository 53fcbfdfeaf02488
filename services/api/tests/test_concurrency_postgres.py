"""Real concurrency on PostgreSQL (issue 3): many concurrent callbacks for one attempt, sent
over real HTTP to a uvicorn server, apply exactly once."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    RAW,
    RUNS,
    Api,
    Attempt,
    api_settings,
    bearer,
    user_headers,
)

from arco_api.app import create_app
from arco_orchestration.db import Database

CALLERS = 16

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


class Server:
    """The API served by uvicorn on an ephemeral loopback port, in a thread."""

    def __init__(self, database: Database) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            create_app(api_settings(), database),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            self.thread.join(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(database: Database) -> Iterator[Server]:
    with Server(database) as server:
        yield server


def together(count: int, call: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """Run ``call`` from ``count`` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(index: int) -> httpx.Response:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def post(server: Server, attempt: Attempt, phase: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        return http.post(
            f"/api/v1/tasks/{attempt.task_id}/{phase}", json=body, headers=bearer(attempt.token())
        )


def test_concurrent_started_apply_once(api: Api, served: Server) -> None:
    """Concurrent /started for one DISPATCHED attempt: every caller gets 200, one `started`
    event is written, the task is RUNNING once."""
    attempt = api.dispatch(api.run())
    responses = together(CALLERS, lambda _: post(served, attempt, "started", attempt.body()))
    assert Counter(r.status_code for r in responses) == {200: CALLERS}
    snapshot = api.snapshot(attempt.run_id)
    assert snapshot["events"] == ["dispatch_requested", "started"]
    assert snapshot["task"]["state"] == "RUNNING"


def test_concurrent_completed_apply_once(api: Api, served: Server) -> None:
    """Concurrent /completed (mixed outcomes) for one attempt: exactly one 200, the others 409
    `task_already_terminal`; one `completed` event, counters incremented once and matching
    the winning outcome."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    outcomes = ["SUCCEEDED", "FAILED"]

    def complete(index: int) -> httpx.Response:
        outcome = outcomes[index % 2]
        body = attempt.body(outcome=outcome)
        if outcome == "FAILED":
            body["error"] = {"category": "DATA_QUALITY", "message": "x"}
        return post(served, attempt, "completed", body)

    responses = together(CALLERS, complete)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: CALLERS - 1}
    winner = next(r for r in responses if r.status_code == 200).json()["finalState"]
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {
        "task_already_terminal"
    }
    snapshot = api.snapshot(attempt.run_id)
    assert snapshot["events"].count("completed") == 1
    assert snapshot["task"]["state"] == winner
    run = snapshot["run"]
    assert (run["tasks_completed"], run["tasks_succeeded"], run["tasks_failed"]) == (
        1,
        int(winner == "SUCCEEDED"),
        int(winner == "FAILED"),
    )
    assert run["state"] == winner


def test_concurrent_retryable_failures_apply_once(api: Api, served: Server) -> None:
    """Concurrent retryable FAILED for one attempt: all 200 (RETRY_WAIT accepts the same
    attempt) but one completion event and no run counter change."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    body = attempt.body(outcome="FAILED", error={"category": "USER_CODE", "message": "x"})
    responses = together(CALLERS, lambda _: post(served, attempt, "completed", body))
    assert Counter(r.status_code for r in responses) == {200: CALLERS}
    snapshot = api.snapshot(attempt.run_id)
    assert snapshot["events"].count("completed") == 1
    assert snapshot["task"]["state"] == "RETRY_WAIT"
    assert snapshot["run"]["tasks_completed"] == 0


def test_concurrent_mixed_callbacks(api: Api, served: Server) -> None:
    """Started, heartbeats and completed racing for one attempt end in one consistent state:
    one `started` at most, one `completed`, task SUCCEEDED, run SUCCEEDED."""
    attempt = api.dispatch(api.run())
    phases = ["started", "heartbeat", "completed"]

    def call(index: int) -> httpx.Response:
        phase = phases[index % 3]
        extra = {"outcome": "SUCCEEDED"} if phase == "completed" else {}
        return post(served, attempt, phase, attempt.body(**extra))

    responses = together(CALLERS, call)
    assert all(r.status_code in (200, 409, 410) for r in responses)
    snapshot = api.snapshot(attempt.run_id)
    assert snapshot["events"].count("completed") == 1
    assert snapshot["events"].count("started") <= 1
    assert (snapshot["task"]["state"], snapshot["run"]["state"]) == ("SUCCEEDED", "SUCCEEDED")
    assert snapshot["run"]["tasks_completed"] == 1


def test_concurrent_triggers_with_one_run_key(api: Api, served: Server) -> None:
    """Concurrent triggers with one run key create one run: one 201, the rest 200 replays of
    it."""

    def trigger(_: int) -> httpx.Response:
        with httpx.Client(base_url=served.base_url, timeout=30) as http:
            return http.post(
                RUNS, json={"selection": [RAW], "runKey": "race"}, headers=user_headers()
            )

    responses = together(CALLERS, trigger)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: CALLERS - 1}
    assert len({r.json()["runId"] for r in responses}) == 1
    assert len(api.get(RUNS).json()["runs"]) == 1


def test_the_suite_client_and_the_server_share_the_database(
    api: Api, served: Server, client: TestClient
) -> None:
    """Sanity: what the server writes the in-process client reads."""
    with httpx.Client(base_url=served.base_url) as http:
        response = http.post(RUNS, json={"selection": [RAW]}, headers=user_headers())
    assert response.status_code == 201
    assert (
        client.get(f"{RUNS}/{response.json()['runId']}", headers=user_headers()).status_code == 200
    )
