"""HTTP clients of the delivery pump: several small connection pools instead of one large one.

httpcore's pool walks all of its connections at every request and every response (an idle
connection check each, which asks the socket), so with one pool of 64 connections that walk
cost more CPU than the rest of a delivery. Pools of a few connections keep it short; each
request goes to the least busy pool, so no request waits for a connection while another pool
has a free one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

# Connections per pool: small enough that a pool's walk stays cheap.
POOL_SIZE = 4


class ClientPools:
    """``concurrency`` connections in total, in pools of at most :data:`POOL_SIZE`."""

    def __init__(self, concurrency: int) -> None:
        count = max(1, math.ceil(concurrency / POOL_SIZE))
        size = max(1, math.ceil(concurrency / count))
        # trust_env=False: worker URLs are internal and must not go through a proxy.
        self._clients = [
            httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=size))
            for _ in range(count)
        ]
        self._busy = [0] * count

    @property
    def pools(self) -> int:
        """How many pools there are."""
        return len(self._clients)

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """The least busy client, counted busy until the block ends."""
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._busy[index] -= 1

    async def aclose(self) -> None:
        """Close every pool."""
        for client in self._clients:
            await client.aclose()
