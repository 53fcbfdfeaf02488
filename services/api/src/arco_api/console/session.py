"""Console sign-in: a user JWT kept in an HttpOnly, SameSite=Strict cookie, and CSRF tokens.

The cookie holds the JWT itself, checked on every request exactly as the API checks a bearer
token (signature, expiry, tenant and workspace claims), in every posture: the dev posture's
debug headers never open the console. Tenant and workspace come from the token.

CSRF: every state-changing form carries a token derived from the session (an HMAC keyed by
the JWT, which a page of another site cannot read), and a request whose ``Origin`` names
another host is refused. The login form, before any session exists, carries a random value
that must match a short-lived cookie set with the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from fastapi import Request
from starlette.responses import Response

from arco_api.auth import Principal
from arco_api.context import api_context
from arco_api.errors import ApiError
from arco_orchestration.scope import Scope

SESSION_COOKIE = "arco_console"
LOGIN_COOKIE = "arco_console_login"
COOKIE_PATH = "/ui"
LOGIN_FORM_SECONDS = 1800
_CSRF_CONTEXT = b"arco-console-csrf-v1"


class LoginRequired(Exception):  # noqa: N818 - reads as a sentence
    """No valid session: pages redirect to the login page, live fragments answer 401."""


class CsrfRefused(Exception):  # noqa: N818 - reads as a sentence
    """A state-changing request without a valid CSRF token, or from another origin."""


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    token: str

    @property
    def scope(self) -> Scope:
        return Scope(self.principal.tenant_id, self.principal.workspace_id)

    @property
    def csrf_token(self) -> str:
        return csrf_token_of(self.token)


def csrf_token_of(token: str) -> str:
    return hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def verify_token(request: Request, token: str) -> Principal:
    """The principal of ``token``; :class:`ApiError` 401/400 when the API would refuse it."""
    return api_context(request).users.principal_of_token(token)


def current_session(request: Request) -> ConsoleSession:
    """The signed-in user of this request; :class:`LoginRequired` otherwise."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise LoginRequired("not signed in")
    try:
        principal = verify_token(request, token)
    except ApiError as error:
        raise LoginRequired(error.message) from None
    request.state.principal = principal
    return ConsoleSession(principal, token)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def seconds_left(token: str) -> int:
    """Until the (already verified) token expires: the session cookie lives no longer."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(0, int(claims["exp"]) - int(time.time()))


def start_session(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=seconds_left(token),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def remember_login_nonce(request: Request, response: Response, nonce: str) -> None:
    """The login form's value, kept in a cookie its submission must match."""
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_FORM_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _same_origin(request: Request) -> bool:
    """A browser names the page's origin on every cross-site POST; no header is a client
    that is not a browser page (curl), which holds no cookie of ours unless given one."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def check_login_csrf(request: Request, submitted: str) -> None:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not _same_origin(request) or not expected:
        raise CsrfRefused("the login form expired or came from another site; reload it")
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfRefused("the login form expired or came from another site; reload it")


def check_csrf(request: Request, session: ConsoleSession, submitted: str) -> None:
    if not _same_origin(request):
        raise CsrfRefused("request from another site refused")
    if not hmac.compare_digest(session.csrf_token.encode(), submitted.encode()):
        raise CsrfRefused("missing or invalid CSRF token; reload the page and try again")
