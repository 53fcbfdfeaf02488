"""Service configuration read from ``ARCO_*`` environment variables (design D11).

Every problem is collected before the service starts, so an operator fixes the whole
configuration in one go instead of one variable per restart.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from arco_envelope.secret_strength import weak_secret_problems

# Set only while load_settings() reads an explicit mapping instead of os.environ.
_EXPLICIT_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar(
    "arco_worker_explicit_environ", default=None
)


DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def _default_worker_id() -> str:
    return f"arco-worker-{socket.gethostname()}-{os.getpid()}"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


class WorkerSettings(BaseSettings):
    """The worker service's configuration. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    dispatch_secret: SecretStr = Field(validation_alias="ARCO_FLOW_WORKER_DISPATCH_SECRET")
    # Only ARCO_ENVIRONMENT=dev is the dev posture, where a weak secret only warns.
    environment: str = Field(default="", validation_alias="ARCO_ENVIRONMENT")
    tenant_id: str = Field(validation_alias="ARCO_FLOW_TENANT_ID")
    workspace_id: str = Field(validation_alias="ARCO_FLOW_WORKSPACE_ID")
    # When set, every envelope's callbackBaseUrl must point at this API (arco-contract 3.2).
    api_url: str | None = Field(default=None, validation_alias="ARCO_FLOW_API_URL")
    http_host: str = Field(default="127.0.0.1", validation_alias="ARCO_HTTP_HOST")
    http_port: int = Field(default=8090, ge=1, le=65535, validation_alias="ARCO_HTTP_PORT")
    concurrency: int = Field(default=4, ge=1, validation_alias="ARCO_WORKER_CONCURRENCY")
    # Several worker processes may listen on one port (SO_REUSEPORT): the kernel spreads
    # the dispatcher's connections over them, so one host uses all its cores.
    reuse_port: bool = Field(default=False, validation_alias="ARCO_WORKER_REUSE_PORT")
    cancel_grace_secs: float = Field(
        default=30.0, ge=0, validation_alias="ARCO_WORKER_CANCEL_GRACE_SECS"
    )
    shutdown_grace_secs: float = Field(
        default=20.0, ge=0, validation_alias="ARCO_WORKER_SHUTDOWN_GRACE_SECS"
    )
    first_heartbeat_secs: float = Field(
        default=0.5, ge=0, validation_alias="ARCO_WORKER_FIRST_HEARTBEAT_SECS"
    )
    sample_tasks: bool = Field(default=False, validation_alias="ARCO_WORKER_SAMPLE_TASKS")
    # The largest /dispatch body read (an envelope is a few KB; its payload is the task's).
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1, validation_alias="ARCO_WORKER_MAX_BODY_BYTES"
    )
    # Upload each attempt's stdout, stderr and log records to the API with its task token.
    upload_logs: bool = Field(default=True, validation_alias="ARCO_WORKER_UPLOAD_LOGS")
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias="ARCO_WORKER_ID")
    log_level: str = Field(default="info", validation_alias="ARCO_LOG_LEVEL")

    @field_validator("dispatch_secret", mode="after")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr) -> SecretStr:
        # The dispatcher trims the secret it sends, so the worker compares trimmed values.
        return SecretStr(_not_blank(value.get_secret_value()))

    @field_validator("tenant_id", "workspace_id", "worker_id", "http_host", mode="after")
    @classmethod
    def _trimmed_not_blank(cls, value: str) -> str:
        return _not_blank(value)

    @field_validator("api_url", mode="before")
    @classmethod
    def _api_url_is_http(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            parts = urlsplit(value.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL such as https://api.example")
            return value.strip()
        return value

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read init arguments and the environment only (no dotenv or secret files)."""
        explicit = _EXPLICIT_ENVIRON.get()
        if explicit is not None:
            return (init_settings, _MappingSource(settings_cls, explicit))
        return (init_settings, env_settings)

    @property
    def dispatch_secret_value(self) -> str:
        """The trimmed dispatch secret."""
        return self.dispatch_secret.get_secret_value()

    @property
    def dev_posture(self) -> bool:
        """``ARCO_ENVIRONMENT=dev``: a weak dispatch secret only warns."""
        return self.environment.strip().lower() == "dev"

    def secret_weaknesses(self) -> list[str]:
        """A dispatch secret too short to resist brute force."""
        return weak_secret_problems(
            [("ARCO_FLOW_WORKER_DISPATCH_SECRET", self.dispatch_secret_value)]
        )

    def problems(self) -> list[str]:
        """What refuses the start beyond single values: weak secrets outside the dev posture."""
        return [] if self.dev_posture else self.secret_weaknesses()

    def warnings(self) -> list[str]:
        """What the dev posture tolerates but a deployment would refuse."""
        return self.secret_weaknesses() if self.dev_posture else []


class _MappingSource(PydanticBaseSettingsSource):
    """Reads the environment variable names from a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        alias = field.validation_alias
        name = alias if isinstance(alias, str) else field_name
        return self._environ.get(name), name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[name] = value
        return values


class SettingsError(Exception):
    """The configuration is unusable; ``problems`` names every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid worker configuration: " + "; ".join(problems))


@contextmanager
def _reading(environ: Mapping[str, str] | None) -> Iterator[None]:
    token = _EXPLICIT_ENVIRON.set(environ)
    try:
        yield
    finally:
        _EXPLICIT_ENVIRON.reset(token)


def load_settings(environ: Mapping[str, str] | None = None) -> WorkerSettings:
    """Read and validate the configuration from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` listing every problem, each prefixed by its variable name;
    values are never echoed, because one of them is a secret.
    """
    try:
        with _reading(environ):
            settings = WorkerSettings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or "configuration"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            problems.append(f"{name}: {message}")
        raise SettingsError(problems) from None
    if problems := settings.problems():
        raise SettingsError(problems)
    return settings
