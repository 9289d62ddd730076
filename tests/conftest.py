"""Test harness: one throwaway database (and Redis key prefix) per run, emptied before each test.

``TEST_DATABASE=sqlite`` (default) uses a temporary SQLite file and the in-process Redis stand-in;
``TEST_DATABASE=postgres`` creates a fresh PostgreSQL database from ``TEST_POSTGRES_URL`` and uses
the real Redis at ``TEST_REDIS_URL`` under a unique key prefix; both are dropped afterwards.
"""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest
import pytest_asyncio
from tortoise import Tortoise

from gateway import db
from gateway.app import create_app
from loyalty_core.verify import verify
from gateway.settings import Settings
from loyalty_core.clock import FrozenClock

from .helpers import ChainKit, make_chain

BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "test-secret-0123456789abcdef"


def pytest_collection_modifyitems(config, items):
    if BACKEND != "postgres":
        skip = pytest.mark.skip(reason="needs PostgreSQL: runs in the postgres pass of `make test`")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


async def _admin_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def database_url(tmp_path_factory):
    if BACKEND == "postgres":
        name = f"loyalty_test_{uuid.uuid4().hex[:12]}"
        await _admin_execute(f'CREATE DATABASE "{name}"')
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        await db.migrate(url)
        yield url
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'loyalty.sqlite3'}"
        await db.migrate(url)
        yield url


@pytest_asyncio.fixture(scope="session")
async def redis_prefix():
    prefix = f"loyalty-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    if BACKEND == "postgres":
        from redis.asyncio import Redis

        redis = Redis.from_url(REDIS_URL)
        async for key in redis.scan_iter(match=prefix + "*"):
            await redis.delete(key)
        await redis.aclose()


# No test may reach the real WeChat: a test that talks to WeChat points the gateway at the fake
# (``fake_wechat``); any other gets a loopback port that refuses connections (a 502 if it tried).
NO_WECHAT = "http://127.0.0.1:9"


@pytest.fixture
def settings(database_url, redis_prefix) -> Settings:
    return Settings(database_url=database_url, redis_url=REDIS_URL if BACKEND == "postgres" else None,
                    redis_prefix=redis_prefix, secret=SECRET, wechat_api_base_url=NO_WECHAT)


@pytest.fixture
async def fake_wechat(aiohttp_server):
    """The fake WeChat of tests/fakes/wechat.py on a loopback port (``base_url``)."""
    from .fakes.wechat import FakeWeChat

    fake = FakeWeChat()
    server = await aiohttp_server(fake.application())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))


TABLES = ["inbox_events", "webhook_subscriptions", "message_sends", "message_subscriptions", "member_cards", "member_sessions", "channels", "idempotency_records", "outbox_events", "reward_redemptions", "rewards", "coupons", "coupon_templates",
          "member_tags", "reviews", "segments", "behavior_events", "member_days", "member_figures", "refunds", "topups", "pending_points",
          "points_lots", "postings", "journal_entries", "orders", "accounts", "identities", "members", "terminals",
          "stores", "admin_keys", "chains"]


async def empty_database() -> None:
    conn = Tortoise.get_connection("default")
    if BACKEND == "postgres":
        await conn.execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    else:
        for table in TABLES:
            await conn.execute_script(f"DELETE FROM {table}")


@pytest_asyncio.fixture
async def client(aiohttp_client, settings, clock, request):
    """The gateway over HTTP, on an empty database; after the test, ``verify`` finds the ledger
    whole (balances, lots and pending points against the journal), unless the test breaks it on
    purpose (``@pytest.mark.tampers``)."""
    app = create_app(settings, clock=clock)
    test_client = await aiohttp_client(app)
    await empty_database()
    yield test_client
    if request.node.get_closest_marker("tampers") is None:
        assert await verify() == [], "the ledger does not verify after this test"


@pytest_asyncio.fixture
async def chain(client, clock) -> ChainKit:
    """A chain with an owner key, store S01 and terminal POS1."""
    return await make_chain(client, clock, "Test Chain")


@pytest_asyncio.fixture
async def other_chain(client, clock) -> ChainKit:
    return await make_chain(client, clock, "Other Chain")
