"""How the callback client's POSTs reach the API: one small interface, two implementations.

:class:`AiohttpTransport` is what the worker service uses. Per request it costs a fraction of
the CPU of httpx (whose connection pool walks every connection, asking each socket whether it
is still usable, and whose anyio layer checks the current task several times per request),
and at a few callbacks per task that was most of the worker's CPU.
:class:`HttpxTransport` wraps an ``httpx.AsyncClient`` for callers that bring their own
(tests with a mock transport, embedders).

Both send the same request: ``POST``, the caller's body and headers; neither retries (the
callback client owns retries) and both raise :class:`TransportError` when no HTTP answer
arrived (connection refused or lost, timeout).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from yarl import URL

# httpx's default pool: connections idle longer than this are closed. It is also below
# uvicorn's 5 s keep-alive, so a connection is seldom reused just as the server closes it.
KEEPALIVE_SECS = 4.0
MAX_CONNECTIONS = 100  # httpx's default limit


class TransportError(Exception):
    """No HTTP answer: connection refused or lost, timeout. Always worth a retry."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. ``headers`` look names up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""

    @property
    def is_success(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body as text (callback answers are UTF-8 JSON)."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.content)


class Transport(Protocol):
    """Sends one POST; raises :class:`TransportError` when no answer arrived."""

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``content`` to ``url`` with ``headers``."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class HttpxTransport:
    """A :class:`Transport` over an ``httpx.AsyncClient`` the caller owns."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            response = await self.http.post(url, content=content, headers=dict(headers))
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Reply(
            response.status_code, response.headers, response.content, response.reason_phrase
        )

    async def aclose(self) -> None:
        await self.http.aclose()


class AiohttpTransport:
    """A :class:`Transport` with its own aiohttp session. Create it in the event loop that
    will use it. ``timeout_secs`` bounds connecting, and each wait for the server, as
    ``httpx.AsyncClient(timeout=...)`` does; proxies and CA bundle come from the
    environment as httpx takes them."""

    def __init__(self, timeout_secs: float) -> None:
        connector = aiohttp.TCPConnector(
            limit=MAX_CONNECTIONS,
            keepalive_timeout=KEEPALIVE_SECS,
            # The same trust store as httpx (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
            ssl=httpx.create_ssl_context(trust_env=True),
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeout_secs, sock_connect=timeout_secs, sock_read=timeout_secs
            ),
            # Proxies from the environment, as httpx honours them. aiohttp looks them up in
            # os.environ at every request, which costs more than the rest of a request to
            # the API: only when the environment names a proxy at all.
            trust_env=bool(urllib.request.getproxies()),
        )

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            # encoded=True: the URL goes out exactly as built (it is already quoted).
            async with self.session.post(
                URL(url, encoded=True), data=content, headers=headers
            ) as response:
                body = await response.read()
                return Reply(response.status, response.headers, body, response.reason or "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self.session.close()


def as_transport(http: httpx.AsyncClient | Transport) -> Transport:
    """``http`` as a :class:`Transport` (an ``httpx.AsyncClient`` is wrapped)."""
    return HttpxTransport(http) if isinstance(http, httpx.AsyncClient) else http


__all__ = [
    "AiohttpTransport",
    "HttpxTransport",
    "Reply",
    "Transport",
    "TransportError",
    "as_transport",
]
