"""API configuration: `ApiSettings.problems()` names every reason to refuse to start
(arco-contract 6.7, 8.12 posture tests, design D8), env reading, and the startup refusal of
`arco-api`."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from services.api.tests.api_test_support import api_settings

from arco_api import cli
from arco_api.settings import ApiSettings, Posture
from arco_envelope.tokens import TaskTokenConfig

LONG_TASK_SECRET = "task-token-secret-0123456789abcdef0123"
LONG_JWT_SECRET = "user-jwt-secret-fedcba9876543210fedcba"

TOKEN_SECRET_PROBLEM = (
    "task token config invalid when debug=false: task_token.hs256_secret is required "
    "(ARCO_TASK_TOKEN_SECRET, ARCO_TASK_TOKEN_TTL_SECS)"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read ARCO_* from the environment: start every test from none."""
    for name in list(os.environ):
        if name.startswith("ARCO_"):
            monkeypatch.delenv(name)


def test_valid_private_config_has_no_problems() -> None:
    assert api_settings().problems() == []
    assert api_settings().posture is Posture.PRIVATE


def test_posture_requires_task_token_issuer_outside_dev() -> None:
    """8.12 `test_posture_requires_task_token_issuer_outside_dev`."""
    for environment, public in (("staging", False), ("prod", False), ("dev", True)):
        problems = api_settings(
            environment=environment, api_public=public, task_token_issuer=""
        ).problems()
        assert problems == ["task_token.issuer is required outside dev (ARCO_TASK_TOKEN_ISSUER)"]


def test_posture_requires_task_token_audience_outside_dev() -> None:
    """8.12 `test_posture_requires_task_token_audience_outside_dev`."""
    problems = api_settings(task_token_audience="  ").problems()
    assert problems == ["task_token.audience is required outside dev (ARCO_TASK_TOKEN_AUDIENCE)"]


def test_dev_posture_needs_no_issuer_or_audience() -> None:
    """arco-contract 6.7: issuer and audience are mandatory only outside dev."""
    settings = api_settings(environment="dev", task_token_issuer="", task_token_audience="")
    assert settings.posture is Posture.DEV
    assert settings.problems() == []


def test_missing_task_secret_when_not_debug() -> None:
    """arco-contract 6.7 `validate_config`: without debug the task-token config must pass
    `validate()`; in dev with debug it need not."""
    assert api_settings(task_token_secret="   ").problems() == [TOKEN_SECRET_PROBLEM]
    debug = api_settings(environment="dev", debug=True, task_token_secret="", jwt_secret="")
    assert debug.problems() == []


@pytest.mark.parametrize(
    ("ttl", "problem"),
    [
        (0, "ARCO_TASK_TOKEN_TTL_SECS=0 must be in 1..86400"),
        (86401, "ARCO_TASK_TOKEN_TTL_SECS=86401 must be in 1..86400"),
        (-5, "ARCO_TASK_TOKEN_TTL_SECS=-5 must be in 1..86400"),
    ],
)
def test_ttl_bounds(ttl: int, problem: str) -> None:
    """arco-contract 6.7: TTL in 1..86400; 0 and 86401 are refused (named with the env var)."""
    problems = api_settings(task_token_ttl_secs=ttl).problems()
    assert problem in problems
    assert any("task_token.ttl_seconds" in found for found in problems)
    assert api_settings(task_token_ttl_secs=86400).problems() == []
    assert api_settings(task_token_ttl_secs=1).problems() == []


def test_debug_outside_dev_is_refused() -> None:
    """arco-contract 6.6: debug with a non-dev posture refuses to start."""
    for overrides in (
        {"environment": "staging"},
        {"environment": "prod"},
        {"environment": "dev", "api_public": True},
    ):
        problems = api_settings(debug=True, **overrides).problems()
        assert (
            "ARCO_DEBUG=true requires posture dev (ARCO_ENVIRONMENT=dev, ARCO_API_PUBLIC=false)"
            in problems
        )


def test_missing_user_jwt_config_when_not_debug(tmp_path: Path) -> None:
    """Issue 3: user JWTs need ARCO_JWT_SECRET or ARCO_JWT_PUBLIC_KEY_PEM/_PATH unless debug;
    a key path that is not a file is named."""
    problems = api_settings(jwt_secret="").problems()
    assert problems == [
        "user authentication needs ARCO_JWT_SECRET or ARCO_JWT_PUBLIC_KEY_PEM/_PATH "
        "when ARCO_DEBUG is not true"
    ]
    assert api_settings(jwt_secret="", jwt_public_key_pem="-----BEGIN").problems() == []
    missing = tmp_path / "nope.pem"
    problems = api_settings(jwt_secret="", jwt_public_key_path=str(missing)).problems()
    assert problems == [f"ARCO_JWT_PUBLIC_KEY_PATH={missing} is not a readable file"]


