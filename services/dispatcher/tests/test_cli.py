"""``arco-dispatcher`` refuses to start on bad configuration, naming each problem, and
unless the schema is at head (scenario 55, design D11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arco_dispatcher import cli
from arco_dispatcher.cli import main
from arco_testkit.values import DISPATCH_SECRET, RUN_TOKEN, TASK_SECRET


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() would point the process-wide structlog config at pytest's captured stderr."""
    monkeypatch.setattr(cli, "configure_logging", lambda: None)


def test_bad_configuration_is_refused_with_every_problem_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCO_TENANT_ID", "tenant-a")
    monkeypatch.setenv("ARCO_WORKSPACE_ID", "workspace-b")
    monkeypatch.setenv("ARCO_FLOW_DISPATCH_TARGET_URL", "http://127.0.0.1:9/dispatch")
    monkeypatch.setenv("ARCO_FLOW_CALLBACK_BASE_URL", "https://api.example")
    monkeypatch.setenv("ARCO_ENVIRONMENT", "prod")
    monkeypatch.setenv("ARCO_FLOW_WORKER_DISPATCH_SECRET", " ")
    monkeypatch.setenv("ARCO_FLOW_TASK_TOKEN_SECRET", "task-secret")
    monkeypatch.setenv("ARCO_FLOW_TASK_TOKEN_TTL_SECS", "1800")
    monkeypatch.setenv("ARCO_FLOW_DISPATCH_INTERVAL_MS", "0")
    assert main() == 2
    assert capsys.readouterr().err.splitlines() == [
        "arco-dispatcher: refusing to start:",
        "  - ARCO_FLOW_WORKER_DISPATCH_SECRET must not be empty",
        "  - ARCO_FLOW_RUN_TOKEN is required outside the dev posture (ARCO_ENVIRONMENT=dev): "
        "the bearer token of POST /run, at least 32 bytes",
        "  - ARCO_FLOW_TASK_TOKEN_SECRET is 11 bytes; it must be at least 32 bytes outside the "
        "dev posture (ARCO_ENVIRONMENT=dev) (e.g. openssl rand -hex 32)",
        "  - ARCO_FLOW_TASK_TOKEN_ISSUER is required (it must match the API)",
        "  - ARCO_FLOW_TASK_TOKEN_AUDIENCE is required (it must match the API)",
        "  - ARCO_FLOW_TASK_TOKEN_TTL_SECS=1800 must be >= ARCO_FLOW_TASK_TIMEOUT_SECS + 300"
        " = 2100",
        "  - ARCO_FLOW_DISPATCH_INTERVAL_MS=0 must be greater than 0",
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
    assert main() == 2
    err = capsys.readouterr().err
    assert err.startswith("arco-dispatcher: refusing to start:\n  - schema at revision none")
    assert "run `arco-orchestration migrate`" in err


def test_equal_secrets_are_refused_outside_dev_and_only_warned_in_dev(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 15 finding 3: one value as both the task-token and the dispatch secret is a
    refusal outside the dev posture; ARCO_ENVIRONMENT=dev only warns (and then goes on to
    check the schema)."""
    for name, value in {
        "ARCO_TENANT_ID": "tenant-a",
        "ARCO_WORKSPACE_ID": "workspace-b",
        "ARCO_FLOW_DISPATCH_TARGET_URL": "http://127.0.0.1:9/dispatch",
        "ARCO_FLOW_CALLBACK_BASE_URL": "https://api.example",
        "ARCO_FLOW_WORKER_DISPATCH_SECRET": TASK_SECRET,
        "ARCO_FLOW_TASK_TOKEN_SECRET": TASK_SECRET,
        "ARCO_FLOW_RUN_TOKEN": RUN_TOKEN,
        "ARCO_FLOW_TASK_TOKEN_ISSUER": "https://issuer.task",
        "ARCO_FLOW_TASK_TOKEN_AUDIENCE": "arco-worker-callback",
        "ARCO_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    equal = (
        "ARCO_FLOW_TASK_TOKEN_SECRET and ARCO_FLOW_WORKER_DISPATCH_SECRET must not be equal: "
        "give each its own secret"
    )
    assert main() == 2
    assert capsys.readouterr().err.splitlines() == [
        "arco-dispatcher: refusing to start:",
        f"  - {equal}",
    ]
    monkeypatch.setenv("ARCO_ENVIRONMENT", "dev")
    assert main() == 2
    err = capsys.readouterr().err
    assert f"arco-dispatcher: warning (accepted only in the dev posture): {equal}" in err
    assert "schema at revision none" in err
