"""PostgreSQL stopped (``pg_ctl stop -m fast``) and started again, then frozen (SIGSTOP: a hung
server that keeps its connections open) and thawed, under a load of signed orders and scans,
with one `loyalty serve` and a worker running throughout.

While PostgreSQL is down every request answers 503 problem+json ``service_unavailable`` within
5 s; while it hangs, within the driver's timeouts (never waiting as long as the hang); never a
500. Each time it is back the same gateway process serves again on its own (no connection lost
from its pool); every order retried with its key ends applied once, and nothing is half-written.
"""
from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp
import pytest
from tortoise.transactions import in_transaction

from gateway.problems import unavailable
from gateway.settings import DATABASE_ACQUIRE_TIMEOUT, DATABASE_COMMAND_TIMEOUT
from loyalty_core.models import Chain

from .checks import assert_ledger_clean, assert_orders_applied_once, assert_outbox_delivered_once, opened
from .client import Answer, Client
from .lab import REDIS_URL
from .load import Sale, place, until
from .seed import sale, seed

pytestmark = pytest.mark.postgres

TILLS = 8
SCANNERS = 3
DOWN = 3.0
HANG = 7.0  # longer than a statement may take, so that the timeouts answer
WITHIN = 5.0  # seconds an answer may take while PostgreSQL is down
# While it hangs: a request holding a connection waits out its statement (command timeout) and the
# cancellation of it (as long again) before it answers; a request that finds no free connection
# gives up after the acquire timeout.
WITHIN_HUNG = 2 * DATABASE_COMMAND_TIMEOUT + DATABASE_ACQUIRE_TIMEOUT + 1
LEASE = 5  # IDEMPOTENCY_LEASE_SECONDS below: a request cut off by the outage holds its key this long


async def scan_until(client: Client, base: str, phones: list[str], over: asyncio.Event) -> None:
    while not over.is_set():
        await client.pos(base, "POST", "/v1/pos/scan", {"code": random.choice(phones)})
        await asyncio.sleep(random.uniform(0.02, 0.1))


def sent(answers: list[Answer], start: float, end: float) -> list[Answer]:
    return [a for a in answers if start <= a.sent_at <= end]


