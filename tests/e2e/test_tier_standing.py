"""Tier standing as a member and an operator read it: every metric over several rows, members and
chains, the upgrade on the order that crosses a threshold, and refunds that take it back."""
from datetime import datetime

import pytest

from loyalty_core.verify import verify

from ..helpers import make_chain
from .programs import line, order

AT = "2026-11-20T10:00:00+08:00"  # a Friday morning: no campaign
LEVELS = [{"code": "regular", "name": "普通", "threshold": 0},
          {"code": "silver", "name": "银卡", "threshold": 1000},
          {"code": "gold", "name": "金卡", "threshold": 5000}]


def tiers(metric: str = "growth", **more) -> dict:
    return {"behaviors": {"register": {"points": 100}},
            "tiers": {"metric": metric, "window_months": 12, "levels": LEVELS, **more}}


@pytest.fixture
async def till(chain, clock):
    clock.at = datetime.fromisoformat("2026-11-20T10:05:00+08:00")
    return chain


def sale(txn: str, member: dict, fen: int, **fields) -> dict:
    return order(txn, [line("BEANS", "coffee", fen)], member_id=member["id"], at=AT, **fields)


async def progress(kit, member: dict) -> dict:
    shown = await kit.member(member["id"])
    return {"tier": shown["tier"]["code"], **shown["tier"]["progress"], "growth": shown["balances"]["growth"]}


async def test_growth_counts_every_posting_and_the_crossing_order_upgrades(till):
    await till.set_program(tiers())
    member = await till.new_member("13900000001")  # 100 welcome growth
    assert await progress(till, member) == {"tier": "regular", "metric": "growth", "current": 100,
                                            "next_threshold": 1000, "growth": 100}
    first = await till.sale(sale("G1", member, 89900))  # 899 yuan: 899 growth; 100 + 899 = 999 < 1000
    assert first["tier"] == {"code": "regular", "name": "普通", "changed": False}
    assert await progress(till, member) == {"tier": "regular", "metric": "growth", "current": 999,
                                            "next_threshold": 1000, "growth": 999}
    crossing = await till.sale(sale("G2", member, 100))  # 999 + 1 = 1000 >= silver's 1000: this order upgrades
    assert crossing["tier"] == {"code": "silver", "name": "银卡", "changed": True}
    assert await progress(till, member) == {"tier": "silver", "metric": "growth", "current": 1000,
                                            "next_threshold": 5000, "growth": 1000}
    third = await till.sale(sale("G3", member, 100))  # 1001 < gold's 5000: silver stays, no change
    assert third["tier"]["changed"] is False and third["tier"]["code"] == "silver"
    assert await verify() == []


async def test_spend_and_points_earned_sum_several_orders_less_refunds(till):
    await till.set_program(tiers("spend"))
    member = await till.new_member("13900000002")
    for i, fen in enumerate([30000, 40000, 20000]):
        await till.sale(sale(f"S{i}", member, fen))
    assert (await progress(till, member))["current"] == 90000
    refund = await till.pos("POST", "/v1/pos/orders/S1/refunds", {"refund_id": "R1", "amount": 15000})
    assert refund.status == 201, await refund.text()
    assert (await progress(till, member))["current"] == 75000

    await till.set_program(tiers("points_earned"))
    # 100 welcome + 300 + 400 + 200 earned, less the 150 points the refund reversed
    assert (await progress(till, member))["current"] == 100 + 900 - 150
    assert await verify() == []


async def test_members_and_chains_keep_their_own_figures(till, client, clock):
    await till.set_program(tiers())
    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(tiers())
    a, b = await till.new_member("13900000003"), await till.new_member("13900000004")
    twin = await other.new_member("13900000003")  # the same phone, another chain
    await till.sale(sale("A1", a, 50000))
    await till.sale(sale("A2", a, 60000))
    await till.sale(sale("B1", b, 20000))
    await other.sale(sale("T1", twin, 1000))
    assert [(await progress(till, m))["current"] for m in (a, b)] == [1200, 300]
    assert (await progress(till, a))["tier"] == "silver"
    assert (await progress(other, twin))["current"] == 110
    assert (await progress(other, twin))["tier"] == "regular"


