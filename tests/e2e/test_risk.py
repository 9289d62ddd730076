"""The program's risk limits over the HTTP API: orders per hour and points redeemed per day, per
member, refused with risk_limit_exceeded and a risk review, concurrent tills included."""
from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta

import pytest

from ..helpers import adjustment, problem
from .programs import PROGRAM, line, order

NOW = datetime.fromisoformat("2026-11-20T10:05:00+08:00")


def risky(**limits) -> dict:
    changed = copy.deepcopy(PROGRAM)
    changed["risk"] = limits
    return changed


async def risk_reviews(kit) -> list[tuple[int, str]]:
    items = (await (await kit.admin("GET", "/v1/reviews?status=pending")).json())["items"]
    return [(r["member_id"], r["subject"]) for r in items if r["kind"] == "risk"]


async def test_orders_per_hour(chain, clock):
    clock.at = NOW
    await chain.set_program(risky(max_orders_per_hour=2))
    busy, calm = await chain.new_member("13100000001"), await chain.new_member("13100000002")
    at = NOW.isoformat()
    for txn in ("O1", "O2"):
        await chain.sale(order(txn, [line("LATTE", "coffee", 1000)], at=at, member_id=busy["id"]))
    for txn in ("O3", "O4"):
        refused = await problem(await chain.pos("POST", "/v1/pos/orders", order(
            txn, [line("LATTE", "coffee", 1000)], at=at, member_id=busy["id"])), 422, "risk_limit_exceeded")
        assert refused["limit"] == "max_orders_per_hour" and "3 orders" in refused["detail"]
    assert (await chain.member(busy["id"]))["balances"]["points"] == 20  # the refused ones applied nothing
    assert await risk_reviews(chain) == [(busy["id"], "max_orders_per_hour")]  # one, however often refused
    await chain.sale(order("C1", [line("LATTE", "coffee", 1000)], at=at, member_id=calm["id"]))
    later = (NOW + timedelta(minutes=61)).isoformat()
    clock.at = NOW + timedelta(minutes=61)
    await chain.sale(order("O3", [line("LATTE", "coffee", 1000)], at=later, member_id=busy["id"]))  # O1, O2 an hour old
    guest = await chain.sale(order("G1", [line("LATTE", "coffee", 1000)], at=later))  # a guest has no limit
    assert guest["member_id"] is None


async def test_points_redeemed_per_day(chain, clock):
    clock.at = NOW
    await chain.set_program(risky(max_redeem_points_per_day=300))
    member = await chain.new_member("13100000010")
    assert (await adjustment(chain, member["id"], 2000)).status == 201
    at = NOW.isoformat()

    def redeeming(txn: str, points: int, when: str = at) -> dict:
        return order(txn, [line("BEANS", "coffee", 5000)], 5000 - points, at=when, member_id=member["id"],
                     redeem_points=points)

    await chain.sale(redeeming("R1", 200))
    refused = await problem(await chain.pos("POST", "/v1/pos/orders", redeeming("R2", 200)), 422, "risk_limit_exceeded")
    assert refused["limit"] == "max_redeem_points_per_day"
    await chain.sale(redeeming("R3", 100))  # 300 in the day: at the limit, not over it
    await chain.sale(order("E1", [line("BEANS", "coffee", 5000)], at=at, member_id=member["id"]))  # earning is free
    assert (await chain.member(member["id"]))["balances"]["points"] == 2000 - 300 + 48 + 49 + 50  # earned on 4,800, 4,900 and 5,000 paid
    tomorrow = datetime.fromisoformat("2026-11-21T00:00:01+08:00")  # the chain's next day
    clock.at = tomorrow
    await chain.sale(redeeming("R4", 300, tomorrow.isoformat()))
    assert await risk_reviews(chain) == [(member["id"], "max_redeem_points_per_day")]


@pytest.mark.postgres
async def test_concurrent_tills_cannot_slip_under_the_limit(chain, clock):
    clock.at = NOW
    await chain.set_program(risky(max_orders_per_hour=3))
    member = await chain.new_member("13100000020")
    answers = await asyncio.gather(*[chain.pos("POST", "/v1/pos/orders", order(
        f"P{i}", [line("LATTE", "coffee", 1000)], at=NOW.isoformat(), member_id=member["id"])) for i in range(8)])
    assert sorted(a.status for a in answers) == [201] * 3 + [422] * 5
    assert (await chain.member(member["id"]))["balances"]["points"] == 30
