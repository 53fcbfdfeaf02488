"""Configuration shared by the dispatcher and the sweeper, from the environment with the
upstream names (arco-orchestration 7.1, arco-contract 6.7, design D11).

``problems()`` names every reason to refuse to start, each with the variable to fix.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arco_envelope.secret_strength import MIN_SECRET_BYTES, weak_secret_problems
from arco_envelope.tokens import (
    MAX_TASK_TOKEN_TTL_SECONDS,
    TASK_TOKEN_CALLBACK_GRACE_SECONDS,
    TaskTokenConfig,
)
from arco_orchestration.scope import Scope

# Cloud Tasks accepts HTTP dispatch deadlines from 15 s to 30 min.
CLOUD_TASKS_MIN_DEADLINE_SECS = 15
CLOUD_TASKS_MAX_DEADLINE_SECS = 1800


class ProviderName(StrEnum):
    """The values of ``ARCO_FLOW_DISPATCH_PROVIDER``."""

    HTTP = "http"
    CLOUDTASKS = "cloudtasks"
    MEMORY = "memory"


def env(name: str, default: Any) -> Any:
    """A settings field read from the environment variable ``name``."""
    return Field(default=default, validation_alias=name)


class FlowSettings(BaseSettings):
    """Settings of both services. Subclasses add their own knobs and port default."""

    model_config = SettingsConfigDict(
        extra="ignore", str_strip_whitespace=True, validate_by_name=True, validate_by_alias=True
    )

    # Only ARCO_ENVIRONMENT=dev is the dev posture; anything else (unset too) is checked as a
    # deployment: strong secrets and a run token are required.
    environment: str = env("ARCO_ENVIRONMENT", "")
    tenant_id: str = env("ARCO_TENANT_ID", "")
    workspace_id: str = env("ARCO_WORKSPACE_ID", "")
    database_url: str = env("ARCO_DATABASE_URL", "")
    http_host: str = env("ARCO_HTTP_HOST", "127.0.0.1")
    http_port: int = env("ARCO_HTTP_PORT", 8081)

    dispatch_target_url: str = env("ARCO_FLOW_DISPATCH_TARGET_URL", "")
    dispatch_target_audience: str = env("ARCO_FLOW_DISPATCH_TARGET_AUDIENCE", "")
    callback_base_url: str = env("ARCO_FLOW_CALLBACK_BASE_URL", "")
    worker_dispatch_secret: SecretStr = env("ARCO_FLOW_WORKER_DISPATCH_SECRET", SecretStr(""))
    # Bearer token that POST /run requires (optional in the dev posture).
    run_token: SecretStr = env("ARCO_FLOW_RUN_TOKEN", SecretStr(""))

    task_token_secret: SecretStr = env("ARCO_FLOW_TASK_TOKEN_SECRET", SecretStr(""))
    task_token_issuer: str = env("ARCO_FLOW_TASK_TOKEN_ISSUER", "")
    task_token_audience: str = env("ARCO_FLOW_TASK_TOKEN_AUDIENCE", "")
    task_token_ttl_secs: int = env("ARCO_FLOW_TASK_TOKEN_TTL_SECS", 3600)
    task_timeout_secs: int = env("ARCO_FLOW_TASK_TIMEOUT_SECS", 1800)

    dispatch_provider: str = env("ARCO_FLOW_DISPATCH_PROVIDER", ProviderName.HTTP.value)
    # http provider: deliveries in flight at once per dispatcher process (asyncio, so a
    # synchronous worker holding its request costs one slot, not a thread).
    dispatch_concurrency: int = env("ARCO_FLOW_DISPATCH_CONCURRENCY", 64)
    delivery_max_attempts: int = env("ARCO_FLOW_DELIVERY_MAX_ATTEMPTS", 10)
    delivery_backoff_min_ms: int = env("ARCO_FLOW_DELIVERY_BACKOFF_MIN_MS", 1000)
    delivery_backoff_max_secs: int = env("ARCO_FLOW_DELIVERY_BACKOFF_MAX_SECS", 300)
    delivery_lease_grace_secs: int = env("ARCO_FLOW_DELIVERY_LEASE_GRACE_SECS", 30)

    # cloudtasks provider
    queue: str = env("ARCO_FLOW_QUEUE", "arco-flow-dispatch")
    gcp_project_id: str = env("ARCO_GCP_PROJECT_ID", "")
    gcp_location: str = env("ARCO_GCP_LOCATION", "")
    service_account_email: str = env("ARCO_FLOW_SERVICE_ACCOUNT_EMAIL", "")

    @field_validator("worker_dispatch_secret", "run_token", "task_token_secret")
    @classmethod
    def _strip_secret(cls, value: SecretStr) -> SecretStr:
        # str_strip_whitespace does not reach SecretStr: trim as for every other value.
        return SecretStr(value.get_secret_value().strip())

    @property
    def dev_posture(self) -> bool:
        """``ARCO_ENVIRONMENT=dev``: weak secrets only warn and ``/run`` may be open."""
        return self.environment.strip().lower() == "dev"

    @property
    def dispatch_secret(self) -> str:
        """The secret the worker expects in ``X-Arco-Dispatch-Secret``."""
        return self.worker_dispatch_secret.get_secret_value()

    @property
    def scope(self) -> Scope:
        """The tenant and workspace this service works for."""
        return Scope(tenant_id=self.tenant_id, workspace_id=self.workspace_id)

    @property
    def provider(self) -> ProviderName:
        """The provider adapter to use."""
        return ProviderName(self.dispatch_provider.lower())

    @property
    def task_timeout(self) -> timedelta:
        """Per-delivery deadline (http) and Cloud Tasks dispatch deadline."""
        return timedelta(seconds=self.task_timeout_secs)

    @property
    def target_audience(self) -> str:
        """OIDC audience: ``ARCO_FLOW_DISPATCH_TARGET_AUDIENCE``, else the target URL."""
        return self.dispatch_target_audience or self.dispatch_target_url

    def task_token_config(self) -> TaskTokenConfig:
        """Signing settings of the scoped task tokens."""
        return TaskTokenConfig(
            secret=self.task_token_secret.get_secret_value(),
            issuer=self.task_token_issuer or None,
            audience=self.task_token_audience or None,
            ttl_seconds=self.task_token_ttl_secs,
        )

    def problems(self) -> list[str]:
        """Every configuration problem; the service refuses to start when there is any."""
        found: list[str] = []
        for name, value in (
            ("ARCO_TENANT_ID", self.tenant_id),
            ("ARCO_WORKSPACE_ID", self.workspace_id),
        ):
            if not value:
                found.append(f"{name} is required")
        for name, value in (
            ("ARCO_FLOW_DISPATCH_TARGET_URL", self.dispatch_target_url),
            ("ARCO_FLOW_CALLBACK_BASE_URL", self.callback_base_url),
        ):
            found.extend(_url_problems(name, value))
        if not self.dispatch_secret:
            found.append("ARCO_FLOW_WORKER_DISPATCH_SECRET must not be empty")
        if not self.dev_posture:
            if not self.run_token.get_secret_value():
                found.append(
                    f"ARCO_FLOW_RUN_TOKEN is required outside the dev posture "
                    f"(ARCO_ENVIRONMENT=dev): the bearer token of POST /run, at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
            found.extend(self.secret_weaknesses())
        found.extend(self._token_problems())
        found.extend(self._provider_problems())
        if not 0 <= self.http_port <= 65535:
            found.append(f"ARCO_HTTP_PORT={self.http_port} must be in 0..65535")
        return found

    def secret_weaknesses(self) -> list[str]:
        """Secrets too short to resist brute force, or one secret used twice: refusals
        outside the dev posture, warnings in it."""
        return weak_secret_problems(
            [
                ("ARCO_FLOW_TASK_TOKEN_SECRET", self.task_token_secret.get_secret_value()),
                ("ARCO_FLOW_WORKER_DISPATCH_SECRET", self.dispatch_secret),
                ("ARCO_FLOW_RUN_TOKEN", self.run_token.get_secret_value()),
            ]
        )

    def warnings(self) -> list[str]:
        """What the dev posture tolerates but a deployment would refuse."""
        return self.secret_weaknesses() if self.dev_posture else []

    def _token_problems(self) -> list[str]:
        found: list[str] = []
        if not self.task_token_secret.get_secret_value():
            found.append("missing ARCO_FLOW_TASK_TOKEN_SECRET")
        if not self.task_token_issuer:
            found.append("ARCO_FLOW_TASK_TOKEN_ISSUER is required (it must match the API)")
        if not self.task_token_audience:
            found.append("ARCO_FLOW_TASK_TOKEN_AUDIENCE is required (it must match the API)")
        ttl, timeout = self.task_token_ttl_secs, self.task_timeout_secs
        if timeout <= 0:
            found.append(f"ARCO_FLOW_TASK_TIMEOUT_SECS={timeout} must be greater than 0")
        if not 0 < ttl <= MAX_TASK_TOKEN_TTL_SECONDS:
            found.append(
                f"ARCO_FLOW_TASK_TOKEN_TTL_SECS={ttl} must be in 1..{MAX_TASK_TOKEN_TTL_SECONDS}"
            )
        needed = timeout + TASK_TOKEN_CALLBACK_GRACE_SECONDS
        if timeout > 0 and ttl < needed:
            found.append(
                f"ARCO_FLOW_TASK_TOKEN_TTL_SECS={ttl} must be >= ARCO_FLOW_TASK_TIMEOUT_SECS "
                f"+ {TASK_TOKEN_CALLBACK_GRACE_SECONDS} = {needed}"
            )
        return found

    def _provider_problems(self) -> list[str]:
        found: list[str] = []
        names = ", ".join(p.value for p in ProviderName)
        if self.dispatch_provider.lower() not in {p.value for p in ProviderName}:
            return [f"ARCO_FLOW_DISPATCH_PROVIDER={self.dispatch_provider} must be one of {names}"]
        if self.provider is ProviderName.HTTP:
            for name, value in (
                ("ARCO_FLOW_DISPATCH_CONCURRENCY", self.dispatch_concurrency),
                ("ARCO_FLOW_DELIVERY_MAX_ATTEMPTS", self.delivery_max_attempts),
                ("ARCO_FLOW_DELIVERY_BACKOFF_MIN_MS", self.delivery_backoff_min_ms),
                ("ARCO_FLOW_DELIVERY_BACKOFF_MAX_SECS", self.delivery_backoff_max_secs),
            ):
                if value < 1:
                    found.append(f"{name}={value} must be at least 1")
            found += not_negative(
                "ARCO_FLOW_DELIVERY_LEASE_GRACE_SECS", self.delivery_lease_grace_secs
            )
        if self.provider is ProviderName.CLOUDTASKS:
            for name, text in (
                ("ARCO_GCP_PROJECT_ID", self.gcp_project_id),
                ("ARCO_GCP_LOCATION", self.gcp_location),
                ("ARCO_FLOW_QUEUE", self.queue),
            ):
                if not text:
                    found.append(f"{name} is required with ARCO_FLOW_DISPATCH_PROVIDER=cloudtasks")
            timeout = self.task_timeout_secs
            if timeout > 0 and not (
                CLOUD_TASKS_MIN_DEADLINE_SECS <= timeout <= CLOUD_TASKS_MAX_DEADLINE_SECS
            ):
                found.append(
                    f"ARCO_FLOW_TASK_TIMEOUT_SECS={timeout} must be in "
                    f"{CLOUD_TASKS_MIN_DEADLINE_SECS}..{CLOUD_TASKS_MAX_DEADLINE_SECS} (the Cloud "
                    "Tasks dispatch deadline) with ARCO_FLOW_DISPATCH_PROVIDER=cloudtasks"
                )
        return found


def _url_problems(name: str, value: str) -> list[str]:
    if not value:
        return [f"{name} is required"]
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"{name}={value} must be an http(s) URL"]
    return []


S = TypeVar("S", bound=FlowSettings)


def load_settings(cls: type[S]) -> tuple[S | None, list[str]]:
    """Read ``cls`` from the environment: the settings and every problem found. A value
    that does not parse is reported under its variable name."""
    try:
        settings = cls()
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(part) for part in error['loc'])}={error.get('input')!s}: {error['msg']}"
            for error in exc.errors()
        ]
    return settings, settings.problems()


def positive(name: str, value: float) -> list[str]:
    """``[problem]`` unless ``value`` (of variable ``name``) is greater than 0."""
    return [] if value > 0 else [f"{name}={value} must be greater than 0"]


def not_negative(name: str, value: float) -> list[str]:
    """``[problem]`` when ``value`` (of variable ``name``) is below 0."""
    return [] if value >= 0 else [f"{name}={value} must not be negative"]
