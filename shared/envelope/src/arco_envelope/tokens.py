"""Per-attempt task tokens: HS256 JWTs with upstream's claims and checks (section 6),
hardened as in design decision D8.

The JWS layer is written against the standard library on purpose: upstream accepts any
HMAC key length and has its own temporal and claim semantics (60 s leeway with strict
boundaries, no ``iat`` check, string-only ``aud``), which a general JWT library would have to
be bent to reproduce. The rules live here, each checked explicitly and in upstream's order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, StrictStr, ValidationError

from arco_envelope.wire import U64, WireModel, canonical_json

DEFAULT_TASK_TOKEN_TTL_SECONDS = 3600
DEFAULT_DISPATCH_TASK_TIMEOUT_SECONDS = 1800
TASK_TOKEN_CALLBACK_GRACE_SECONDS = 300
MAX_TASK_TOKEN_TTL_SECONDS = 86400
LEEWAY_SECONDS = 60

_HEADER = canonical_json({"typ": "JWT", "alg": "HS256"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class TaskTokenConfigError(ValueError):
    """The task-token configuration is unusable; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class InvalidTaskToken(ValueError):  # noqa: N818 - upstream's error name
    """A task token that failed decoding or validation.

    ``reason`` names the failure like upstream's jsonwebtoken error kinds (``ExpiredSignature``,
    ``InvalidSignature``, ``InvalidAudience``, ...); ``str()`` gives upstream's 401 message.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail or reason
        super().__init__(f"invalid input: invalid task token: {self.detail}")


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


@dataclass(frozen=True)
class TaskTokenConfig:
    """Signing and verification settings. Secrets are trimmed; ``previous_secrets`` verify
    tokens signed before a rotation, while signing always uses ``secret``."""

    secret: str = field(repr=False)
    issuer: str | None = None
    audience: str | None = None
    ttl_seconds: int = DEFAULT_TASK_TOKEN_TTL_SECONDS
    previous_secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_config_block(cls, block: dict[str, Any]) -> TaskTokenConfig:
        """Read upstream's ``task_token`` JSON config block (camelCase inner keys;
        snake_case inner keys are ignored, as upstream does)."""
        return cls(
            secret=str(block.get("hs256Secret", "")),
            issuer=block.get("issuer"),
            audience=block.get("audience"),
            ttl_seconds=int(block.get("ttlSeconds", DEFAULT_TASK_TOKEN_TTL_SECONDS)),
        )

    @property
    def signing_key(self) -> bytes:
        return self.secret.strip().encode()

    @property
    def verification_keys(self) -> list[bytes]:
        keys = [self.signing_key]
        keys.extend(s.strip().encode() for s in self.previous_secrets if s.strip())
        return keys

    def problems(self) -> list[str]:
        """Every reason upstream's ``validate()`` would refuse this config."""
        found: list[str] = []
        if _blank(self.secret):
            found.append("task_token.hs256_secret is required")
        if self.ttl_seconds <= 0:
            found.append("task_token.ttl_seconds must be greater than 0")
        elif self.ttl_seconds > MAX_TASK_TOKEN_TTL_SECONDS:
            found.append(f"task_token.ttl_seconds must be at most {MAX_TASK_TOKEN_TTL_SECONDS}")
        return found

    def validate(self) -> None:
        """Raise :class:`TaskTokenConfigError` unless the secret is set and 1 <= ttl <= 86400."""
        if found := self.problems():
            raise TaskTokenConfigError(found)


def dispatch_problems(config: TaskTokenConfig, task_timeout_secs: int) -> list[str]:
    """Every reason a dispatcher must refuse this config (``validate_for_dispatch``)."""
    found = config.problems()
    if task_timeout_secs <= 0:
        found.append("task timeout must be greater than 0")
    if _blank(config.issuer):
        found.append("task_token.issuer is required for dispatch")
    if _blank(config.audience):
        found.append("task_token.audience is required for dispatch")
    needed = task_timeout_secs + TASK_TOKEN_CALLBACK_GRACE_SECONDS
    if config.ttl_seconds < needed:
        found.append(
            f"task_token.ttl_seconds={config.ttl_seconds} must be >= task timeout "
            f"{task_timeout_secs} + {TASK_TOKEN_CALLBACK_GRACE_SECONDS} = {needed}"
        )
    return found


