"""Redis frozen (SIGSTOP), then stopped and started again, under a load of signed orders (by
member id and by dynamic member code), scans and admin adjustments.

What needs Redis fails closed: a terminal's nonce and a dynamic member code cannot be checked,
so a POS request answers 503 problem+json within 5 s and is never let through; a request
accepted before the outage is still refused as a replay after Redis is back (its nonce
survived). What lives in PostgreSQL keeps working: admin adjustments are applied, replayed and
counted once; every order retried with its key ends applied once.
"""
from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import pytest

from gateway import problems
from gateway.redis import KeySpace, connect
from loyalty_core import codes
from loyalty_core.crypto import Vault

from .checks import assert_orders_applied_once, assert_outbox_delivered_once, opened
from .client import Answer, Client, Signed, until_definitive
from .lab import SECRET
from .load import Sale, place, until
from .seed import sale, seed

pytestmark = pytest.mark.postgres

TILLS = 6
WITHIN = 5.0
PAUSE = 5.0  # longer than a reply may take, so that the timeouts answer
DOWN = 3.0


async def adjust_until(client: Client, base: str, members: list[int], over: asyncio.Event, deadline: float,
                       credited: dict[int, int], sent: list[tuple[str, str, dict, Answer]]) -> None:
    """An operator crediting points, each adjustment under its own key until answered 201."""
    while not over.is_set():
        member, amount = random.choice(members), random.randint(1, 50)
        path, body, key = f"/v1/members/{member}/adjustments", {"account": "points", "amount": amount,
                                                                "reason": "fault test"}, uuid.uuid4().hex
        answer = await until_definitive(lambda p=path, b=body, k=key: client.admin(base, "POST", p, b, k), deadline)
        assert answer.status == 201, str(answer)
        credited[member] = credited.get(member, 0) + amount
        sent.append((path, key, body, answer))
        await asyncio.sleep(random.uniform(0.05, 0.2))


async def scan_until(client: Client, base: str, codes_: list[str], over: asyncio.Event,
                     accepted: list[Signed]) -> None:
    while not over.is_set():
        signed = client.sign("POST", "/v1/pos/scan", {"code": random.choice(codes_)})
        answer = await client.send(base, signed)
        if answer.status == 200:
            accepted.append(signed)
        await asyncio.sleep(random.uniform(0.02, 0.1))


def answered(answers: list[Answer], start: float, end: float) -> list[Answer]:
    return [a for a in answers if a.sent_at >= start and a.sent_at + a.elapsed <= end]


