"""The runbook's Preconditions and deploy-order gates as checks over the services'
configuration (an env file or the environment). Secrets are compared, never printed."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import httpx

from arco_envelope import DISPATCH_SECRET_HEADER, WorkerDispatchEnvelope, callback_task_id
from arco_envelope.secret_strength import weak_secret_problems
from arco_stack.verification import CANONICAL_ENVELOPE_KEYS, Check

API_REQUIRED = (
    "ARCO_TASK_TOKEN_SECRET",
    "ARCO_TASK_TOKEN_ISSUER",
    "ARCO_TASK_TOKEN_AUDIENCE",
    "ARCO_TASK_TOKEN_TTL_SECS",
)
DISPATCH_REQUIRED = (
    "ARCO_TENANT_ID",
    "ARCO_WORKSPACE_ID",
    "ARCO_FLOW_CALLBACK_BASE_URL",
    "ARCO_FLOW_DISPATCH_TARGET_URL",
    "ARCO_FLOW_WORKER_DISPATCH_SECRET",
    "ARCO_FLOW_TASK_TOKEN_SECRET",
    "ARCO_FLOW_TASK_TOKEN_ISSUER",
    "ARCO_FLOW_TASK_TOKEN_AUDIENCE",
)
WORKER_REQUIRED = (
    "ARCO_FLOW_WORKER_DISPATCH_SECRET",
    "ARCO_FLOW_TENANT_ID",
    "ARCO_FLOW_WORKSPACE_ID",
)
DEFAULT_TTL = 3600
DEFAULT_TIMEOUT = 1800
CALLBACK_GRACE = 300
# A pre-envelope dispatch body (the legacy scheduler's shape): workers must refuse it.
LEGACY_PAYLOAD = {"task_key": "demo.sleep", "run_id": "preflight", "attempt": 1}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _int(env: Mapping[str, str], name: str, default: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    return int(raw) if raw.isdigit() else None


def config_checks(env: Mapping[str, str]) -> list[Check]:
    checks: list[Check] = []
    for group, names in (
        ("api", API_REQUIRED),
        ("dispatcher/sweeper", DISPATCH_REQUIRED),
        ("worker", WORKER_REQUIRED),
    ):
        missing = [name for name in names if not env.get(name, "").strip()]
        checks.append(Check(f"{group}: required variables set", not missing, f"missing={missing}"))
    for what, api_name, flow_name in (
        ("issuer", "ARCO_TASK_TOKEN_ISSUER", "ARCO_FLOW_TASK_TOKEN_ISSUER"),
        ("audience", "ARCO_TASK_TOKEN_AUDIENCE", "ARCO_FLOW_TASK_TOKEN_AUDIENCE"),
    ):
        same = env.get(api_name, "").strip() == env.get(flow_name, "").strip()
        checks.append(
            Check(
                f"api and dispatcher agree on the token {what}", same, f"{api_name} vs {flow_name}"
            )
        )
    # Both sides trim their secret (design D8), so compare the trimmed values.
    api_secret = env.get("ARCO_TASK_TOKEN_SECRET", "").strip()
    flow_secret = env.get("ARCO_FLOW_TASK_TOKEN_SECRET", "").strip()
    checks.append(
        Check(
            "api and dispatcher share one token secret (compared by digest)",
            bool(api_secret) and _digest(api_secret) == _digest(flow_secret),
            "secrets not printed",
        )
    )
    # The API shares the task-token secret with the dispatcher on purpose: compare the others.
    weak = weak_secret_problems(
        [
            (name, env.get(name, ""))
            for name in (
                "ARCO_JWT_SECRET",
                "ARCO_TASK_TOKEN_SECRET",
                "ARCO_FLOW_WORKER_DISPATCH_SECRET",
                "ARCO_FLOW_RUN_TOKEN",
            )
        ]
    )
    checks.append(
        Check(
            "secrets are at least 32 bytes and distinct (required outside the dev posture)",
            not weak,
            "; ".join(weak) or "secrets not printed",
        )
    )
    ttl = _int(env, "ARCO_FLOW_TASK_TOKEN_TTL_SECS", DEFAULT_TTL)
    timeout = _int(env, "ARCO_FLOW_TASK_TIMEOUT_SECS", DEFAULT_TIMEOUT)
    ok = ttl is not None and timeout is not None and ttl >= timeout + CALLBACK_GRACE
    checks.append(
        Check(
            "ARCO_FLOW_TASK_TOKEN_TTL_SECS >= ARCO_FLOW_TASK_TIMEOUT_SECS + 300",
            ok,
            f"ttl={ttl} timeout={timeout}",
        )
    )
    provider = env.get("ARCO_FLOW_DISPATCH_PROVIDER", "http").strip() or "http"
    checks.append(
        Check(
            "dispatch provider emits the canonical envelope",
            provider in ("http", "cloudtasks"),
            f"ARCO_FLOW_DISPATCH_PROVIDER={provider}",
        )
    )
    return checks


def artifact_checks() -> list[Check]:
    """Nothing installed can emit a legacy payload (design D12)."""
    legacy = [
        name
        for name in ("arco_dispatcher.legacy", "arco_dispatch.legacy", "arco_flow.scheduler")
        if importlib.util.find_spec(name.split(".")[0]) is not None
        and importlib.util.find_spec(name) is not None
    ]
    sample = WorkerDispatchEnvelope(
        tenant_id="t",
        workspace_id="w",
        task_id=callback_task_id("r", "k"),
        task_key="k",
        run_id="r",
        attempt=1,
        attempt_id="a",
        dispatch_id="dispatch:r:k:1",
        worker_queue="default-queue",
        callback_base_url="http://api",
        task_token="x",  # noqa: S106 - a placeholder
        token_expires_at=datetime.now(UTC) + timedelta(hours=1),
    ).to_dict()
    return [
        Check("no legacy dispatch module installed", not legacy, f"found={legacy}"),
        Check(
            "envelope writer emits only canonical keys",
            set(sample) <= CANONICAL_ENVELOPE_KEYS,
            f"keys={sorted(sample)}",
        ),
    ]


def live_checks(env: Mapping[str, str], *, timeout: float = 5.0) -> list[Check]:
    checks: list[Check] = []
    base = env.get("ARCO_FLOW_CALLBACK_BASE_URL", "").rstrip("/")
    try:
        health = httpx.get(f"{base}/health", timeout=timeout)
        checks.append(
            Check(
                "callback base URL answers",
                health.status_code == 200,
                f"{base}/health -> {health.status_code}",
            )
        )
        task_id = callback_task_id("preflight", "preflight")
        bad = httpx.post(
            f"{base}/api/v1/tasks/{task_id}/started",
            json={"attempt": 1, "attemptId": "preflight", "workerId": "preflight"},
            headers={"Authorization": "Bearer not-a-valid-token"},
            timeout=timeout,
        )
        checks.append(
            Check(
                "a callback with an invalid token gets 401",
                bad.status_code == 401,
                f"status={bad.status_code}",
            )
        )
    except httpx.HTTPError as exc:
        checks.append(Check("callback base URL answers", False, f"{base}: {exc}"))
    target = env.get("ARCO_FLOW_DISPATCH_TARGET_URL", "")
    secret = env.get("ARCO_FLOW_WORKER_DISPATCH_SECRET", "").strip()
    try:
        legacy = httpx.post(
            target, json=LEGACY_PAYLOAD, headers={DISPATCH_SECRET_HEADER: secret}, timeout=timeout
        )
        checks.append(
            Check(
                "worker dispatch endpoint rejects a legacy payload with 400",
                legacy.status_code == 400,
                f"{target} -> {legacy.status_code}",
            )
        )
    except httpx.HTTPError as exc:
        checks.append(Check("worker dispatch endpoint answers", False, f"{target}: {exc}"))
    return checks
