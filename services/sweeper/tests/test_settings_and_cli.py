"""``arco-sweeper`` configuration: upstream thresholds as defaults, every problem named,
refusal to start on bad configuration or an old schema (scenario 55, design D11)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from arco_sweeper import cli
from arco_sweeper.rules import SweepThresholds
from arco_sweeper.settings import SweeperSettings
from arco_testkit.dispatching import settings_values
from arco_testkit.values import DISPATCH_SECRET, RUN_TOKEN, TASK_SECRET


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() would point the process-wide structlog config at pytest's captured stderr."""
    monkeypatch.setattr(cli, "configure_logging", lambda: None)


def test_defaults_are_upstreams_constants() -> None:
    settings = SweeperSettings(**settings_values())
    assert settings.http_port == 8082
    assert settings.interval == timedelta(seconds=30)
    assert settings.sweep_loop is True
    assert settings.thresholds() == SweepThresholds(
        stuck_ready=timedelta(minutes=5),
        stuck_dispatched=timedelta(minutes=10),
        heartbeat_grace=timedelta(seconds=30),
        max_redispatches=3,
    )


def test_thresholds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCO_FLOW_SWEEP_STUCK_READY_SECS", "60")
    monkeypatch.setenv("ARCO_FLOW_SWEEP_STUCK_DISPATCHED_SECS", "120")
    monkeypatch.setenv("ARCO_FLOW_SWEEP_HEARTBEAT_GRACE_SECS", "5")
    monkeypatch.setenv("ARCO_FLOW_MAX_REDISPATCHES", "0")
    monkeypatch.setenv("ARCO_FLOW_SWEEP_INTERVAL_SECS", "0.5")
    monkeypatch.setenv("ARCO_RETRY_BACKOFF_BASE_SECS", "2")
    settings = SweeperSettings(**settings_values())
    assert settings.thresholds() == SweepThresholds(
        stuck_ready=timedelta(seconds=60),
        stuck_dispatched=timedelta(seconds=120),
        heartbeat_grace=timedelta(seconds=5),
        max_redispatches=0,
        retry_backoff_base=timedelta(seconds=2),
    )
    assert settings.interval == timedelta(milliseconds=500)


def test_bad_configuration_is_refused_with_every_problem_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCO_TENANT_ID", "tenant-a")
    monkeypatch.setenv("ARCO_WORKSPACE_ID", "workspace-b")
    monkeypatch.setenv("ARCO_FLOW_DISPATCH_TARGET_URL", "http://127.0.0.1:9/dispatch")
    monkeypatch.setenv("ARCO_FLOW_CALLBACK_BASE_URL", "https://api.example")
    monkeypatch.setenv("ARCO_FLOW_WORKER_DISPATCH_SECRET", DISPATCH_SECRET)
    monkeypatch.setenv("ARCO_FLOW_TASK_TOKEN_SECRET", TASK_SECRET)
    monkeypatch.setenv("ARCO_FLOW_RUN_TOKEN", RUN_TOKEN)
    monkeypatch.setenv("ARCO_FLOW_TASK_TOKEN_ISSUER", "https://issuer.task")
    monkeypatch.setenv("ARCO_FLOW_TASK_TIMEOUT_SECS", "0")
    monkeypatch.setenv("ARCO_FLOW_MAX_REDISPATCHES", "-1")
    monkeypatch.setenv("ARCO_RETRY_BACKOFF_BASE_SECS", "-1")
    assert cli.main() == 2
    assert capsys.readouterr().err.splitlines() == [
        "arco-sweeper: refusing to start:",
        "  - ARCO_FLOW_TASK_TOKEN_AUDIENCE is required (it must match the API)",
        "  - ARCO_FLOW_TASK_TIMEOUT_SECS=0 must be greater than 0",
        "  - ARCO_FLOW_MAX_REDISPATCHES=-1 must not be negative",
        "  - ARCO_RETRY_BACKOFF_BASE_SECS=-1.0 must not be negative",
    ]


def test_a_database_not_at_head_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, value in {
        "ARCO_TENANT_ID": "tenant-a",
        "ARCO_WORKSPACE_ID": "workspace-b",
        "ARCO_FLOW_DISPATCH_TARGET_URL": "http://127.0.0.1:9/dispatch",
        "ARCO_FLOW_CALLBACK_BASE_URL": "https://api.example",
        "ARCO_FLOW_WORKER_DISPATCH_SECRET": DISPATCH_SECRET,
        "ARCO_FLOW_TASK_TOKEN_SECRET": TASK_SECRET,
        "ARCO_FLOW_RUN_TOKEN": RUN_TOKEN,
        "ARCO_FLOW_TASK_TOKEN_ISSUER": "https://issuer.task",
        "ARCO_FLOW_TASK_TOKEN_AUDIENCE": "arco-worker-callback",
        "ARCO_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main() == 2
    assert capsys.readouterr().err.startswith(
        "arco-sweeper: refusing to start:\n  - schema at revision none"
    )
