"""The callback transports: what the service's aiohttp transport takes from the environment,
and the httpx wrapper for callers that bring their own client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from arco_worker.transport import AiohttpTransport, HttpxTransport, Reply, as_transport


def _trusts_env() -> bool:
    async def main() -> bool:
        transport = AiohttpTransport(timeout_secs=1)
        try:
            return transport.session.trust_env
        finally:
            await transport.aclose()

    return asyncio.run(main())


def test_proxies_in_the_environment_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    # Without a proxy the environment is not read again at every request.
    assert _trusts_env() is False
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert _trusts_env() is True


def test_an_httpx_client_is_wrapped() -> None:
    async def main() -> None:
        client = httpx.AsyncClient()
        transport = as_transport(client)
        assert isinstance(transport, HttpxTransport)
        assert transport.http is client
        assert as_transport(transport) is transport
        await transport.aclose()

    asyncio.run(main())


def test_reply_reads_headers_without_regard_to_case() -> None:
    reply = Reply(503, httpx.Headers({"Retry-After": "3"}), b'{"error": "x"}', "Unavailable")
    assert reply.headers.get("retry-after") == "3"
    assert not reply.is_success
    assert reply.json() == {"error": "x"}
    assert reply.text == '{"error": "x"}'
