"""Races at the till, on PostgreSQL where row locks are real."""
import asyncio
from datetime import datetime

import pytest

from loyalty_core.verify import verify

from ..helpers import member_code
from .programs import PROGRAM, line, order

pytestmark = pytest.mark.postgres


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat("2026-11-20T10:00:00+08:00")
    return till


async def test_forty_orders_redeeming_100_from_1000_only_ten_succeed(till):
    member = await till.new_member("13600000001")
    credit = await till.admin("POST", f"/v1/members/{member['id']}/adjustments",
                              {"account": "points", "amount": 1000, "reason": "setup"})
    assert credit.status == 201
    # each: 1000 fen, 100 points = 100 fen off, payable 900, earns floor(900 / 100) = 9 (not spendable in the race)
    bodies = [order(f"RACE-{i}", [line("LATTE", "coffee", 1000)], 900, member_id=member["id"], redeem_points=100,
                    at="2026-11-20T10:00:00+08:00") for i in range(40)]
    answers = await asyncio.gather(*(till.pos("POST", "/v1/pos/orders", body) for body in bodies))
    statuses = sorted(a.status for a in answers)
    codes = [(await a.json()).get("code") for a in answers if a.status != 201]
    assert statuses.count(201) == 10, statuses
    assert set(codes) == {"insufficient_points"}
    balances = (await till.member(member["id"]))["balances"]
    assert balances["points"] == 1000 - 10 * 100 + 10 * 9
    assert await verify() == []


async def test_one_dynamic_code_commits_one_order_among_ten(till):
    member = await till.new_member("13600000002")
    code = await member_code(till, member["id"])
    bodies = [order(f"CODE-{i}", [line("LATTE", "coffee", 1000)], member_code=code, at="2026-11-20T10:00:00+08:00")
              for i in range(10)]
    answers = await asyncio.gather(*(till.pos("POST", "/v1/pos/orders", body) for body in bodies))
    statuses = [a.status for a in answers]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == 9
    assert {(await a.json())["code"] for a in answers if a.status == 409} == {"code_used"}
    assert (await till.member(member["id"]))["balances"]["points"] == 10
    assert await verify() == []


async def test_the_same_txn_sent_ten_times_at_once_is_one_order(till):
    member = await till.new_member("13600000003")
    body = order("SAME", [line("LATTE", "coffee", 1000)], member_id=member["id"], at="2026-11-20T10:00:00+08:00")
    answers = await asyncio.gather(*(till.pos("POST", "/v1/pos/orders", body) for _ in range(10)))
    statuses = sorted(a.status for a in answers)
    assert statuses.count(201) == 1 and statuses.count(200) == 9, statuses
    assert len({(await a.json())["order_id"] for a in answers}) == 1
    assert (await till.member(member["id"]))["balances"]["points"] == 10
    assert await verify() == []


async def test_jobs_in_two_places_at_once_vest_and_expire_once(till, clock):
    from loyalty_core import jobs

    program = {**PROGRAM, "points": {**PROGRAM["points"], "pending_days": 1,
                                     "expiry": {"mode": "rolling_months", "months": 1}}}
    await till.set_program(program)
    member = await till.new_member("13600000004")
    for i in range(5):
        sold = await till.pos("POST", "/v1/pos/orders", order(f"J{i}", [line("BEANS", "coffee", 1000)],
                                                               member_id=member["id"], at="2026-11-20T10:00:00+08:00"))
        assert sold.status == 201
    later = datetime.fromisoformat("2026-11-22T00:00:00+08:00")
    reports = await asyncio.gather(*(jobs.vest_points(till.chain_id, later) for _ in range(4)))
    assert sum(r.points for r in reports) == 50
    much_later = datetime.fromisoformat("2027-01-01T00:00:00+08:00")
    reports = await asyncio.gather(*(jobs.expire_points(till.chain_id, much_later) for _ in range(4)))
    assert sum(r.points for r in reports) == 50
    balances = (await till.member(member["id"]))["balances"]
    assert (balances["points"], balances["pending_points"]) == (0, 0)
    assert await verify() == []


async def test_refunds_racing_the_vest_job_are_serialised_and_lose_nothing(till, clock):
    from loyalty_core import jobs

    await till.set_program({**PROGRAM, "points": {**PROGRAM["points"], "pending_days": 1}})
    member = await till.new_member("13600000005")
    for i in range(8):
        sold = await till.pos("POST", "/v1/pos/orders", order(f"V{i}", [line("BEANS", "coffee", 1000)],
                                                               member_id=member["id"], at="2026-11-19T09:00:00+08:00"))
        assert sold.status == 201
    # the vest job (everything is due) runs while each order is half refunded
    due = datetime.fromisoformat("2026-11-21T00:00:00+08:00")
    refunds = [till.pos("POST", f"/v1/pos/orders/V{i}/refunds", {"refund_id": "half", "amount": 500}) for i in range(8)]
    results = await asyncio.gather(jobs.vest_points(till.chain_id, due), jobs.vest_points(till.chain_id, due),
                                   *refunds)
    assert all(r.status == 201 for r in results[2:])
    assert sum(r["points_reversed"] for r in [await r.json() for r in results[2:]]) == 8 * 5
    await jobs.vest_points(till.chain_id, due)  # whatever a refund held back vests now
    balances = (await till.member(member["id"]))["balances"]
    # each order earned 10 and gave back 5, wherever the 5 were taken from (pending or available)
    assert (balances["points"], balances["pending_points"]) == (40, 0)
    assert await verify() == []