async def test_nonces_and_member_codes_fail_closed_while_redis_is_away(lab):
    rng = random.Random()
    async with asyncio.timeout(90):
        redis = await lab.redis_server()
        database_url = await lab.database()
        made = await lab.chain(database_url)
        prefix = "loyalty-faults:"  # a Redis of its own, gone with the lab
        env = lab.env(DATABASE_URL=database_url, REDIS_URL=redis.url, REDIS_PREFIX=prefix)
        gateway = await lab.gateway("gateway", env)
        receiver = await lab.receiver()
        lab.process("worker", [sys.executable, "-m", "tests.faults.sink_worker", receiver.url], env).start()
        cache, vault = KeySpace(connect(redis.url), prefix), Vault(SECRET)
        lab.on_close(cache.redis.aclose)

        async with aiohttp.ClientSession() as session:
            client = Client(session, made["admin_key"])
            shop = await seed(client, gateway.url, made["chain_id"], members=6)
            phones = [f"1390000{i:04d}" for i in range(len(shop.members))]
            now = datetime.now(timezone.utc)
            # dynamic codes as the mini-program shows them (valid 120 s); each commits one order
            member_codes = {(await codes.issue(cache, vault, shop.chain_id, m, now)).code: m for m in shop.members}
            spare_codes = {(await codes.issue(cache, vault, shop.chain_id, m, now)).code: m for m in shop.members}
            coded = iter(list(member_codes))
            over = asyncio.Event()
            times: dict[str, float] = {}
            credited: dict[int, int] = {}
            adjustments: list[tuple[str, str, dict, Answer]] = []
            accepted: list[Signed] = []
            fail_closed: dict[str, object] = {}
            accepted_before: list[Signed] = []

            async def faults() -> None:
                await asyncio.sleep(2)
                accepted_before.extend(accepted)
                times["paused"] = time.monotonic()
                redis.signal(signal.SIGSTOP)
                await asyncio.sleep(PAUSE)
                redis.signal(signal.SIGCONT)
                times["continued"] = time.monotonic()
                await asyncio.sleep(1.5)
                times["stopping"] = time.monotonic()
                await redis.stop()
                times["down"] = time.monotonic()
                async with session.get(gateway.url + "/readyz") as response:
                    fail_closed["readyz"] = (response.status, (await response.json())["code"])
                fail_closed["replays"] = {(a.status, a.code) for a in
                                          [await client.send(gateway.url, s) for s in accepted_before[:5]]}
                try:
                    await codes.resolve_dynamic(cache, vault, shop.chain_id, next(iter(spare_codes)),
                                                datetime.now(timezone.utc))
                except Exception as error:  # what the core's code check raises with Redis away
                    fail_closed["code_check"] = problems.unavailable(error)
                await asyncio.sleep(DOWN)
                times["starting"] = time.monotonic()
                redis.start()
                await redis.ready()
                times["up"] = time.monotonic()
                await asyncio.sleep(2)
                times["over"] = time.monotonic()
                over.set()

            def make(n: int) -> Sale:
                txn = f"R{n:05d}"
                code = next(coded, None) if n % 5 == 0 else None
                return Sale(txn, sale(txn, None if code else rng.choice(shop.members), rng, member_code=code))

            deadline = time.monotonic() + 60
            answers, *_ = await asyncio.gather(
                place(client, until(over, make), lambda: gateway.url, deadline, TILLS, pace=0.05), faults(),
                adjust_until(client, gateway.url, shop.members, over, deadline, credited, adjustments),
                scan_until(client, gateway.url, phones + list(member_codes), over, accepted),
                scan_until(client, gateway.url, phones, over, accepted))
            log = client.log
            print({k: round(v - lab.t0, 2) for k, v in times.items()}, f"{len(log)} requests, {len(answers)} orders, "
                  f"{len(adjustments)} adjustments")

            # after Redis came back: every request accepted before (nonce recorded) is still a replay
            replays = [await client.send(gateway.url, s) for s in accepted_before]
            # the same adjustment under the same key replays its first answer
            path, key, body, first = adjustments[0]
            again = await client.admin(gateway.url, "POST", path, body, key)
            # a code issued before the outage still names its member, and still commits one order only
            spare, spare_member = next(iter(spare_codes.items()))
            scanned = await client.pos(gateway.url, "POST", "/v1/pos/scan", {"code": spare})
            by_code = [await client.pos(gateway.url, "POST", "/v1/pos/orders", sale(txn, None, rng, member_code=spare),
                                        uuid.uuid4().hex) for txn in ("SPARE-1", "SPARE-2")]
            answers["SPARE-1"] = by_code[0].body

        pos = [a for a in log if a.path.startswith("/v1/pos/")]
        admin = [a for a in log if a.path.startswith("/v1/members/") and a.method == "POST"]
        assert [a for a in log if a.status is None or a.status == 500] == [], "no answer, or a 500"
        slow = [a for a in log if a.elapsed > WITHIN]
        assert slow == [], "slower than 5 s:\n" + "\n".join(map(str, slow[:10]))
        for answer in (a for a in log if a.status >= 500):
            assert (answer.status, answer.code, answer.problem) == (503, "service_unavailable", True), str(answer)
            assert answer.path.startswith("/v1/pos/"), f"an admin call needed Redis: {answer}"
        for start, end in [("paused", "continued"), ("down", "starting")]:
            away = answered(pos, times[start] + 0.1, times[end])
            assert away and all(a.status == 503 for a in away), [str(a) for a in away if a.status != 503][:5]
            assert all(a.status == 201 for a in answered(admin, times[start], times[end]))
            assert answered(admin, times[start], times[end]), "no adjustment while Redis was away"
        assert fail_closed == {"replays": {(503, "service_unavailable")}, "code_check": "redis",
                               "readyz": (503, "not_ready")}

        assert replays and {(r.status, r.code) for r in replays} == {(401, "replayed_request")}
        assert (again.status, again.headers.get("Idempotent-Replayed"), again.body) == (201, "true", first.body)
        assert scanned.status == 200 and scanned.body["member"]["id"] == spare_member, scanned.body
        assert [(a.status, a.code) for a in by_code] == [(201, None), (409, "code_used")]
        assert by_code[0].body["member_id"] == spare_member
        assert any(a.status == 201 for a in answered(pos, times["up"] + 0.5, times["over"]))

        async with opened(database_url):
            await assert_orders_applied_once(answers, credited)
            await assert_outbox_delivered_once(receiver)