def validate_for_dispatch(config: TaskTokenConfig, task_timeout_secs: int) -> None:
    """Raise :class:`TaskTokenConfigError` unless the config can mint dispatch tokens:
    ``validate()`` passes, the timeout is positive, issuer and audience are set, and
    ``ttl_seconds >= task_timeout_secs + 300``."""
    if found := dispatch_problems(config, task_timeout_secs):
        raise TaskTokenConfigError(found)


_CLAIM_ALIASES: dict[str, tuple[str, ...]] = {
    "taskId": ("task_id",),
    "tenantId": ("tenant_id", "tenant"),
    "workspaceId": ("workspace_id", "workspace"),
    "runId": ("run_id",),
    "attemptId": ("attempt_id",),
}


class TaskTokenClaims(WireModel):
    """The claims of a task token, camelCase with upstream's read aliases."""

    task_id: StrictStr = Field(validation_alias=AliasChoices("taskId", "task_id"))
    tenant_id: StrictStr = Field(validation_alias=AliasChoices("tenantId", "tenant_id", "tenant"))
    workspace_id: StrictStr = Field(
        validation_alias=AliasChoices("workspaceId", "workspace_id", "workspace")
    )
    run_id: StrictStr | None = Field(default=None, validation_alias=AliasChoices("runId", "run_id"))
    attempt: U64 | None = None
    attempt_id: StrictStr | None = Field(
        default=None, validation_alias=AliasChoices("attemptId", "attempt_id")
    )
    exp: U64
    nbf: U64 | None = None
    iat: U64 | None = None
    iss: StrictStr | None = None
    aud: StrictStr | None = None

    _legacy_aliases: ClassVar[dict[str, tuple[str, ...]]] = _CLAIM_ALIASES

    @property
    def is_scoped(self) -> bool:
        """Whether the token carries the run/attempt scope claims."""
        return self.run_id is not None and self.attempt is not None and self.attempt_id is not None


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: non-zero trailing bits are rejected, as upstream does, so
    one set of claims has exactly one valid token string."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("invalid base64url segment")
    decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64url_encode(decoded) != text:
        raise ValueError("non-canonical base64url segment")
    return decoded


