"""Dispatch authentication (arco-contract 3.2 item 2), decided from the headers alone so a
request without the secret is refused before its body is read."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from arco_envelope import DISPATCH_SECRET_HEADER

UNAUTHORIZED_MESSAGE = "missing or invalid dispatch authorization"


def _same(provided: str, secret: str) -> bool:
    # compare_digest on bytes: constant time for equal lengths, and no TypeError on
    # non-ASCII header values.
    return hmac.compare_digest(provided.strip().encode(), secret.encode())


def dispatch_authorized(headers: Mapping[str, str], secret: str) -> bool:
    """Whether the request carries the dispatch secret.

    Accepted: ``X-Arco-Dispatch-Secret: <secret>`` or ``Authorization: Bearer <secret>`` (the
    scheme in any case), each trimmed, compared in constant time. An empty configured secret
    accepts nothing. ``headers`` must look names up case-insensitively (Starlette's do).
    """
    secret = secret.strip()
    if not secret:
        return False
    provided = headers.get(DISPATCH_SECRET_HEADER)
    if provided is not None and _same(provided, secret):
        return True
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, space, token = authorization.strip().partition(" ")
        if space and scheme.lower() == "bearer" and _same(token, secret):
            return True
    return False
