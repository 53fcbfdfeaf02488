"""Configuration shared by dispatcher and sweeper: upstream names and defaults, and every
problem named with its variable (design D11; upstream scenario 55)."""

from __future__ import annotations

import pytest

from arco_dispatch.settings import FlowSettings, ProviderName, load_settings
from arco_testkit.dispatching import flow_settings
from arco_testkit.values import DISPATCH_SECRET, RUN_TOKEN, TASK_SECRET

ENV = {
    "ARCO_TENANT_ID": "tenant-a",
    "ARCO_WORKSPACE_ID": "workspace-b",
    "ARCO_FLOW_DISPATCH_TARGET_URL": "https://worker.example/dispatch",
    "ARCO_FLOW_CALLBACK_BASE_URL": "https://api.example",
    "ARCO_FLOW_WORKER_DISPATCH_SECRET": DISPATCH_SECRET,
    "ARCO_FLOW_TASK_TOKEN_SECRET": TASK_SECRET,
    "ARCO_FLOW_RUN_TOKEN": RUN_TOKEN,
    "ARCO_FLOW_TASK_TOKEN_ISSUER": "https://issuer.task",
    "ARCO_FLOW_TASK_TOKEN_AUDIENCE": "arco-worker-callback",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_reads_upstream_names_with_upstream_defaults(env: pytest.MonkeyPatch) -> None:
    settings, problems = load_settings(FlowSettings)
    assert problems == []
    assert settings is not None
    assert settings.scope.tenant_id == "tenant-a"
    assert settings.scope.workspace_id == "workspace-b"
    assert settings.task_token_ttl_secs == 3600
    assert settings.task_timeout_secs == 1800
    assert settings.queue == "arco-flow-dispatch"
    assert settings.provider is ProviderName.HTTP
    assert settings.dispatch_concurrency == 64
    assert settings.http_host == "127.0.0.1"
    assert settings.target_audience == "https://worker.example/dispatch"


def test_audience_falls_back_to_the_target_url_only_when_blank(env: pytest.MonkeyPatch) -> None:
    env.setenv("ARCO_FLOW_DISPATCH_TARGET_AUDIENCE", "  https://aud.example  ")
    settings, _ = load_settings(FlowSettings)
    assert settings is not None
    assert settings.target_audience == "https://aud.example"


def test_a_short_token_ttl_is_named_with_the_rule(env: pytest.MonkeyPatch) -> None:
    env.setenv("ARCO_FLOW_TASK_TOKEN_TTL_SECS", "1800")
    _, problems = load_settings(FlowSettings)
    assert problems == [
        "ARCO_FLOW_TASK_TOKEN_TTL_SECS=1800 must be >= ARCO_FLOW_TASK_TIMEOUT_SECS + 300 = 2100"
    ]


def test_every_missing_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scenario 55: missing issuer or audience, empty dispatch secret: all refused."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    _, problems = load_settings(FlowSettings)
    assert problems == [
        "ARCO_TENANT_ID is required",
        "ARCO_WORKSPACE_ID is required",
        "ARCO_FLOW_DISPATCH_TARGET_URL is required",
        "ARCO_FLOW_CALLBACK_BASE_URL is required",
        "ARCO_FLOW_WORKER_DISPATCH_SECRET must not be empty",
        "ARCO_FLOW_RUN_TOKEN is required outside the dev posture (ARCO_ENVIRONMENT=dev): the "
        "bearer token of POST /run, at least 32 bytes",
        "missing ARCO_FLOW_TASK_TOKEN_SECRET",
        "ARCO_FLOW_TASK_TOKEN_ISSUER is required (it must match the API)",
        "ARCO_FLOW_TASK_TOKEN_AUDIENCE is required (it must match the API)",
    ]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (
            "ARCO_FLOW_WORKER_DISPATCH_SECRET",
            "   ",
            "ARCO_FLOW_WORKER_DISPATCH_SECRET must not be empty",
        ),
        (
            "ARCO_FLOW_TASK_TOKEN_ISSUER",
            " ",
            "ARCO_FLOW_TASK_TOKEN_ISSUER is required (it must match the API)",
        ),
        (
            "ARCO_FLOW_TASK_TOKEN_AUDIENCE",
            "",
            "ARCO_FLOW_TASK_TOKEN_AUDIENCE is required (it must match the API)",
        ),
        (
            "ARCO_FLOW_TASK_TIMEOUT_SECS",
            "0",
            "ARCO_FLOW_TASK_TIMEOUT_SECS=0 must be greater than 0",
        ),
        (
            "ARCO_FLOW_TASK_TIMEOUT_SECS",
            "-5",
            "ARCO_FLOW_TASK_TIMEOUT_SECS=-5 must be greater than 0",
        ),
        (
            "ARCO_FLOW_TASK_TOKEN_TTL_SECS",
            "90000",
            "ARCO_FLOW_TASK_TOKEN_TTL_SECS=90000 must be in 1..86400",
        ),
        (
            "ARCO_FLOW_TASK_TIMEOUT_SECS",
            "soon",
            "ARCO_FLOW_TASK_TIMEOUT_SECS=soon: Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            "ARCO_FLOW_DISPATCH_TARGET_URL",
            "worker:8090",
            "ARCO_FLOW_DISPATCH_TARGET_URL=worker:8090 must be an http(s) URL",
        ),
        (
            "ARCO_FLOW_DISPATCH_PROVIDER",
            "sqs",
            "ARCO_FLOW_DISPATCH_PROVIDER=sqs must be one of http, cloudtasks, memory",
        ),
        (
            "ARCO_FLOW_DISPATCH_CONCURRENCY",
            "0",
            "ARCO_FLOW_DISPATCH_CONCURRENCY=0 must be at least 1",
        ),
    ],
)
def test_one_bad_setting_is_named(
    env: pytest.MonkeyPatch, name: str, value: str, problem: str
) -> None:
    env.setenv(name, value)
    _, problems = load_settings(FlowSettings)
    assert problems == [problem]


