"""Redis through ``redis.asyncio``; with no ``REDIS_URL``, fakeredis stands in (one process only)."""
from __future__ import annotations

from redis.asyncio import Redis


def connect(redis_url: str | None) -> Redis:
    if redis_url:
        return Redis.from_url(redis_url, decode_responses=True)
    from fakeredis import FakeAsyncRedis

    return FakeAsyncRedis(decode_responses=True)


class KeySpace:
    """All keys this process writes, under one prefix (tests give each run its own)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
