"""Fault injection on PostgreSQL: services SIGKILLed at seeded random moments and restarted,
PostgreSQL crashed and restarted once, and two of each service sharing one database. The
checks: every run and task ends, no task ends twice, every success really ran, and
callbacks fail only during outages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from arco_orchestration.db import Database
from arco_stack.databases import recreate_postgres_database

from .chaos_handlers import chaos_manifest, read_executions, task_keys
from .checks import (
    Findings,
    check_database,
    check_server_errors,
    count_executions,
    unfinished_runs,
)
from .conftest import ChaosSize, share_secrets, start_stack
from .controller import ChaosController, plan
from .postgres_server import PostgresServer

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.timeout(1500)]
FINISH_TIMEOUT_SECS = 600.0


def _all_finished(db: Database) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with db.transaction() as session:
                return unfinished_runs(session) == 0
        except OperationalError:
            return False  # the database is restarting

    return check


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _findings(db: Database, executions: Path) -> Findings:
    findings = Findings()
    records = read_executions(executions)
    with db.transaction() as session:
        check_database(session, records, findings)
    count_executions(records, findings)
    return findings


def _report(capsys: pytest.CaptureFixture[str], title: str, figures: dict[str, object]) -> None:
    with capsys.disabled():
        print(f"\n{title}: {json.dumps(figures, sort_keys=True)}")


def test_killing_every_service_and_crashing_postgres_loses_no_task(
    chaos_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = ChaosSize()
    url = recreate_postgres_database(chaos_server.url, "arco_chaos")
    executions = tmp_path / "executions.jsonl"
    handle = start_stack(
        tmp_path / "stack", url, executions, tasks=size.tasks, worker_concurrency=8
    )
    db = Database.from_url(url)
    controller = ChaosController(handle.stack, handle.specs, chaos_server)
    steps = plan(size.seed, size.kills)
    try:
        handle.client.deploy_manifest(chaos_manifest(size.tasks))
        handle.client.trigger_run({"selection": task_keys(size.tasks)})
        controller.execute(steps)
        finished = controller.watch(stop=_all_finished(db), timeout=FINISH_TIMEOUT_SECS)
    finally:
        handle.stop()

    findings = _findings(db, executions)
    check_server_errors([handle.api_log], controller.outages, findings)
    db.dispose()
    _report(
        capsys,
        f"chaos (seed {size.seed}, {size.tasks} tasks, {size.kills} kills)",
        {**findings.summary(), "outages": [o.what for o in controller.outages]},
    )
    assert finished, f"runs not finished {FINISH_TIMEOUT_SECS:.0f}s after the chaos ended"
    assert len(controller.outages) == len(steps)
    assert controller.unexpected_exits == []
    assert findings.not_terminal == []
    assert findings.tasks.total() == size.tasks
    assert findings.finished_twice == [], "a task reached a terminal state twice"
    assert findings.never_finished == []
    assert findings.succeeded_without_execution == []
    assert findings.server_errors_outside_outages == []


def test_two_of_each_service_share_one_database(
    chaos_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No faults: two apis, workers, dispatchers and sweepers on one database run every task
    exactly once."""
    tasks = ChaosSize().tasks
    url = recreate_postgres_database(chaos_server.url, "arco_chaos_pair")
    executions = tmp_path / "executions.jsonl"
    first = start_stack(tmp_path / "a", url, executions, tasks=tasks, worker_concurrency=8)
    share_secrets(tmp_path / "a", tmp_path / "b")
    try:
        second = start_stack(tmp_path / "b", url, executions, tasks=tasks, worker_concurrency=8)
    except Exception:
        first.stop()
        raise
    db = Database.from_url(url)
    keys = task_keys(tasks)
    try:
        first.client.deploy_manifest(chaos_manifest(tasks))
        first.client.trigger_run({"selection": keys})
        for index in range(10):
            client = second.client if index % 2 else first.client
            client.trigger_run({"selection": keys[index * 5 : index * 5 + 5]})
        finished = _wait(_all_finished(db), FINISH_TIMEOUT_SECS)
    finally:
        for handle in (first, second):
            handle.stop()

    findings = _findings(db, executions)
    check_server_errors([first.api_log, second.api_log], [], findings)
    db.dispose()
    workers = {e.pid for e in read_executions(executions)}
    _report(capsys, "two of each", {**findings.summary(), "workerProcesses": len(workers)})
    assert finished
    assert findings.runs == {"SUCCEEDED": 11}
    assert findings.tasks == {"SUCCEEDED": tasks + 50}
    assert findings.duplicate_executions == 0
    assert findings.re_executions == 0
    assert findings.finished_twice == []
    assert findings.never_finished == []
    assert findings.succeeded_without_execution == []
    assert findings.server_errors_outside_outages == []
