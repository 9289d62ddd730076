"""What one till request costs in round trips to PostgreSQL and Redis: counts, never times.

The budgets are those of docs/architecture.md ("Round-trip budgets"), counted with the per-process
caches warm (a terminal's credentials and the chain's program are read at most once a second). A
statement added to one of these paths fails its test, which prints every statement sent. Scan and
orders are at the speed issue's targets; refunds and top-ups at what they cost now.
"""
from datetime import datetime

import pytest

from tests.e2e.programs import PROGRAM, line, order

from ..helpers import adjustment
from ..roundtrips import counting

pytestmark = pytest.mark.postgres

NOW = "2026-11-20T10:05:00+08:00"
# (statements, Redis commands) at most, per request
SCAN = (3, 2)
ORDER_EARNING = (10, 2)
ORDER_REDEEMING = (12, 2)
REFUND = (9, 2)
TOPUP = (8, 2)
ORDER_WITH_COUPON = (9, 2)
MALL_REDEMPTION = (12, 2)


@pytest.fixture
async def till(chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program({**PROGRAM, "stored_value": {"topup_bonuses": [{"min": 10000, "bonus": 1000}]}})
    member = await chain.new_member("13300000001")
    assert (await adjustment(chain, member["id"], 1000, reason="to redeem")).status == 201
    await chain.sale(order("WARM", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
    chain.extra["member_id"] = member["id"]
    return chain


def within(count, budget: tuple[int, int]) -> None:
    statements, commands = budget
    assert len(count.statements) <= statements and len(count.commands) <= commands, count.report()


async def test_scan_by_phone(till):
    with counting() as count:
        assert (await till.pos("POST", "/v1/pos/scan", {"code": "13300000001"})).status == 200
    within(count, SCAN)


async def test_order_earning_points(till):
    with counting() as count:
        await till.sale(order("O1", [line("LATTE", "coffee", 1000)], member_id=till.extra["member_id"], at=NOW))
    within(count, ORDER_EARNING)
    assert any(s.startswith("BEGIN") for s in count.statements) and any(s.startswith("COMMIT") for s in count.statements)


async def test_order_redeeming_points(till):
    with counting() as count:
        await till.sale(order("O2", [line("LATTE", "coffee", 1000)], 900, member_id=till.extra["member_id"], at=NOW,
                              redeem_points=100))
    within(count, ORDER_REDEEMING)


async def test_refund(till):
    await till.sale(order("O3", [line("LATTE", "coffee", 1000)], member_id=till.extra["member_id"], at=NOW))
    with counting() as count:
        answer = await till.pos("POST", "/v1/pos/orders/O3/refunds", {"refund_id": "R1", "amount": 500})
        assert answer.status == 201
    within(count, REFUND)


async def test_stored_value_top_up(till):
    body = {"topup_id": "T1", "amount": 10000, "payment_method": "cash", "member_code": "13300000001"}
    with counting() as count:
        answer = await till.pos("POST", "/v1/pos/stored-value/topups", body)
        assert answer.status == 201, await answer.text()
    within(count, TOPUP)


async def test_order_with_a_coupon(till):
    template = await (await till.admin("POST", "/v1/coupon-templates", {
        "name": "5 off", "kind": "cash", "amount_off": 500, "valid_days": 30})).json()
    coupon = await (await till.admin("POST", f"/v1/members/{till.extra['member_id']}/coupons",
                                     {"template_id": template["id"]})).json()
    with counting() as count:
        sale = await till.sale(order("C1", [line("LATTE", "coffee", 1000)], 500, member_id=till.extra["member_id"],
                                     at=NOW, coupons=[coupon["code"]]))
    assert sale["coupon_discount"] == 500
    within(count, ORDER_WITH_COUPON)


async def test_mall_redemption(till):
    template = await (await till.admin("POST", "/v1/coupon-templates", {
        "name": "cookie", "kind": "gift", "sku": "COOKIE", "valid_days": 30})).json()
    reward = await (await till.admin("POST", "/v1/rewards", {"name": "cookie", "points": 100,
                                                              "template_id": template["id"]})).json()
    with counting() as count:
        answer = await till.admin("POST", f"/v1/members/{till.extra['member_id']}/rewards/{reward['id']}/redeem")
        assert answer.status == 201, await answer.text()
    within(count, MALL_REDEMPTION)
