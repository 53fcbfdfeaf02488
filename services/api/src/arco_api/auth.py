"""User authentication of the run and manifest routes: bearer JWT (HS256 or RS256), or the
debug headers in the dev posture. Task tokens are never accepted here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import cast

import jwt
from fastapi import Request

from arco_api.errors import ApiError, unauthorized
from arco_api.settings import ApiSettings

_STORAGE_ID = re.compile(r"^[a-z0-9_-]+$")
# Seconds of clock skew allowed on exp, nbf and iat (PyJWT's leeway).
LEEWAY_SECS = 60
VERIFIED_TOKENS = 1024


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    workspace_id: str
    user_id: str | None


def storage_id_problem(name: str, value: str) -> str | None:
    """Tenant and workspace ids must be storage ids: lowercase a-z, 0-9, '-', '_'."""
    if not value or not _STORAGE_ID.match(value):
        return f"{name} contains invalid characters (allowed: a-z, 0-9, '-', '_')"
    return None


def bearer_token(request: Request) -> str | None:
    """The token after the case-sensitive ``Bearer `` prefix, or ``None``."""
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :].strip() or None


class UserAuthenticator:
    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._public_key = settings.jwt_public_key()
        # Principals of tokens that passed every check, with their ``exp``; bounded, oldest
        # first out. Verifying the signature and claims again cost more CPU than the rest of
        # a trigger's route, and a client sends the same token on every request. Of the
        # checks, only ``exp`` can fail later for the same token and settings (``nbf`` and
        # ``iat`` only reject tokens from the future), so a hit checks ``exp`` alone. Only
        # tokens that verified are kept, so only the signer can fill it.
        self._verified: dict[str, tuple[Principal, int]] = {}

    def authenticate(self, request: Request) -> Principal:
        settings = self._settings
        if settings.debug_active:
            tenant = request.headers.get("x-tenant-id", "").strip()
            workspace = request.headers.get("x-workspace-id", "").strip()
            if tenant and workspace:
                return self._checked(tenant, workspace, request.headers.get("x-user-id"))
        token = bearer_token(request)
        if token is None:
            raise unauthorized("missing bearer token")
        return self.principal_of_token(token)

    def principal_of_token(self, token: str) -> Principal:
        """The principal of a user JWT alone (never the debug headers); 401 otherwise."""
        verified = self._verified.get(token)
        if verified is not None:
            principal, expires = verified
            # PyJWT's own test and message for an expired token.
            if expires <= time.time() - LEEWAY_SECS:
                self._verified.pop(token, None)
                raise unauthorized("invalid token: ExpiredSignatureError")
            return principal
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, int]:
        settings = self._settings
        claims = self._decode(token)
        tenant_claim = claims.get(settings.jwt_tenant_claim)
        workspace_claim = claims.get(settings.jwt_workspace_claim)
        user = claims.get(settings.jwt_user_claim)
        if not isinstance(tenant_claim, str) or not isinstance(workspace_claim, str):
            raise unauthorized("token lacks tenant/workspace claims")
        principal = self._checked(
            tenant_claim, workspace_claim, user if isinstance(user, str) else None
        )
        # ``exp`` is required, and PyJWT checked that it is an integer.
        return principal, int(cast(int, claims["exp"]))

    def _decode(self, token: str) -> dict[str, object]:
        settings = self._settings
        if self._public_key:
            key, algorithms = self._public_key, ["RS256"]
        elif settings.jwt_secret.get_secret_value():
            key, algorithms = settings.jwt_secret.get_secret_value(), ["HS256"]
        else:
            raise unauthorized("user authentication is not configured")
        options = {"require": ["exp"], "verify_aud": bool(settings.jwt_audience)}
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=settings.jwt_audience or None,
                issuer=settings.jwt_issuer or None,
                options=options,  # type: ignore[arg-type]
                leeway=LEEWAY_SECS,
            )
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {type(exc).__name__}") from None
        # A task token is signed with a different secret, but refuse one outright anyway.
        if "taskId" in claims or "task_id" in claims:
            raise unauthorized("task tokens are not accepted on this route")
        return claims

    @staticmethod
    def _checked(tenant: str, workspace: str, user: str | None) -> Principal:
        for name, value in (("tenant_id", tenant), ("workspace_id", workspace)):
            if problem := storage_id_problem(name, value):
                raise ApiError(400, "BAD_REQUEST", problem)
        # The user id is stored as triggeredBy/deployedBy; PostgreSQL text cannot hold NUL.
        if user is not None and "\x00" in user:
            raise ApiError(400, "BAD_REQUEST", "user id contains a NUL character")
        return Principal(tenant, workspace, user or None)
