""" "Same request twice" for every idempotent endpoint (issue 3): the second call answers as
the first (or with the documented replay/conflict code) and changes nothing."""

from __future__ import annotations

import json

import pytest
from services.api.tests.api_test_support import (
    EXAMPLE_MANIFEST,
    MANIFESTS,
    RAW,
    RUNS,
    Api,
    Attempt,
    user_headers,
)


def test_manifest_deploy_twice_with_idempotency_key(api: Api) -> None:
    """arco-manifest 2.6: 201 then 200 with the same body; one manifest stored."""
    headers = {**user_headers(), "Content-Type": "application/json", "Idempotency-Key": "d-1"}
    body = json.dumps(EXAMPLE_MANIFEST)
    first = api.client.post(MANIFESTS, content=body, headers=headers)
    second = api.client.post(MANIFESTS, content=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    listed = api.get(MANIFESTS).json()["manifests"]
    assert [m["manifestId"] for m in listed].count(first.json()["manifestId"]) == 1
    assert len(listed) == 2  # the fixture's deploy and this one


@pytest.mark.parametrize(
    ("key", "keyed"),
    [("a\tb c", True), ("tab\tinside", True), ("caf\u00e9", False)],
    ids=["tab-and-space", "tab", "non-ascii"],
)
def test_manifest_idempotency_key_is_read_as_upstream_reads_it(
    api: Api, key: str, keyed: bool
) -> None:
    """arco-manifest 2.6: a key of visible ASCII, tab and space included (the http crate's
    ``to_str``), replays; any other byte makes the header count as absent (a new manifest)."""
    headers: dict[str, str | bytes] = {
        **user_headers(),
        "Content-Type": "application/json",
        "Idempotency-Key": key.encode("utf-8"),
    }
    body = json.dumps(EXAMPLE_MANIFEST)
    first = api.client.post(MANIFESTS, content=body, headers=headers)
    second = api.client.post(MANIFESTS, content=body, headers=headers)
    assert first.status_code == 201, first.text
    if keyed:
        assert second.status_code == 200
        assert second.json() == first.json()
    else:
        assert second.status_code == 201
        assert second.json()["manifestId"] != first.json()["manifestId"]


def test_manifest_deploy_twice_without_key_creates_two(api: Api) -> None:
    """arco-manifest 2.6: without a key every deploy is new (the SDK's default)."""
    headers = {**user_headers(), "Content-Type": "application/json"}
    ids = {
        api.client.post(MANIFESTS, content=json.dumps(EXAMPLE_MANIFEST), headers=headers).json()[
            "manifestId"
        ]
        for _ in range(2)
    }
    assert len(ids) == 2


def test_trigger_twice_with_run_key(api: Api) -> None:
    """Orchestration 2.1: 201 then 200 `created: false`, same run; one run exists."""
    first = api.trigger({"selection": [RAW], "runKey": "twice"})
    second = api.trigger({"selection": [RAW], "runKey": "twice"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert {k: v for k, v in second.json().items() if k not in ("created", "state")} == {
        k: v for k, v in first.json().items() if k not in ("created", "state")
    }
    assert len(api.get(RUNS).json()["runs"]) == 1


def test_trigger_twice_with_idempotency_key_header(api: Api) -> None:
    first = api.trigger({"selection": [RAW]}, {"Idempotency-Key": "hdr"})
    second = api.trigger({"selection": [RAW]}, {"Idempotency-Key": "hdr"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["runId"] == first.json()["runId"]
    assert len(api.get(RUNS).json()["runs"]) == 1


def test_trigger_twice_without_key_creates_two_runs(api: Api) -> None:
    assert api.run() != api.run()


def test_cancel_twice(api: Api, running: Attempt) -> None:
    """Orchestration 2.6: the second cancel is 200 with the same answer and writes nothing."""
    first = api.cancel(running.run_id, reason="stop")
    before = api.snapshot(running.run_id)
    second = api.cancel(running.run_id, reason="again")
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == first.json()
    assert api.snapshot(running.run_id) == before


def test_started_twice(api: Api) -> None:
    """arco-contract 5.5: a repeated /started for the RUNNING attempt is 200 and a no-op (one
    `started` event, the row untouched)."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    before = api.snapshot(attempt.run_id)
    assert api.started(attempt).status_code == 200
    assert api.snapshot(attempt.run_id) == before
    assert before["events"].count("started") == 1


def test_completed_twice(api: Api, running: Attempt) -> None:
    """Orchestration 5.6: the second /completed of a finished attempt is 409
    `task_already_terminal`; the completion applied once (one event, counters once)."""
    assert api.completed(running).status_code == 200
    before = api.snapshot(running.run_id)
    again = api.completed(running)
    assert again.status_code == 409
    assert again.json()["error"] == "task_already_terminal"
    assert api.snapshot(running.run_id) == before
    assert before["events"].count("completed") == 1
    assert (before["run"]["tasks_completed"], before["run"]["tasks_succeeded"]) == (1, 1)


def test_completed_failed_twice_in_retry_wait(api: Api, running: Attempt) -> None:
    """Orchestration 5.6: a repeated retryable FAILED is 200 both times and applied once."""
    api.fail(running)
    before = api.snapshot(running.run_id)
    api.fail(running)
    assert api.snapshot(running.run_id) == before
    assert before["events"].count("completed") == 1


def test_heartbeat_twice(api: Api, running: Attempt) -> None:
    """Heartbeats repeat freely: both 200, no events, only `lastHeartbeatAt` moves."""
    assert api.heartbeat(running).status_code == 200
    assert api.heartbeat(running).status_code == 200
    assert api.snapshot(running.run_id)["events"] == ["dispatch_requested", "started"]


def test_logs_upload_twice(api: Api, running: Attempt) -> None:
    """Orchestration 2.5: logs are create-only: 201 then 409, the first content kept."""
    path = f"{RUNS}/{running.run_id}/logs"
    first = api.client.post(
        path, json={"taskKey": RAW, "attempt": 1, "stdout": "one"}, headers=user_headers()
    )
    second = api.client.post(
        path, json={"taskKey": RAW, "attempt": 1, "stdout": "two"}, headers=user_headers()
    )
    assert (first.status_code, second.status_code) == (201, 409)
    text = api.get(path).text
    assert "one" in text
    assert "two" not in text


def test_rerun_twice(api: Api, running: Attempt) -> None:
    """Orchestration 2.5: a rerun without runKey gets a deterministic key: 201 then 200."""
    path = f"{RUNS}/{running.run_id}/rerun"
    body = {"mode": "subset", "selection": [RAW]}
    first = api.client.post(path, json=body, headers=user_headers())
    second = api.client.post(path, json=body, headers=user_headers())
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["runId"] == first.json()["runId"]
