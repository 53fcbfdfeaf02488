"""The pytest plugin as a user meets it: a project with a worker module and tests using the
``arco_stack`` fixture, run by pytest in a subprocess (the plugin loads from its entry point)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from arco_stack.containers import docker_engine_problem
from arco_stack.databases import drop_postgres_database, recreate_postgres_database

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pytest-plugin"
FAILING_TEST = """
def test_deliberately_wrong(arco_stack):
    run = arco_stack.trigger("shop.report", wait=True)
    assert run["state"] == "FAILED"
"""


def _project(tmp_path: Path, *, failing: bool = False) -> Path:
    project = tmp_path / "project"
    shutil.copytree(SAMPLE, project, ignore=shutil.ignore_patterns("__pycache__"))
    if failing:
        (project / "test_wrong.py").write_text(FAILING_TEST)
    return project


def _pytest(project: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run pytest in ``project``; returns the process and each test's outcome."""
    junit = project / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCO_", "PYTEST_"))}
    if "ARCO_TEST_POSTGRES_IMAGE" in os.environ:
        env["ARCO_TEST_POSTGRES_IMAGE"] = os.environ["ARCO_TEST_POSTGRES_IMAGE"]
    result = subprocess.run(  # noqa: S603 - this interpreter's pytest
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    outcomes: dict[str, str] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - our own file
            kinds = [child.tag for child in case if child.tag != "system-out"]
            outcomes[case.attrib["name"]] = kinds[0] if kinds else "passed"
    return result, outcomes


def _expect_sample_passed(
    result: subprocess.CompletedProcess[str], outcomes: dict[str, str]
) -> None:
    output = result.stdout + result.stderr
    assert outcomes.get("test_report") == "passed", output
    assert outcomes.get("test_a_failing_task_fails_the_run") == "passed", output
    assert outcomes.get("test_cancel") == "passed", output
    assert outcomes.get("test_the_api_is_reachable_with_a_token") == "passed", output


def test_the_sample_project_passes_on_sqlite_and_failures_show_service_logs(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, failing=True)
    result, outcomes = _pytest(project, "--arco-worker", "mytasks:worker")
    _expect_sample_passed(result, outcomes)
    assert outcomes.get("test_deliberately_wrong") == "failure"
    assert result.returncode == 1
    for service in ("api", "worker", "dispatcher", "sweeper"):
        assert f"arco-stack {service} log (last lines)" in result.stdout
    assert "hello from shop.report" in result.stdout  # the worker's log tail


def test_the_ini_key_names_the_worker(tmp_path: Path) -> None:
    project = _project(tmp_path)
    config = project / "pyproject.toml"
    config.write_text(config.read_text() + 'arco_worker = "mytasks:worker"\n')
    result, outcomes = _pytest(project, "-k", "api_is_reachable")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes == {"test_the_api_is_reachable_with_a_token": "passed"}


def test_without_a_worker_the_fixture_says_how_to_name_one(tmp_path: Path) -> None:
    result, _ = _pytest(_project(tmp_path), "-k", "api_is_reachable")
    assert result.returncode == 1
    assert "--arco-worker MODULE:ATTR" in result.stdout


@pytest.mark.postgres
def test_the_sample_project_passes_on_a_postgres_url(tmp_path: Path) -> None:
    server = os.environ.get("ARCO_TEST_DATABASE_URL", "").strip()
    if not server:
        pytest.skip("needs ARCO_TEST_DATABASE_URL")
    name = f"arco_plugin_{os.getpid()}"
    url = recreate_postgres_database(server, name)
    try:
        result, outcomes = _pytest(
            _project(tmp_path), "--arco-worker", "mytasks:worker", "--arco-database-url", url
        )
    finally:
        drop_postgres_database(server, name)
    _expect_sample_passed(result, outcomes)
    assert result.returncode == 0


def test_the_sample_project_passes_with_a_postgres_container(tmp_path: Path) -> None:
    if (missing := docker_engine_problem()) is not None:
        if os.environ.get("ARCO_REQUIRE_DOCKER") == "1":
            pytest.fail(f"ARCO_REQUIRE_DOCKER=1 but {missing}")
        pytest.skip(missing)
    result, outcomes = _pytest(
        _project(tmp_path), "--arco-worker", "mytasks:worker", "--arco-postgres", "container"
    )
    _expect_sample_passed(result, outcomes)
    assert result.returncode == 0
