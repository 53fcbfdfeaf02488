"""The local stack's configuration, preflight checks and checklist helpers."""

from __future__ import annotations

from pathlib import Path

from arco_stack.config import GENERATED_SECRETS, Ports, read_env_file, stack_environment
from arco_stack.preflight import artifact_checks, config_checks
from arco_stack.verification import _went_through


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = stack_environment(tmp_path)
    second = stack_environment(tmp_path)
    for name in GENERATED_SECRETS:
        assert first[name] == second[name]
        assert len(first[name]) >= 32
    assert (tmp_path / "stack.env").stat().st_mode & 0o777 == 0o600
    assert read_env_file(tmp_path / "stack.env")["ARCO_JWT_SECRET"] == first["ARCO_JWT_SECRET"]


def test_a_data_dir_it_creates_is_ignored_by_git(tmp_path: Path) -> None:
    stack_environment(tmp_path / ".arco")
    assert (tmp_path / ".arco" / ".gitignore").read_text().splitlines()[-1] == "*"
    # A folder that already existed is not touched: --data-dir may name any folder.
    stack_environment(tmp_path)
    assert not (tmp_path / ".gitignore").exists()


def test_weak_or_shared_stored_secrets_are_regenerated(tmp_path: Path) -> None:
    """Issue 15 finding 3: the services refuse secrets under 32 bytes or one value in two
    roles outside dev; the stack never hands them such secrets, even from an old stack.env."""
    (tmp_path / "stack.env").write_text(
        "ARCO_JWT_SECRET=x\n"
        f"ARCO_TASK_TOKEN_SECRET={'t' * 40}\n"
        f"ARCO_FLOW_WORKER_DISPATCH_SECRET={'t' * 40}\n"
    )
    env = stack_environment(tmp_path)
    values = [env[name] for name in GENERATED_SECRETS]
    assert len(set(values)) == len(GENERATED_SECRETS)
    assert all(len(value) >= 32 for value in values)
    assert env["ARCO_TASK_TOKEN_SECRET"] == "t" * 40  # a good secret is kept
    assert stack_environment(tmp_path)["ARCO_JWT_SECRET"] == env["ARCO_JWT_SECRET"]


def test_one_configuration_for_every_service(tmp_path: Path) -> None:
    env = stack_environment(tmp_path, ports=Ports(api=9000, worker=9001))
    assert env["ARCO_TASK_TOKEN_SECRET"] == env["ARCO_FLOW_TASK_TOKEN_SECRET"]
    assert env["ARCO_TASK_TOKEN_ISSUER"] == env["ARCO_FLOW_TASK_TOKEN_ISSUER"]
    assert env["ARCO_FLOW_CALLBACK_BASE_URL"] == "http://127.0.0.1:9000"
    assert env["ARCO_FLOW_DISPATCH_TARGET_URL"] == "http://127.0.0.1:9001/dispatch"
    assert env["ARCO_DATABASE_URL"].startswith("sqlite:///")


def test_preflight_passes_on_the_local_configuration(tmp_path: Path) -> None:
    checks = config_checks(stack_environment(tmp_path)) + artifact_checks()
    assert [check.name for check in checks if not check.ok] == []


def test_preflight_names_each_broken_precondition(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    env["ARCO_FLOW_TASK_TOKEN_SECRET"] = "another-secret"
    env["ARCO_FLOW_TASK_TOKEN_ISSUER"] = "someone-else"
    env["ARCO_FLOW_TASK_TOKEN_TTL_SECS"] = "1800"
    del env["ARCO_FLOW_WORKER_DISPATCH_SECRET"]
    failed = {check.name for check in config_checks(env) if not check.ok}
    assert failed == {
        "dispatcher/sweeper: required variables set",
        "worker: required variables set",
        "api and dispatcher agree on the token issuer",
        "api and dispatcher share one token secret (compared by digest)",
        "ARCO_FLOW_TASK_TOKEN_TTL_SECS >= ARCO_FLOW_TASK_TIMEOUT_SECS + 300",
    }
    env["ARCO_JWT_SECRET"] = env["ARCO_FLOW_RUN_TOKEN"]
    [weak] = [check for check in config_checks(env) if check.name.startswith("secrets are")]
    assert not weak.ok
    assert weak.evidence == (
        "ARCO_JWT_SECRET and ARCO_FLOW_RUN_TOKEN must not be equal: give each its own secret"
    )
    assert all(env["ARCO_TASK_TOKEN_SECRET"] not in c.evidence for c in config_checks(env))


def test_a_task_went_through_dispatched_running_terminal() -> None:
    assert _went_through({"attempts": [{"states": ["DISPATCHED", "RUNNING", "SUCCEEDED"]}]})
    assert _went_through(
        {
            "attempts": [
                {"states": ["DISPATCHED", "RUNNING", "RETRY_WAIT"]},
                {"states": ["DISPATCHED", "RUNNING", "FAILED"]},
            ]
        }
    )
    assert not _went_through({"attempts": [{"states": ["DISPATCHED", "SUCCEEDED"]}]})
    assert not _went_through({"attempts": [{"states": ["DISPATCHED", "RUNNING"]}]})


def test_secrets_are_compared_trimmed_as_both_sides_trim(tmp_path: Path) -> None:
    env = stack_environment(tmp_path)
    env["ARCO_FLOW_TASK_TOKEN_SECRET"] = f"  {env['ARCO_TASK_TOKEN_SECRET']}\n"
    shared = [c for c in config_checks(env) if c.name.startswith("api and dispatcher share")]
    assert shared[0].ok
