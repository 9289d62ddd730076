"""REDIS_URL's schemes: one Redis, or a Redis Cluster named by one of its nodes (no server needed:
a client connects on its first command)."""
import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from gateway.problems import unavailable
from gateway.redis import CONNECT_TIMEOUT, SOCKET_TIMEOUT, KeySpace, connect


async def test_a_cluster_url_gives_a_cluster_client_with_the_same_timeouts():
    client = connect("redis+cluster://user:pw@10.0.0.7:7001/0?socket_timeout=3")
    try:
        assert isinstance(client, RedisCluster)
        assert [(n.host, n.port) for n in client.startup_nodes] == [("10.0.0.7", 7001)]
        options = client.connection_kwargs
        assert options["decode_responses"] is True
        assert (options["username"], options["password"]) == ("user", "pw")
        assert options["socket_connect_timeout"] == CONNECT_TIMEOUT
        assert options["socket_timeout"] == 3.0  # the URL's query wins, as for one Redis
        assert client.retry.get_retries() == 1
    finally:
        await client.aclose()


async def test_a_tls_cluster_url_and_a_plain_url():
    tls = connect("rediss+cluster://10.0.0.7:7001")
    plain = connect("redis://10.0.0.7:6379/2")
    try:
        assert isinstance(tls, RedisCluster) and tls.connection_kwargs["connection_class"] is SSLConnection
        assert isinstance(plain, Redis) and not isinstance(plain, RedisCluster)
        assert plain.connection_pool.connection_kwargs["db"] == 2
        assert plain.connection_pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT
    finally:
        await tls.aclose()
        await plain.aclose()


def test_a_prefix_with_a_brace_is_refused():
    """Redis Cluster places a key by its first {...}: a braced prefix would put every chain in one slot."""
    with pytest.raises(ValueError, match="braces"):
        KeySpace(None, "{loyalty}:")  # type: ignore[arg-type]
    assert KeySpace(None, "loyalty:").key("{chain:1}", "nonce", 7, "n") == "loyalty:{chain:1}:nonce:7:n"  # type: ignore[arg-type]


def test_a_cluster_without_a_node_for_a_slot_and_a_full_redis_are_redis_unavailable():
    assert unavailable(redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'")) == "redis"
    assert unavailable(redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")) == "redis"
    assert unavailable(redis.exceptions.SlotNotCoveredError("slot 42 not covered")) == "redis"