def test_cloudtasks_needs_its_queue_path_and_a_deadline_cloud_tasks_accepts() -> None:
    settings = flow_settings(
        dispatch_provider="cloudtasks", task_timeout_secs=3600, task_token_ttl_secs=7200
    )
    assert settings.problems() == [
        "ARCO_GCP_PROJECT_ID is required with ARCO_FLOW_DISPATCH_PROVIDER=cloudtasks",
        "ARCO_GCP_LOCATION is required with ARCO_FLOW_DISPATCH_PROVIDER=cloudtasks",
        "ARCO_FLOW_TASK_TIMEOUT_SECS=3600 must be in 15..1800 (the Cloud Tasks dispatch "
        "deadline) with ARCO_FLOW_DISPATCH_PROVIDER=cloudtasks",
    ]
    good = flow_settings(dispatch_provider="CloudTasks", gcp_project_id="p", gcp_location="l")
    assert good.problems() == []
    assert good.provider is ProviderName.CLOUDTASKS


def test_token_config_carries_the_flow_token_settings() -> None:
    config = flow_settings(task_token_ttl_secs=2400).task_token_config()
    assert (config.secret, config.issuer, config.audience, config.ttl_seconds) == (
        TASK_SECRET,
        "https://issuer.task",
        "arco-worker-callback",
        2400,
    )


def test_secrets_are_secret_str_and_never_shown(env: pytest.MonkeyPatch) -> None:
    """Issue 10: secrets are SecretStr; repr and problems never show a value."""
    settings, _ = load_settings(FlowSettings)
    assert settings is not None
    for value in (DISPATCH_SECRET, TASK_SECRET, RUN_TOKEN):
        assert value not in repr(settings)
    assert settings.dispatch_secret == DISPATCH_SECRET


def test_short_or_shared_secrets_are_refused_outside_dev(env: pytest.MonkeyPatch) -> None:
    """Issue 15 finding 3: under 32 bytes or one value in two roles is named per variable."""
    env.setenv("ARCO_FLOW_RUN_TOKEN", "short")
    env.setenv("ARCO_FLOW_WORKER_DISPATCH_SECRET", TASK_SECRET)
    _, problems = load_settings(FlowSettings)
    assert problems == [
        "ARCO_FLOW_RUN_TOKEN is 5 bytes; it must be at least 32 bytes outside the dev posture "
        "(ARCO_ENVIRONMENT=dev) (e.g. openssl rand -hex 32)",
        "ARCO_FLOW_TASK_TOKEN_SECRET and ARCO_FLOW_WORKER_DISPATCH_SECRET must not be equal: "
        "give each its own secret",
    ]
    env.setenv("ARCO_ENVIRONMENT", "dev")
    env.delenv("ARCO_FLOW_RUN_TOKEN")
    settings, problems = load_settings(FlowSettings)
    assert problems == []
    assert settings is not None
    assert settings.warnings() == [problems_equal_line()]


def problems_equal_line() -> str:
    return (
        "ARCO_FLOW_TASK_TOKEN_SECRET and ARCO_FLOW_WORKER_DISPATCH_SECRET must not be equal: "
        "give each its own secret"
    )
