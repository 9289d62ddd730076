"""Redis through ``redis.asyncio``; with no ``REDIS_URL``, fakeredis stands in (one process only).

The client gives up quickly so that a Redis outage is answered 503 within a few seconds (see
``gateway/problems.py``), never waited out: a connect takes at most ``CONNECT_TIMEOUT``, a
command's reply at most ``SOCKET_TIMEOUT``. A command that failed on a broken connection (a
pooled connection Redis dropped when it restarted) is sent once more on a fresh one; a command
that timed out is not: it may still run once Redis answers again, and a nonce written twice
would refuse its own request as a replay (tests/faults/test_redis_outage.py). Worst case about
3 s. The ``REDIS_URL`` query may override the timeouts (``?socket_timeout=3&socket_connect_timeout=2``).
"""
from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError

CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
RETRIES = 1


def connect(redis_url: str | None) -> Redis:
    if redis_url:
        return Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT,
                              socket_timeout=SOCKET_TIMEOUT,
                              retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES,
                                          supported_errors=(ConnectionError,)))
    from fakeredis import FakeAsyncRedis

    return FakeAsyncRedis(decode_responses=True)


class KeySpace:
    """All keys this process writes, under one prefix (tests give each run its own)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
