"""The access token across gateway processes: ten joins at once, split over two processes that
share Redis, while WeChat takes its time to hand out a token: one fetch; and one refresh when
WeChat refuses it."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from ..integration.test_concurrency_pg import two_gateways

pytestmark = pytest.mark.postgres


async def test_ten_joins_over_two_processes_fetch_the_token_once(mini, database_url, redis_prefix):
    fake = mini.fake
    fake.fetch_delay = 0.3  # long enough for every join to find no token and want one
    async with two_gateways(database_url, redis_prefix, shared_redis=True,
                            WECHAT_API_BASE_URL=fake.base_url) as (session, bases):
        async def post(base: str, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
            async with session.post(base + path, data=orjson.dumps(body), headers=headers) as response:
                return response.status, await response.json(content_type=None)

        async def login(base: str) -> str:
            status, body = await post(base, "/v1/mp/login", {"app_id": mini.app_id,
                                                             "code": fake.login_code(mini.app_id)})
            assert status == 200, body
            return body["token"]

        logged = [(base, await login(base)) for base in bases for _ in range(5)]
        joins = await asyncio.gather(*[post(base, "/v1/mp/join", {"phone_code": fake.phone_code(
            mini.app_id, f"1350000{i:04d}")}, token) for i, (base, token) in enumerate(logged)])
        assert [status for status, _ in joins] == [201] * 10, joins
        assert fake.token_fetches[mini.app_id] == 1
        fake.expire_tokens(mini.app_id)
        fake.fetch_delay = 0.1
        again = [(base, await login(base)) for base in bases for _ in range(5)]
        rejoins = await asyncio.gather(*[post(base, "/v1/mp/join", {"phone_code": fake.phone_code(
            mini.app_id, f"1360000{i:04d}")}, token) for i, (base, token) in enumerate(again)])
        assert [status for status, _ in rejoins] == [201] * 10, rejoins
        assert fake.token_fetches[mini.app_id] == 2  # ten joins refused at once: fetched again once, for both processes
