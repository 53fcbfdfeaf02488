"""The sample handlers served with ``ARCO_WORKER_SAMPLE_TASKS=true``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    RunningWorker,
    Scripted,
    make_envelope,
    make_settings,
    now,
    running_worker,
    stamp,
)

from arco_worker.serving import build_worker


@pytest.fixture(scope="module")
def samples_worker(fake_api_server: FakeCallbackApi) -> Iterator[RunningWorker]:
    settings = make_settings(fake_api_server.base_url, ARCO_WORKER_SAMPLE_TASKS="true")
    worker = build_worker(settings)
    assert set(worker.tasks) == {"demo.sleep", "demo.fail", "demo.flaky", "demo.long"}
    with running_worker(worker, fake_api_server) as running:
        yield running


def _run(
    running: RunningWorker, api: FakeCallbackApi, task_key: str, **envelope: Any
) -> dict[str, Any]:
    sent = make_envelope(api.base_url, task_key, **envelope)
    assert running.dispatch(sent).status_code == 202
    running.wait_idle()
    (completed,) = api.requests("completed", sent["taskId"])
    return completed.body


def test_demo_sleep_reports_progress_and_succeeds(
    samples_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    body = _run(samples_worker, api, "demo.sleep", payload={"seconds": 0.3})
    assert body["outcome"] == "SUCCEEDED"
    progress = [int(r.body.get("progressPct", 0)) for r in api.requests("heartbeat")]
    assert progress
    assert progress == sorted(progress)


def test_demo_fail_always_fails_as_user_code(
    samples_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    for attempt in (1, 2):
        error = _run(samples_worker, api, "demo.fail", attempt=attempt)["error"]
        assert error["category"] == "USER_CODE"
        assert error["retryable"] is False


def test_demo_flaky_fails_attempt_one_then_succeeds(
    samples_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    first = _run(samples_worker, api, "demo.flaky", attempt=1)
    assert first["outcome"] == "FAILED"
    assert first["error"]["category"] == "INFRASTRUCTURE"
    assert first["error"]["retryable"] is True
    assert _run(samples_worker, api, "demo.flaky", attempt=2)["outcome"] == "SUCCEEDED"


def test_demo_long_runs_for_payload_seconds(
    samples_worker: RunningWorker, api: FakeCallbackApi
) -> None:
    assert _run(samples_worker, api, "demo.long", payload={"seconds": 0.05})["outcome"] == (
        "SUCCEEDED"
    )


@pytest.mark.parametrize("task_key", ["demo.long", "demo.sleep"])
def test_demo_long_and_sleep_stop_when_cancelled(
    samples_worker: RunningWorker, api: FakeCallbackApi, task_key: str
) -> None:
    api.set_default(
        "heartbeat",
        Scripted(body={"acknowledged": True, "shouldCancel": True, "serverTime": stamp(now())}),
    )
    body = _run(samples_worker, api, task_key, payload={"seconds": 30})
    assert body["outcome"] == "CANCELLED"
    assert body["cancelledDuringPhase"] in {"working", "sleeping"}


@pytest.mark.parametrize("seconds", ["ten", -1, True])
def test_bad_payload_fails_as_configuration(
    samples_worker: RunningWorker, api: FakeCallbackApi, seconds: object
) -> None:
    error = _run(samples_worker, api, "demo.sleep", payload={"seconds": seconds})["error"]
    assert error["category"] == "CONFIGURATION"
    assert error["retryable"] is False
