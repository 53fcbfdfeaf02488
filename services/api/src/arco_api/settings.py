"""API configuration from the environment (upstream names, arco-contract 6.7 and
arco-orchestration 7.3). ``problems()`` names every reason to refuse to start."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from arco_envelope import MIN_HEARTBEAT_TIMEOUT_SECS
from arco_envelope.secret_strength import weak_secret_problems
from arco_envelope.tokens import MAX_TASK_TOKEN_TTL_SECONDS, TaskTokenConfig
from arco_orchestration.states import RETRY_BACKOFF_BASE

CALLBACK_BODY_LIMIT = 2 * 1024 * 1024
MANIFEST_BODY_LIMIT = 10 * 1024 * 1024


class Posture(StrEnum):
    DEV = "dev"
    PRIVATE = "private"
    PUBLIC = "public"


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARCO_", extra="ignore", str_strip_whitespace=True)

    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    environment: str = ""
    api_public: bool | None = None
    debug: bool = False
    code_version: str = ""

    # Secrets are SecretStr so that no repr, log line or validation error shows them.
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key_pem: str = ""
    jwt_public_key_path: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_tenant_claim: str = "tenant"
    jwt_workspace_claim: str = "workspace"
    jwt_user_claim: str = "sub"

    task_token_secret: SecretStr = SecretStr("")
    task_token_issuer: str = ""
    task_token_audience: str = ""
    task_token_ttl_secs: int = 3600
    # Design D8: comma-separated secrets still accepted during a rotation.
    task_token_previous_secrets: SecretStr = SecretStr("")

    # Heartbeat timeout planned for every task (upstream: 300 s, floor 30 s). Tests and demos
    # shorten it so the sweeper reaps a silent worker quickly.
    task_heartbeat_timeout_secs: int = 300
    # ARCO_RETRY_BACKOFF_BASE_SECS: the first retry's wait after a failed attempt (upstream:
    # 30 s, doubling per attempt, capped at 15 min). Demos and end-to-end tests shorten it.
    retry_backoff_base_secs: float = RETRY_BACKOFF_BASE.total_seconds()

    callback_body_limit: int = Field(default=CALLBACK_BODY_LIMIT)
    manifest_body_limit: int = Field(default=MANIFEST_BODY_LIMIT)

    @field_validator("jwt_secret", "task_token_secret", "task_token_previous_secrets")
    @classmethod
    def _strip_secret(cls, value: SecretStr) -> SecretStr:
        # str_strip_whitespace does not reach SecretStr: trim as for every other value.
        return SecretStr(value.get_secret_value().strip())

    @field_validator("environment")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @property
    def posture(self) -> Posture | None:
        if self.api_public:
            return Posture.PUBLIC
        if self.environment == "dev" and self.api_public is False:
            return Posture.DEV
        if self.environment in ("staging", "prod") and self.api_public is False:
            return Posture.PRIVATE
        return None

    @property
    def debug_active(self) -> bool:
        """Debug headers are honoured only with ARCO_DEBUG=true and the dev posture."""
        return self.debug and self.posture is Posture.DEV

    def task_token_config(self) -> TaskTokenConfig:
        previous = self.task_token_previous_secrets.get_secret_value()
        return TaskTokenConfig(
            secret=self.task_token_secret.get_secret_value(),
            issuer=self.task_token_issuer or None,
            audience=self.task_token_audience or None,
            ttl_seconds=self.task_token_ttl_secs,
            previous_secrets=tuple(s for s in previous.split(",") if s.strip()),
        )

    def secret_weaknesses(self) -> list[str]:
        """Secrets too short to resist brute force, or one secret used twice: refusals
        outside the dev posture, warnings in it."""
        return weak_secret_problems(
            [
                ("ARCO_JWT_SECRET", self.jwt_secret.get_secret_value()),
                ("ARCO_TASK_TOKEN_SECRET", self.task_token_secret.get_secret_value()),
            ]
        )

    def warnings(self) -> list[str]:
        """What the dev posture tolerates but a deployment would refuse."""
        return self.secret_weaknesses() if self.posture is Posture.DEV else []

    @property
    def retry_backoff_base(self) -> timedelta:
        return timedelta(seconds=self.retry_backoff_base_secs)

    def jwt_public_key(self) -> str:
        if self.jwt_public_key_pem:
            return self.jwt_public_key_pem
        if self.jwt_public_key_path:
            return Path(self.jwt_public_key_path).read_text(encoding="utf-8")
        return ""

    def problems(self) -> list[str]:
        """Every configuration problem; the service refuses to start when there is any."""
        found: list[str] = []
        if self.environment not in ("dev", "staging", "prod"):
            found.append("ARCO_ENVIRONMENT must be one of dev, staging, prod")
        if self.api_public is None:
            found.append("ARCO_API_PUBLIC must be set to true or false")
        if self.debug and self.posture is not Posture.DEV:
            found.append(
                "ARCO_DEBUG=true requires posture dev (ARCO_ENVIRONMENT=dev, ARCO_API_PUBLIC=false)"
            )
        if not 0 < self.task_token_ttl_secs <= MAX_TASK_TOKEN_TTL_SECONDS:
            found.append(
                f"ARCO_TASK_TOKEN_TTL_SECS={self.task_token_ttl_secs} "
                f"must be in 1..{MAX_TASK_TOKEN_TTL_SECONDS}"
            )
        if not self.debug:
            for problem in self.task_token_config().problems():
                found.append(
                    f"task token config invalid when debug=false: {problem} "
                    "(ARCO_TASK_TOKEN_SECRET, ARCO_TASK_TOKEN_TTL_SECS)"
                )
            if self.posture is not Posture.DEV:
                if not self.task_token_issuer:
                    found.append(
                        "task_token.issuer is required outside dev (ARCO_TASK_TOKEN_ISSUER)"
                    )
                if not self.task_token_audience:
                    found.append(
                        "task_token.audience is required outside dev (ARCO_TASK_TOKEN_AUDIENCE)"
                    )
            if self.posture is not Posture.DEV:
                found.extend(self.secret_weaknesses())
            if (
                not self.jwt_secret.get_secret_value()
                and not self.jwt_public_key_pem
                and not self.jwt_public_key_path
            ):
                found.append(
                    "user authentication needs ARCO_JWT_SECRET or ARCO_JWT_PUBLIC_KEY_PEM/_PATH "
                    "when ARCO_DEBUG is not true"
                )
        if self.task_heartbeat_timeout_secs < MIN_HEARTBEAT_TIMEOUT_SECS:
            found.append(
                f"ARCO_TASK_HEARTBEAT_TIMEOUT_SECS={self.task_heartbeat_timeout_secs} "
                f"must be >= {MIN_HEARTBEAT_TIMEOUT_SECS}"
            )
        if self.retry_backoff_base_secs < 0:
            found.append(
                f"ARCO_RETRY_BACKOFF_BASE_SECS={self.retry_backoff_base_secs} must not be negative"
            )
        if self.jwt_public_key_path and not Path(self.jwt_public_key_path).is_file():
            found.append(
                f"ARCO_JWT_PUBLIC_KEY_PATH={self.jwt_public_key_path} is not a readable file"
            )
        return found
