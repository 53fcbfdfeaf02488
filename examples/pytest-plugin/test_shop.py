"""A user's tests of their worker against a real stack (the arco_stack fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module", autouse=True)
def deployed(arco_stack: Any) -> None:
    arco_stack.deploy()


def test_report(arco_stack: Any) -> None:
    run = arco_stack.trigger("shop.report", wait=True)
    assert run["state"] == "SUCCEEDED"
    assert "hello" in arco_stack.logs(run["runId"])


def test_a_failing_task_fails_the_run(arco_stack: Any) -> None:
    run = arco_stack.trigger("shop.broken", wait=True)
    assert run["state"] == "FAILED"
    (task,) = arco_stack.tasks(run["runId"])
    assert task["taskKey"] == "shop.broken"


def test_cancel(arco_stack: Any) -> None:
    run = arco_stack.trigger("shop.slow", wait=False)
    arco_stack.cancel(run["runId"])
    assert arco_stack.wait(run["runId"], timeout=60)["state"] == "CANCELLED"


def test_the_api_is_reachable_with_a_token(arco_stack: Any) -> None:
    workspace = arco_stack.env["ARCO_WORKSPACE_ID"]
    response = httpx.get(
        f"{arco_stack.api_url}/api/v1/workspaces/{workspace}/runs",
        headers={"Authorization": f"Bearer {arco_stack.token()}"},
    )
    assert response.status_code == 200
