"""Access tokens every process shares through Redis (WeChat's, Douyin's, Youzan's).

A token is kept under its key until ``margin`` seconds before the platform says it expires. A
process that finds none takes a short lock (``<key>-lock``, ``SET NX`` for ``LOCK_SECONDS``) and
fetches it; the others wait for it to appear, so two processes never fetch at once (a platform
may revoke the older token when a new one is fetched). A token the platform refused is forgotten
only if it is still the cached one, so that a late refusal never drops a newer token.
"""
from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager
from typing import Awaitable, Callable

LOCK_SECONDS = 10  # the longest one process may hold the right to fetch a token
MARGIN = 300       # seconds before the platform's expiry that the cached token is no longer used

Fetch = Callable[[], Awaitable[tuple[str, int]]]  # a new token and its lifetime in seconds


async def shared(redis, key: str, fetch: Fetch, unavailable: Callable[[str], Exception], margin: int = MARGIN) -> str:
    """The token under ``key``, fetched by one process at a time when there is none."""
    if token := await redis.get(key):
        return token
    async with one_at_a_time(redis, key + "-lock", unavailable):
        if token := await redis.get(key):  # fetched by the lock's last holder while this one waited
            return token
        token, lifetime = await fetch()
        await redis.set(key, token, ex=max(60, int(lifetime) - margin))
        return token


@asynccontextmanager
async def one_at_a_time(redis, lock: str, unavailable: Callable[[str], Exception]):
    """Hold ``lock`` (``SET NX`` for at most ``LOCK_SECONDS``) across processes; wait for it while
    another holds it, ``unavailable`` when it does not come free in time."""
    mark, deadline = secrets.token_hex(8), asyncio.get_running_loop().time() + LOCK_SECONDS + 2
    while not await redis.set(lock, mark, nx=True, ex=LOCK_SECONDS):
        if asyncio.get_running_loop().time() > deadline:
            raise unavailable("another process holds the lock (an access token or a sync under way)")
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        if await redis.get(lock) == mark:
            await redis.delete(lock)


async def forget(redis, key: str, token: str) -> None:
    """Drop a refused token, unless a newer one took its place meanwhile."""
    if await redis.get(key) == token:
        await redis.delete(key)