def answered(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """Sent at or after ``start`` and answered by ``end``."""
    return [a for a in answers if a.sent_at >= start and a.sent_at + a.elapsed <= end]


def assert_serving(answers: list[Answer], what: str) -> None:
    """Scans answer 200, orders 201 or 200; an order's key that a fault cut off may still be held (409)."""
    scans = [a for a in answers if a.path == "/v1/pos/scan"]
    orders = [a for a in answers if a.path == "/v1/pos/orders"]
    assert scans and all(a.status == 200 for a in scans), (what, [str(a) for a in scans if a.status != 200][:5])
    assert any(a.status == 201 for a in orders), what
    assert all(a.status in (200, 201) or a.code == "request_in_progress" for a in orders), \
        (what, [str(a) for a in orders if a.status not in (200, 201)][:5])


async def test_requests_fail_fast_while_postgres_is_down_or_hung_and_recover_by_themselves(lab):
    rng = random.Random()
    async with asyncio.timeout(LEASE + 60):
        cluster = await lab.postgres()
        database_url = await lab.database(cluster.admin_url)
        made = await lab.chain(database_url)
        # the worker's lease short too: a claim whose commit the outage cut off may have leased rows
        env = lab.env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=lab.redis_prefix(),
                      IDEMPOTENCY_LEASE_SECONDS="5", OUTBOX_LEASE_SECONDS="5")
        gateway = await lab.gateway("gateway", env)
        receiver = await lab.receiver()
        lab.process("worker", [sys.executable, "-m", "tests.faults.sink_worker", receiver.url], env).start()

        async with aiohttp.ClientSession() as session:
            client = Client(session, made["admin_key"])
            shop = await seed(client, gateway.url, made["chain_id"], members=6)
            phones = [f"1390000{i:04d}" for i in range(len(shop.members))]
            over = asyncio.Event()
            times: dict[str, float] = {}
            readiness: list[tuple[int, str]] = []

            async def faults() -> None:
                await asyncio.sleep(2)
                times["stopping"] = time.monotonic()
                await cluster.stop("fast")
                times["down"] = time.monotonic()
                async with session.get(gateway.url + "/readyz") as response:
                    readiness.append((response.status, (await response.json())["code"]))
                await asyncio.sleep(DOWN)
                times["starting"] = time.monotonic()
                await cluster.start()
                times["up"] = time.monotonic()
                await asyncio.sleep(2.5)
                times["hung"] = time.monotonic()
                cluster.pause()
                try:
                    await asyncio.sleep(HANG)
                finally:
                    cluster.resume()
                times["resumed"] = time.monotonic()
                await asyncio.sleep(2.5)
                times["over"] = time.monotonic()
                over.set()

            sales = until(over, lambda n: Sale(f"P{n:05d}", sale(f"P{n:05d}", rng.choice(shop.members), rng)))
            deadline = time.monotonic() + LEASE + 30
            answers, *_ = await asyncio.gather(
                place(client, sales, lambda: gateway.url, deadline, TILLS, pace=0.05), faults(),
                *(scan_until(client, gateway.url, phones, over) for _ in range(SCANNERS)))

        log = client.log
        print({k: round(v - lab.t0, 2) for k, v in times.items()}, f"{len(log)} requests, {len(answers)} orders")
        assert [a for a in log if a.status is None] == [], "the gateway stopped answering"
        assert [a for a in log if a.status == 500] == [], "a 500 answer"
        for answer in (a for a in log if a.status >= 500):
            assert (answer.status, answer.code, answer.problem) == (503, "service_unavailable", True), str(answer)
            assert answer.headers.get("Retry-After") == "1"

        slow = [a for a in sent(log, times["stopping"] - 1, times["up"]) if a.elapsed > WITHIN]
        assert slow == [], "slower than 5 s while PostgreSQL was down:\n" + "\n".join(map(str, slow[:10]))
        slow = [a for a in log if a.elapsed > WITHIN_HUNG]
        assert slow == [], f"slower than {WITHIN_HUNG} s:\n" + "\n".join(map(str, slow[:10]))

        down = answered(log, times["down"], times["starting"])
        assert down and all(a.status == 503 for a in down), [str(a) for a in down if a.status != 503][:5]
        hung = answered(log, times["hung"], times["resumed"])
        assert hung and all(a.status == 503 for a in hung), [str(a) for a in hung if a.status != 503][:5]
        assert_serving(answered(log, times["up"] + 0.5, times["hung"]), "after the restart")
        assert_serving(sent(log, times["resumed"] + 0.5, times["over"]), "after the hang")
        assert readiness == [(503, "not_ready")]
        assert gateway.alive and len(gateway.pids) == 1, "the gateway was restarted"

        async with opened(database_url):
            await assert_orders_applied_once(answers)
            await assert_outbox_delivered_once(receiver)


async def test_a_transaction_whose_begin_fails_gives_its_connection_back(lab):
    """On a hung server BEGIN times out on a pooled connection that looked alive. Tortoise 1.1.9
    kept that connection (and the task's dead transaction) for good; gateway/db.py gives both back,
    so the pool, and the same task, work again once the server answers."""
    async with asyncio.timeout(60):
        cluster = await lab.postgres()
        database_url = await lab.database(cluster.admin_url)
        async with opened(database_url + "?maxsize=2&command_timeout=1&acquire_timeout=1"):

            async def transaction() -> int:
                async with in_transaction() as connection:
                    return (await connection.execute_query("SELECT 1 AS one"))[1][0]["one"]

            assert await asyncio.gather(transaction(), transaction()) == [1, 1]  # two pooled connections
            cluster.pause()
            try:
                for _ in range(3):  # in this task: more failed BEGINs than the pool has connections
                    with pytest.raises(Exception) as failed:
                        await transaction()
                    assert unavailable(failed.value) == "database", repr(failed.value)
            finally:
                cluster.resume()
            async with asyncio.timeout(5):
                assert await transaction() == 1
                assert await asyncio.gather(*(transaction() for _ in range(4))) == [1] * 4
                assert await Chain.all().count() == 0
            await assert_ledger_clean()
