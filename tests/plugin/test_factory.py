"""The plugin's ``arco_stack_factory`` and the harness's ``kill``/``restart``, as a user's
project meets them: two stacks side by side, one with extra environment, a service killed and
restarted, a bad service name, and a failure reporting each stack's service logs."""

from __future__ import annotations

import re
from pathlib import Path

from .test_sample_project import _project, _pytest

FACTORY_TESTS = """
import pytest

from arco_stack.harness import HarnessError


@pytest.fixture(scope="module")
def second(arco_stack_factory):
    stack = arco_stack_factory(overrides={"ARCO_WORKER_SAMPLE_TASKS": "true"})
    stack.deploy()
    return stack


def test_two_stacks_run_side_by_side(arco_stack, second):
    arco_stack.deploy()
    assert second.api_url != arco_stack.api_url
    assert second.env["ARCO_WORKER_SAMPLE_TASKS"] == "true"
    assert arco_stack.env["ARCO_WORKER_SAMPLE_TASKS"] == "false"
    assert arco_stack.trigger("shop.report")["state"] == "SUCCEEDED"
    assert second.trigger("shop.report")["state"] == "SUCCEEDED"


def test_a_killed_worker_comes_back_with_restart(second):
    second.kill("worker")
    with pytest.raises(HarnessError, match="no running service named 'worker'"):
        second.kill("worker")
    second.restart("worker")
    assert second.trigger("shop.report")["state"] == "SUCCEEDED"


def test_a_running_dispatcher_is_restarted(second):
    before = second.processes.service("dispatcher").process.pid
    second.restart("dispatcher")
    assert second.processes.service("dispatcher").process.pid != before
    assert second.trigger("shop.report")["state"] == "SUCCEEDED"


def test_an_unknown_service_is_named(second):
    with pytest.raises(HarnessError, match="no running service named 'db'"):
        second.kill("db")
    with pytest.raises(HarnessError, match="no service named 'db'"):
        second.restart("db")


def test_deliberately_wrong_with_two_stacks(arco_stack, second):
    assert second.trigger("shop.broken")["state"] == "SUCCEEDED"
"""


def test_the_factory_runs_more_stacks_and_kills_and_restarts_services(tmp_path: Path) -> None:
    project = _project(tmp_path)
    for sample in project.glob("test_*.py"):
        sample.unlink()  # the sample's own tests run in test_sample_project.py
    (project / "test_factory.py").write_text(FACTORY_TESTS)
    result, outcomes = _pytest(project, "--arco-worker", "mytasks:worker")
    output = result.stdout + result.stderr
    assert outcomes == {
        "test_two_stacks_run_side_by_side": "passed",
        "test_a_killed_worker_comes_back_with_restart": "passed",
        "test_a_running_dispatcher_is_restarted": "passed",
        "test_an_unknown_service_is_named": "passed",
        "test_deliberately_wrong_with_two_stacks": "failure",
    }, output
    # Two stacks ran when the test failed: each section names its stack's data folder.
    labelled = set(re.findall(r"arco-stack \((arco-stack\d+)\) api log", result.stdout))
    assert len(labelled) == 2, result.stdout


def test_the_factory_refuses_an_unknown_option(tmp_path: Path) -> None:
    project = _project(tmp_path)
    for sample in project.glob("test_*.py"):
        sample.unlink()
    (project / "test_bad.py").write_text(
        "def test_bad(arco_stack_factory):\n    arco_stack_factory(colour='blue')\n"
    )
    result, outcomes = _pytest(project, "--arco-worker", "mytasks:worker")
    assert outcomes == {"test_bad": "failure"}, result.stdout
    assert "arco_stack:" in result.stdout
    assert "colour" in result.stdout