async def test_calendar_year_starts_again_on_1_january_in_the_chains_timezone(till, clock):
    await till.set_program(tiers(window="calendar_year"))
    member = await till.new_member("13900000005")
    await till.sale(sale("Y1", member, 50000))
    assert (await progress(till, member))["current"] == 600  # 100 welcome + 500 yuan, both in 2026
    clock.at = datetime.fromisoformat("2026-12-31T15:59:00+00:00")  # 23:59 on 31 December in Shanghai
    assert (await progress(till, member))["current"] == 600
    clock.at = datetime.fromisoformat("2026-12-31T16:00:00+00:00")  # 1 January 2027 in Shanghai
    assert (await progress(till, member))["current"] == 0  # 2027 holds no posting yet: 0
    assert (await progress(till, member))["growth"] == 600  # the balance stays; only the metric restarts


async def test_a_full_refund_of_the_lifting_order_returns_the_tier_it_had(till):
    await till.set_program(tiers())
    member = await till.new_member("13900000006")
    lifted = await till.sale(sale("L1", member, 100000))
    assert lifted["tier"]["code"] == "silver" and lifted["tier"]["changed"] is True
    refund = await till.pos("POST", "/v1/pos/orders/L1/refunds", {"refund_id": "R1", "lines": [{"sku": "BEANS", "qty": 1}]})
    body = await refund.json()
    assert refund.status == 201, body
    assert body["tier"] == {"code": "regular", "name": "普通", "changed": True}
    assert await progress(till, member) == {"tier": "regular", "metric": "growth", "current": 100,
                                            "next_threshold": 1000, "growth": 100}
    assert await verify() == []


async def test_a_partial_refund_that_stays_above_the_threshold_keeps_the_tier(till):
    await till.set_program(tiers())
    member = await till.new_member("13900000007")
    await till.sale(sale("K1", member, 200000))  # 100 + 2000 growth: silver
    refund = await till.pos("POST", "/v1/pos/orders/K1/refunds", {"refund_id": "R1", "amount": 100000})
    assert (await refund.json())["tier"]["changed"] is False
    assert await progress(till, member) == {"tier": "silver", "metric": "growth", "current": 1100,
                                            "next_threshold": 5000, "growth": 1100}
    # a second refund takes it below 1000: back to regular
    again = await till.pos("POST", "/v1/pos/orders/K1/refunds", {"refund_id": "R2", "amount": 50000})
    assert (await again.json())["tier"] == {"code": "regular", "name": "普通", "changed": True}


async def test_a_refund_under_points_earned_returns_the_tier_too(till):
    await till.set_program(tiers("points_earned"))
    member = await till.new_member("13900000008")
    assert (await till.sale(sale("P1", member, 100000)))["tier"]["code"] == "silver"
    refund = await till.pos("POST", "/v1/pos/orders/P1/refunds", {"refund_id": "R1", "amount": 100000})
    assert (await refund.json())["tier"]["code"] == "regular"
    assert (await progress(till, member))["current"] == 100


async def test_a_first_purchase_upgrade_is_withdrawn_when_that_purchase_is_refunded(till):
    await till.set_program(tiers(task_upgrades=[{"task": "first_purchase", "to": "silver"}]))
    member = await till.new_member("13900000009")
    first = await till.sale(sale("F1", member, 1000))
    assert first["tier"] == {"code": "silver", "name": "银卡", "changed": True}
    refund = await till.pos("POST", "/v1/pos/orders/F1/refunds", {"refund_id": "R1", "amount": 1000})
    assert (await refund.json())["tier"]["code"] == "regular"
    second = await till.sale(sale("F2", member, 1000))  # buying again is a first purchase that holds
    assert second["tier"]["code"] == "silver"


async def test_a_later_upgrade_is_not_undone_by_refunding_an_earlier_order(till):
    await till.set_program(tiers())
    member = await till.new_member("13900000010")
    await till.sale(sale("E1", member, 100000))   # silver
    gold = await till.sale(sale("E2", member, 400000))  # 100 + 1000 + 4000 = 5100: gold
    assert gold["tier"]["code"] == "gold"
    refund = await till.pos("POST", "/v1/pos/orders/E1/refunds", {"refund_id": "R1", "amount": 100000})
    # E1 no longer holds the member's tier; evaluate_tiers governs downgrades over time
    assert (await refund.json())["tier"] == {"code": "gold", "name": "金卡", "changed": False}
