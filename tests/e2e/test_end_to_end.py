"""End to end through real processes and real HTTP: the runbook's verification checklist, retries,
skips, cancellation, a worker killed mid-task, a dispatcher restarted mid-run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from arco_stack.harness import ArcoStack
from arco_stack.preflight import artifact_checks, config_checks, live_checks
from arco_stack.verification import verify

from .e2e_handlers import ITEM_KEYS, e2e_manifest

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _latest_manifest(request: pytest.FixtureRequest) -> None:
    """Runs plan from the latest manifest; the checklist deploys the demo's, so redeploy ours."""
    if "e2e" in request.fixturenames:
        stack: ArcoStack = request.getfixturevalue("e2e")
        stack.deploy(e2e_manifest())


def _task(tasks: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(task for task in tasks if task["taskKey"] == key)


def _poll(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def test_verification_checklist_passes(e2e: ArcoStack) -> None:
    """The cutover runbook's Verification Checklist, as `arco-stack verify` runs it."""
    # The suite's own manifest is active: the probe replaces it only when told to.
    checks = verify(e2e.client, timeout=120, deploy_probe=True)
    failed = [(check.name, check.evidence) for check in checks if not check.ok]
    assert not failed


def test_preflight_passes_against_the_running_stack(e2e: ArcoStack) -> None:
    """The runbook's preconditions, including the calls to the running api and worker: an
    invalid callback token gets 401 and a legacy dispatch payload gets 400."""
    env = e2e.env
    checks = config_checks(env) + artifact_checks() + live_checks(env)
    assert [(check.name, check.evidence) for check in checks if not check.ok] == []
    assert any(check.name == "a callback with an invalid token gets 401" for check in checks)


def test_failing_asset_retries_and_the_dag_succeeds(e2e: ArcoStack) -> None:
    final = e2e.trigger("e2e.ok", include_upstream=True, timeout=120)
    assert final["state"] == "SUCCEEDED"
    tasks = e2e.tasks(final["runId"])
    flaky = _task(tasks, "e2e.flaky")
    assert flaky["attempt"] == 2
    assert [a["states"][-1] for a in flaky["attempts"]] == ["RETRY_WAIT", "SUCCEEDED"]
    assert _task(tasks, "e2e.ok")["storedState"] == "SUCCEEDED"


def test_permanent_failure_skips_downstream(e2e: ArcoStack) -> None:
    final = e2e.trigger("e2e.after", include_upstream=True, timeout=120)
    assert final["state"] == "FAILED"
    states = {task["taskKey"]: task["state"] for task in final["tasks"]}
    assert states == {"e2e.fail": "FAILED", "e2e.after": "SKIPPED"}
    skipped = _task(final["tasks"], "e2e.after")
    assert skipped["skipAttribution"] == {
        "upstreamTaskKey": "e2e.fail",
        "upstreamResolution": "FAILED",
    }


def test_cancel_while_running_reports_cancelled(e2e: ArcoStack) -> None:
    run_id = e2e.trigger("e2e.long", wait=False)["runId"]

    def running_with_heartbeat() -> bool:
        task = _task(e2e.tasks(run_id), "e2e.long")
        return task["storedState"] == "RUNNING" and "lastHeartbeatAt" in task

    _poll("e2e.long to run and heartbeat", running_with_heartbeat, timeout=60)
    assert e2e.cancel(run_id)["state"] == "CANCELLING"
    final = e2e.wait(run_id, timeout=60)
    assert final["state"] == "CANCELLED"
    task = _task(e2e.tasks(run_id), "e2e.long")
    completed = [event for event in task["history"] if event["kind"] == "completed"]
    assert completed[-1]["detail"]["outcome"] == "CANCELLED"
    assert "cancelledDuringPhase" in completed[-1]["detail"]


def test_worker_killed_mid_task_is_reaped_and_retried(e2e: ArcoStack) -> None:
    run_id = e2e.trigger("e2e.crashy", wait=False)["runId"]

    def running() -> bool:
        task = _task(e2e.tasks(run_id), "e2e.crashy")
        return task["storedState"] == "RUNNING" and "lastHeartbeatAt" in task

    _poll("attempt 1 to run", running, timeout=60)
    e2e.kill("worker")
    e2e.restart("worker")
    final = e2e.wait(run_id, timeout=150)
    assert final["state"] == "SUCCEEDED"
    task = _task(e2e.tasks(run_id), "e2e.crashy")
    assert task["attempt"] == 2
    reaped = [event for event in task["history"] if event["kind"] == "reaped"]
    assert reaped
    assert reaped[0]["detail"]["errorMessage"] == "heartbeat_timeout_anti_entropy"


def test_dispatcher_restarted_mid_run_loses_nothing(e2e: ArcoStack) -> None:
    run_id = e2e.trigger(*ITEM_KEYS, wait=False)["runId"]
    e2e.kill("dispatcher")
    e2e.restart("dispatcher")
    final = e2e.wait(run_id, timeout=120)
    assert final["state"] == "SUCCEEDED"
    assert final["taskCounts"]["succeeded"] == len(ITEM_KEYS)
    for task in e2e.tasks(run_id):
        starts = [event for event in task["history"] if event["kind"] == "started"]
        assert len(starts) == 1, task["taskKey"]
