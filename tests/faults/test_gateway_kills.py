"""Two `loyalty serve` processes SIGKILLed at random moments under a load of signed POS orders.

A till that gets no answer, a 5xx or 409 request_in_progress sends the same request again (same
Idempotency-Key and body, a fresh signature), to either process, until it gets 201 or 200. Then
every order is applied exactly once and the ledger verifies.
"""
from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp
import pytest

from .checks import assert_orders_applied_once, assert_outbox_delivered_once, opened
from .client import Client
from .lab import REDIS_URL
from .load import Sale, place
from .seed import sale, seed

pytestmark = pytest.mark.postgres

ORDERS = 240
TILLS = 12
KILLS = 3
# A request cut off by a kill holds its Idempotency-Key until its lease ends (60 s by default);
# the gateways get IDEMPOTENCY_LEASE_SECONDS=5, so the tills' retries take it over within seconds.
LEASE_SETTING = 5


async def test_every_order_applies_once_while_gateways_are_killed(lab):
    rng = random.Random()
    seed_value = rng.randrange(1 << 30)
    rng.seed(seed_value)
    print(f"random seed {seed_value}")
    async with asyncio.timeout(LEASE_SETTING + 60):
        database_url = await lab.database()
        made = await lab.chain(database_url)
        env = lab.env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=lab.redis_prefix(),
                      IDEMPOTENCY_LEASE_SECONDS=str(LEASE_SETTING))
        gateways = list(await asyncio.gather(lab.gateway("gateway-a", env), lab.gateway("gateway-b", env)))
        receiver = await lab.receiver()
        lab.process("worker", [sys.executable, "-m", "tests.faults.sink_worker", receiver.url], env).start()

        async with aiohttp.ClientSession() as session:
            client = Client(session, made["admin_key"])
            shop = await seed(client, gateways[0].url, made["chain_id"], members=8)
            sales = [Sale(f"K{i:04d}", sale(f"K{i:04d}", rng.choice(shop.members), rng)) for i in range(ORDERS)]
            kills: list[tuple[str, float]] = []

            async def killer() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.3, 1.5))
                    victim = rng.choice(gateways)
                    victim.kill()
                    kills.append((victim.name, lab.clock()))
                    await asyncio.sleep(rng.uniform(0.1, 0.8))
                    victim.start()
                    await victim.ready()

            deadline = time.monotonic() + LEASE_SETTING + 30
            answers, _ = await asyncio.gather(
                place(client, iter(sales), lambda: rng.choice(gateways).url, deadline, TILLS, pace=0.15), killer())
            print(f"kills at {kills}; load done at {lab.clock():.1f} s")

        cut_off = [a for a in client.log if a.status is None]
        assert len(kills) == KILLS and cut_off, "the kills cut no request off: the test proved nothing"
        assert not [a for a in client.log if a.status == 500], "a 500 answer"
        print(f"{len(client.log)} requests, {len(cut_off)} without an answer, "
              f"{sum(a.code == 'request_in_progress' for a in client.log)} x 409 request_in_progress, "
              f"{sum(a.headers.get('Idempotent-Replayed') == 'true' for a in client.log)} replays")
        async with opened(database_url):
            await assert_orders_applied_once(answers)
            await assert_outbox_delivered_once(receiver)