def test_every_problem_is_named_at_once() -> None:
    """Startup names every problem, not just the first."""
    settings = ApiSettings(
        environment="qa",
        debug=True,
        task_token_ttl_secs=0,
        task_token_secret="",
        jwt_secret="",
    )
    problems = settings.problems()
    assert problems == [
        "ARCO_ENVIRONMENT must be one of dev, staging, prod",
        "ARCO_API_PUBLIC must be set to true or false",
        "ARCO_DEBUG=true requires posture dev (ARCO_ENVIRONMENT=dev, ARCO_API_PUBLIC=false)",
        "ARCO_TASK_TOKEN_TTL_SECS=0 must be in 1..86400",
    ]
    strict = ApiSettings(environment="prod", api_public=False, task_token_ttl_secs=0)
    assert strict.problems() == [
        "ARCO_TASK_TOKEN_TTL_SECS=0 must be in 1..86400",
        "task token config invalid when debug=false: task_token.hs256_secret is required "
        "(ARCO_TASK_TOKEN_SECRET, ARCO_TASK_TOKEN_TTL_SECS)",
        "task token config invalid when debug=false: task_token.ttl_seconds must be greater "
        "than 0 (ARCO_TASK_TOKEN_SECRET, ARCO_TASK_TOKEN_TTL_SECS)",
        "task_token.issuer is required outside dev (ARCO_TASK_TOKEN_ISSUER)",
        "task_token.audience is required outside dev (ARCO_TASK_TOKEN_AUDIENCE)",
        "user authentication needs ARCO_JWT_SECRET or ARCO_JWT_PUBLIC_KEY_PEM/_PATH "
        "when ARCO_DEBUG is not true",
    ]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """arco-contract 6.7 "API side": env values are trimmed; the posture comes from
    ARCO_ENVIRONMENT and ARCO_API_PUBLIC (true/1/yes or false/0/no); D8's rotation list is
    comma-separated."""
    for name, value in {
        "ARCO_ENVIRONMENT": " Staging ",
        "ARCO_API_PUBLIC": "0",
        "ARCO_TASK_TOKEN_SECRET": f"  {LONG_TASK_SECRET}  ",
        "ARCO_TASK_TOKEN_ISSUER": "https://issuer.task",
        "ARCO_TASK_TOKEN_AUDIENCE": "arco-worker-callback",
        "ARCO_TASK_TOKEN_TTL_SECS": "1200",
        "ARCO_TASK_TOKEN_PREVIOUS_SECRETS": "old-1, old-2 ,,",
        "ARCO_JWT_SECRET": LONG_JWT_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    settings = ApiSettings()
    assert settings.posture is Posture.PRIVATE
    assert settings.problems() == []
    config = settings.task_token_config()
    assert config.signing_key == LONG_TASK_SECRET.encode()
    assert (config.issuer, config.audience, config.ttl_seconds) == (
        "https://issuer.task",
        "arco-worker-callback",
        1200,
    )
    assert [key.decode() for key in config.verification_keys] == [
        LONG_TASK_SECRET,
        "old-1",
        "old-2",
    ]
    assert LONG_TASK_SECRET not in repr(settings)
    monkeypatch.setenv("ARCO_API_PUBLIC", "yes")
    assert ApiSettings().posture is Posture.PUBLIC


def test_retry_backoff_base_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's 30 s unless ARCO_RETRY_BACKOFF_BASE_SECS says otherwise; the callback
    route hands it to the completion fact (domain code reads no environment)."""
    assert ApiSettings().retry_backoff_base == timedelta(seconds=30)
    monkeypatch.setenv("ARCO_RETRY_BACKOFF_BASE_SECS", "1.5")
    assert ApiSettings().retry_backoff_base == timedelta(seconds=1.5)
    negative = ApiSettings(retry_backoff_base_secs=-1)
    assert "ARCO_RETRY_BACKOFF_BASE_SECS=-1.0 must not be negative" in negative.problems()


def test_config_deserializes_task_token_block() -> None:
    """8.7 #4 `config_deserializes_task_token_block`: the JSON config's `task_token` block
    (camelCase inner keys) is read into the corresponding fields; snake_case inner keys are
    ignored."""
    config = TaskTokenConfig.from_config_block(
        {
            "hs256Secret": "task-secret",
            "issuer": "https://issuer.task",
            "audience": "arco-worker-callback",
            "ttlSeconds": 1200,
            "ttl_seconds": 5,
        }
    )
    assert (config.secret, config.issuer, config.audience, config.ttl_seconds) == (
        "task-secret",
        "https://issuer.task",
        "arco-worker-callback",
        1200,
    )


def test_cli_refuses_to_start_and_names_every_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`arco-api` refuses bad configuration before touching the database or the port, and
    prints every problem."""
    monkeypatch.setattr(cli, "configure_logging", lambda: None)
    monkeypatch.setattr(uvicorn, "run", _never)
    monkeypatch.setenv("ARCO_ENVIRONMENT", "prod")
    monkeypatch.setenv("ARCO_API_PUBLIC", "false")
    monkeypatch.setenv("ARCO_DEBUG", "true")
    assert cli.main() == 2
    err = capsys.readouterr().err
    assert "arco-api: refusing to start:" in err
    assert "ARCO_DEBUG=true requires posture dev" in err
    monkeypatch.setenv("ARCO_DEBUG", "false")
    assert cli.main() == 2
    err = capsys.readouterr().err
    for name in ("ARCO_TASK_TOKEN_SECRET", "ARCO_TASK_TOKEN_ISSUER", "ARCO_TASK_TOKEN_AUDIENCE"):
        assert name in err
    monkeypatch.setenv("ARCO_TASK_TOKEN_TTL_SECS", "many")
    assert cli.main() == 2
    assert "invalid configuration" in capsys.readouterr().err


def test_cli_refuses_a_schema_that_is_not_at_head(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 3: services check at startup that the schema is at head and name the command."""
    monkeypatch.setattr(cli, "configure_logging", lambda: None)
    monkeypatch.setattr(uvicorn, "run", _never)
    settings = {
        "ARCO_ENVIRONMENT": "staging",
        "ARCO_API_PUBLIC": "false",
        "ARCO_TASK_TOKEN_SECRET": LONG_TASK_SECRET,
        "ARCO_TASK_TOKEN_ISSUER": "i",
        "ARCO_TASK_TOKEN_AUDIENCE": "a",
        "ARCO_JWT_SECRET": LONG_JWT_SECRET,
        "ARCO_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert cli.main() == 2
    assert "run `arco-orchestration migrate`" in capsys.readouterr().err


def _never(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("the server must not start")


def test_weak_secrets_are_refused_outside_dev_one_line_each() -> None:
    """Issue 15 finding 3: outside the dev posture a secret shorter than 32 bytes, or the user
    JWT and task-token secrets equal, is a refusal naming the variable; values are not shown."""
    short = api_settings(environment="prod", jwt_secret="x", task_token_secret="y")
    assert short.problems() == [
        "ARCO_JWT_SECRET is 1 bytes; it must be at least 32 bytes outside the dev posture "
        "(ARCO_ENVIRONMENT=dev) (e.g. openssl rand -hex 32)",
        "ARCO_TASK_TOKEN_SECRET is 1 bytes; it must be at least 32 bytes outside the dev "
        "posture (ARCO_ENVIRONMENT=dev) (e.g. openssl rand -hex 32)",
    ]
    same = api_settings(jwt_secret=LONG_TASK_SECRET, task_token_secret=LONG_TASK_SECRET)
    assert same.problems() == [
        "ARCO_JWT_SECRET and ARCO_TASK_TOKEN_SECRET must not be equal: give each its own secret"
    ]
    assert all(LONG_TASK_SECRET not in line for line in same.problems())
    assert api_settings(jwt_secret="a" * 32, task_token_secret="b" * 32).problems() == []


def test_dev_posture_warns_about_weak_secrets_and_starts() -> None:
    dev = api_settings(environment="dev", jwt_secret="x", task_token_secret="x")
    assert dev.posture is Posture.DEV
    assert dev.problems() == []
    assert len(dev.warnings()) == 3
    assert api_settings().warnings() == []


def test_cli_refuses_prod_with_one_character_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's reproduction: `ARCO_ENVIRONMENT=prod ARCO_JWT_SECRET=x
    ARCO_TASK_TOKEN_SECRET=y arco-api` started and was ready; now it refuses."""
    monkeypatch.setattr(cli, "configure_logging", lambda: None)
    monkeypatch.setattr(uvicorn, "run", _never)
    for name, value in {
        "ARCO_ENVIRONMENT": "prod",
        "ARCO_API_PUBLIC": "false",
        "ARCO_JWT_SECRET": "x",
        "ARCO_TASK_TOKEN_SECRET": "y",
        "ARCO_TASK_TOKEN_ISSUER": "i",
        "ARCO_TASK_TOKEN_AUDIENCE": "a",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main() == 2
    err = capsys.readouterr().err
    assert "  - ARCO_JWT_SECRET is 1 bytes; it must be at least 32 bytes" in err
    assert "  - ARCO_TASK_TOKEN_SECRET is 1 bytes; it must be at least 32 bytes" in err