def _utc_now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def mint_task_token(
    config: TaskTokenConfig,
    *,
    task_id: str,
    tenant_id: str,
    workspace_id: str,
    run_id: str | None = None,
    attempt: int | None = None,
    attempt_id: str | None = None,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """Mint a task token; returns ``(token, expires_at)``.

    ``expires_at`` is ``now + ttl`` at full precision (it becomes ``tokenExpiresAt``); the
    ``exp`` claim is its floor. Pass ``run_id``, ``attempt`` and ``attempt_id`` for the scoped
    token every dispatch uses; without them the token is upstream's legacy unscoped form.
    """
    config.validate()
    moment = _utc_now(now)
    issued = math.floor(moment.timestamp())
    claims: dict[str, Any] = {"taskId": task_id, "tenantId": tenant_id, "workspaceId": workspace_id}
    if run_id is not None:
        claims["runId"] = run_id
    if attempt is not None:
        claims["attempt"] = attempt
    if attempt_id is not None:
        claims["attemptId"] = attempt_id
    claims.update(exp=issued + config.ttl_seconds, nbf=issued, iat=issued)
    if not _blank(config.issuer):
        claims["iss"] = config.issuer
    if not _blank(config.audience):
        claims["aud"] = config.audience
    header_b64 = _b64url_encode(_HEADER.encode())
    signing_input = f"{header_b64}.{_b64url_encode(canonical_json(claims).encode())}"
    signature = hmac.new(config.signing_key, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64url_encode(signature)}"
    return token, moment + timedelta(seconds=config.ttl_seconds)


def _check_times(claims: TaskTokenClaims, now: datetime | None) -> None:
    """The checks of a token that depend on the time: ``exp`` then ``nbf``, 60 s leeway."""
    current = math.floor(_utc_now(now).timestamp())
    if claims.exp < current - LEEWAY_SECONDS:
        raise InvalidTaskToken("ExpiredSignature")
    if claims.nbf is not None and claims.nbf > current + LEEWAY_SECONDS:
        raise InvalidTaskToken("ImmatureSignature")


def _verify_signature(config: TaskTokenConfig, token: str) -> bytes:
    segments = token.split(".")
    if len(segments) != 3:
        raise InvalidTaskToken("InvalidToken")
    header_b64, claims_b64, signature_b64 = segments
    try:
        header = json.loads(_b64url_decode(header_b64))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidTaskToken("InvalidToken") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidTaskToken("InvalidAlgorithm")
    try:
        signature = _b64url_decode(signature_b64)
        claims_raw = _b64url_decode(claims_b64)
    except (ValueError, binascii.Error):
        raise InvalidTaskToken("InvalidSignature") from None
    signing_input = f"{header_b64}.{claims_b64}".encode()
    for key in config.verification_keys:
        expected = hmac.new(key, signing_input, hashlib.sha256).digest()
        if hmac.compare_digest(expected, signature):
            return claims_raw
    raise InvalidTaskToken("InvalidSignature")


def verify_task_token(
    config: TaskTokenConfig, token: str, *, now: datetime | None = None
) -> TaskTokenClaims:
    """Decode and validate a task token (cryptographic and temporal checks of section 6.4 A).

    Order: config valid, HS256 only, signature (current then previous secrets), claim schema,
    ``exp < now - 60`` expired, ``nbf > now + 60`` immature, then issuer and audience. With an
    issuer or audience configured, a token lacking ``iss`` or ``aud`` is rejected (D8).
    Raises :class:`InvalidTaskToken`. Scope checks against a task are the caller's.
    """
    if found := config.problems():
        raise InvalidTaskToken("InvalidConfig", "; ".join(found))
    claims_raw = _verify_signature(config, token)
    try:
        claims = TaskTokenClaims.from_json(claims_raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "claims"
        raise InvalidTaskToken("Json", f"JSON error: {where}: {first['msg']}") from None
    _check_times(claims, now)
    if not _blank(config.issuer):
        if claims.iss is None:
            raise InvalidTaskToken("MissingRequiredClaim", "Missing required claim: iss")
        if claims.iss != config.issuer:
            raise InvalidTaskToken("InvalidIssuer")
    if claims.aud is not None and (_blank(config.audience) or claims.aud != config.audience):
        raise InvalidTaskToken("InvalidAudience")
    if claims.aud is None and not _blank(config.audience):
        raise InvalidTaskToken("MissingRequiredClaim", "Missing required claim: aud")
    return claims


VERIFIED_TASK_TOKENS = 4096


class TaskTokenVerifier:
    """:func:`verify_task_token` that remembers the claims of tokens that passed every check.

    A worker sends the same token at ``/started``, each heartbeat and ``/completed``, and
    decoding, the HMAC and the claim schema cost a callback more CPU than its HTTP handling.
    For one token and one config, only the time checks (``exp``, ``nbf``) can answer
    differently later, so a hit runs those alone, in the same order and with the same
    errors; every other check gave the same answer when the token was stored. Only tokens
    that verified are kept (only the signer can fill it), at most ``size``, oldest first
    out; a different config empties it. Not locked: the API calls it from its event loop.
    """

    def __init__(self, size: int = VERIFIED_TASK_TOKENS) -> None:
        self._size = size
        self._config: TaskTokenConfig | None = None
        self._verified: dict[str, TaskTokenClaims] = {}

    def verify(
        self, config: TaskTokenConfig, token: str, *, now: datetime | None = None
    ) -> TaskTokenClaims:
        """The claims of ``token`` as :func:`verify_task_token` returns them, with the same
        ``InvalidTaskToken`` errors; a token verified before is checked for its times only."""
        if config is not self._config:
            self._verified.clear()
            self._config = config
        claims = self._verified.get(token)
        if claims is not None:
            _check_times(claims, now)
            return claims
        claims = verify_task_token(config, token, now=now)
        if len(self._verified) >= self._size:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = claims
        return claims
