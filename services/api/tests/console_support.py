"""Console test helpers: sign in through the login form, read a form's CSRF value."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import user_token

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def sign_in(client: TestClient, token: str | None = None) -> httpx.Response:
    """Log in through the form (fetching its nonce first); the client keeps the cookie."""
    form = client.get("/ui/login")
    assert form.status_code == 200
    response: httpx.Response = client.post(
        "/ui/login",
        data={"token": token or user_token(), "csrf": csrf_of(form), "next": "/ui/runs"},
        follow_redirects=False,
    )
    return response


def signed_in_csrf(client: TestClient) -> str:
    """Sign in and return the session's CSRF token (from the runs page's logout form)."""
    assert sign_in(client).status_code == 303
    return csrf_of(client.get("/ui/runs"))
