"""Redis through ``redis.asyncio``; with no ``REDIS_URL``, fakeredis stands in (one process only).

The client gives up quickly so that a Redis outage is answered 503 within a few seconds (see
``gateway/problems.py``), never waited out: a connect takes at most ``CONNECT_TIMEOUT``, a
command's reply at most ``SOCKET_TIMEOUT``. A command that failed on a broken connection (a
pooled connection Redis dropped when it restarted) is sent once more on a fresh one; a command
that timed out is not: it may still run once Redis answers again, and a nonce written twice
would refuse its own request as a replay (tests/faults/test_redis_outage.py). Worst case about
3 s. The ``REDIS_URL`` query may override the timeouts (``?socket_timeout=3&socket_connect_timeout=2``).

``redis+cluster://host:port`` (``rediss+cluster://`` with TLS) names one node of a Redis Cluster:
the client (``RedisCluster``) learns the others from it, and sends each command to the node that
holds its key's slot. Every key carries its chain as a hash tag (``{chain:42}``, see ``KeySpace``),
so one chain's keys share a slot. In a cluster, redis-py also resends a command that timed out,
once, after refreshing its map of the slots: the nonce's mark (``gateway/auth.py``) recognises a
resent write that had landed, so that stays safe. docs/scaling.md has the rest.
"""
from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError

CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 2.0
RETRIES = 1
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(redis_url: str | None) -> Redis | RedisCluster:
    """A client for ``REDIS_URL`` (connected on its first command), or the in-process stand-in."""
    if redis_url:
        options = dict(decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
                       retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), RETRIES, supported_errors=(ConnectionError,)))
        scheme, _, rest = redis_url.partition("://")
        if scheme in CLUSTER_SCHEMES:
            return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
        return Redis.from_url(redis_url, **options)
    from fakeredis import FakeAsyncRedis

    return FakeAsyncRedis(decode_responses=True)


class KeySpace:
    """All keys this process writes, under one prefix (tests give each run its own).

    Every key names its chain in braces right after the prefix (``loyalty:{chain:42}:nonce:...``):
    Redis Cluster places a key by the first ``{...}`` in it, so one chain's keys share a slot. A
    prefix with a brace would take that place (and put every chain in one slot): refused."""

    def __init__(self, redis: Redis | RedisCluster, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"REDIS_PREFIX must not contain braces (the chain's hash tag follows it): {prefix!r}")
        self.redis = redis
        self.prefix = prefix

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
