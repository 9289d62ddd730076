"""The cashier's flow with worked examples: every earning rule of API.md, with its arithmetic."""
from datetime import datetime

import pytest

from loyalty_core.verify import verify

from ..helpers import member_code, problem
from .programs import line, order, program


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat("2026-11-28T12:30:00+08:00")
    return till



async def test_rate_and_floor_at_the_end(till):
    member = await till.new_member("13800000001")
    # Friday 2026-11-27 10:00 Shanghai: no campaign. 1999 fen at 1 point per 100 fen -> 19.99 -> 19.
    result = await till.sale(order("T1", [line("LATTE", "coffee", 1999)], member_id=member["id"],
                                   at="2026-11-27T10:00:00+08:00"))
    assert result["points_earned"] == 19
    assert result["payable"] == 1999
    assert result["balances"]["points"] == 19
    assert result["balances"]["growth"] == 19  # 1 growth per whole yuan paid: 1999 // 100


async def test_category_multiplier_and_excluded_category(till):
    member = await till.new_member("13800000002")
    # fresh x2: 1200 fen -> 12 x 2 = 24; tobacco excluded: 2000 fen -> 0; coffee 1000 -> 10. Total 34.
    result = await till.sale(order("T2", [line("APPLE", "fresh", 1200), line("CIG", "tobacco", 2000),
                                          line("LATTE", "coffee", 1000)], member_id=member["id"],
                                   at="2026-11-27T10:00:00+08:00"))
    assert result["points_earned"] == 34


async def test_campaign_days_hours_and_largest_factor_in_chain_timezone(till, clock):
    member = await till.new_member("13800000003")
    # 2026-11-27T16:30Z is Saturday the 28th 00:30 in Shanghai: member day x2 -> 1000 fen earns 20.
    member_day = await till.sale(order("C1", [line("LATTE", "coffee", 1000)], member_id=member["id"],
                                       at="2026-11-27T16:30:00Z"))
    assert member_day["points_earned"] == 20 and member_day["campaign"] == "member day"
    clock.at = datetime.fromisoformat("2026-11-20T12:00:00+08:00")  # sales reach the gateway within 7 days
    # Wednesday 2026-11-18 is both the 18th (member day x2) and a weekday lunch (x1.5): largest wins, x2.
    both = await till.sale(order("C2", [line("LATTE", "coffee", 1000)], member_id=member["id"],
                                 at="2026-11-18T12:00:00+08:00"))
    assert both["points_earned"] == 20 and both["campaign"] == "member day"
    # Thursday 2026-11-19 11:00 lunch starts (included): 1000 fen x 1.5 = 15.
    lunch = await till.sale(order("C3", [line("LATTE", "coffee", 1000)], member_id=member["id"],
                                  at="2026-11-19T11:00:00+08:00"))
    assert lunch["points_earned"] == 15 and lunch["campaign"] == "lunch"
    # 14:00 is the end of the window, excluded: 10 points.
    after = await till.sale(order("C4", [line("LATTE", "coffee", 1000)], member_id=member["id"],
                                  at="2026-11-19T14:00:00+08:00"))
    assert after["points_earned"] == 10 and after["campaign"] is None


async def test_tier_multiplier_is_exact_decimal(till):
    custom = program()
    custom["tiers"]["levels"][0]["earn_multiplier"] = 1.15
    await till.set_program(custom)
    member = await till.new_member("13800000004")
    # 6000 fen x 1.15 = 69 exactly (a binary float would give 68.99999 -> 68).
    result = await till.sale(order("M1", [line("BEANS", "coffee", 6000)], member_id=member["id"],
                                   at="2026-11-27T10:00:00+08:00"))
    assert result["points_earned"] == 69


async def gold_member(till, phone: str) -> dict:
    """A member who reached gold the real way: 5000 yuan of growth in one big order."""
    member = await till.new_member(phone)
    # Friday 10:00, no campaign, regular x1: 500000 fen -> 5000 points, 5000 growth -> gold at once.
    big = await till.sale(order("BIG-" + phone, [line("TV", "electronics", 500000)], member_id=member["id"],
                                at="2026-11-27T10:00:00+08:00"))
    assert big["points_earned"] == 5000
    assert big["tier"] == {"code": "gold", "name": "金卡", "changed": True}
    return member


MEMBER_DAY_ORDER = [line("LATTE", "coffee", 3600, qty=2), line("APPLE", "fresh", 1200), line("CIG", "tobacco", 2000)]


async def test_member_day_gold_order_with_excluded_line_and_redeemed_points(till):
    member = await gold_member(till, "13800000005")
    code = await member_code(till, member["id"])
    body = order("MD1", MEMBER_DAY_ORDER, 6464, member_code=code, redeem_points=200, at="2026-11-28T12:30:00+08:00")
    # subtotal 3600 + 1200 + 2000 = 6800
    # tier (gold 2%): floor(6800 x 0.02) = 136, shared 72 / 24 / 40
    # points: 200 points = 2 x 100 fen = 200 fen (max 0.5 x 6800 = 3400), shared by largest remainder
    #   105.88 / 35.29 / 58.82 -> 105 / 35 / 58 + the 2 largest remainders -> 106 / 35 / 59
    # payable 6800 - 136 - 200 = 6464
    # eligible: latte 3600-72-106 = 3422, apple 1200-24-35 = 1141 (fresh x2), cigarettes excluded
    # earn: (3422 + 2 x 1141) / 100 x 1.5 (gold) x 2 (member day, the 28th) = 57.04 x 3 = 171.12 -> 171
    preview = await till.pos("POST", "/v1/pos/checkout/preview", {k: v for k, v in body.items() if k != "payments"})
    assert await preview.json() == {"subtotal": 6800, "tier_discount": 136, "coupon_discount": 0,
                                    "points_discount": 200, "payable": 6464, "points_to_earn": 171}
    result = await till.sale(body)
    assert (result["subtotal"], result["tier_discount"], result["points_discount"], result["payable"]) == (
        6800, 136, 200, 6464)
    assert result["points_earned"] == 171
    assert result["campaign"] == "member day"
    # 5000 - 200 + 171 = 4971 points; growth 5000 + 64
    assert result["balances"]["points"] == 4971
    assert result["balances"]["growth"] == 5064
    assert result["tier"] == {"code": "gold", "name": "金卡", "changed": False}

    # Half of it back, by amount: ratio 3232 / 6464 = 1/2
    # earned 171 -> floor(85.5) = 85 reversed; redeemed 200 -> 100 returned; growth 64 -> 32 reversed
    half = await till.pos("POST", "/v1/pos/orders/MD1/refunds", {"refund_id": "R1", "amount": 3232})
    assert half.status == 201, await half.text()
    refund = await half.json()
    assert (refund["points_reversed"], refund["points_returned"], refund["stored_value_returned"]) == (85, 100, 0)
    assert refund["balances"]["points"] == 4971 - 85 + 100
    assert refund["balances"]["growth"] == 5064 - 32
    # The other half: the rest of everything comes back exactly (171 - 85 = 86, 200 - 100 = 100).
    rest = await (await till.pos("POST", "/v1/pos/orders/MD1/refunds", {"refund_id": "R2", "amount": 3232})).json()
    assert (rest["points_reversed"], rest["points_returned"]) == (86, 100)
    assert rest["balances"]["points"] == 5000
    assert rest["balances"]["growth"] == 5000
    assert await verify() == []


async def test_full_refund_after_the_points_were_spent_goes_negative(till):
    member = await till.new_member("13800000006")
    # A: 10000 fen on a plain Friday morning -> 100 points.
    await till.sale(order("A", [line("BEANS", "coffee", 10000)], member_id=member["id"], at="2026-11-27T10:00:00+08:00"))
    # B: spends the 100 points = 100 fen off 1000 (max 500): payable 900, earns floor(900/100) = 9.
    spent = await till.sale(order("B", [line("LATTE", "coffee", 1000)], 900, member_id=member["id"],
                                  redeem_points=100, at="2026-11-27T10:05:00+08:00"))
    assert spent["balances"]["points"] == 9
    # A is returned whole: all 100 earned points are reversed though only 9 are left: 9 - 100 = -91.
    back = await till.pos("POST", "/v1/pos/orders/A/refunds", {"refund_id": "RA", "lines": [{"sku": "BEANS", "qty": 1}]})
    refund = await back.json()
    assert refund["points_reversed"] == 100
    assert refund["balances"]["points"] == -91
    # A negative balance can't be spent ...
    refused = await till.pos("POST", "/v1/pos/orders", order("C", [line("LATTE", "coffee", 1000)], 900,
                                                              member_id=member["id"], redeem_points=100,
                                                              at="2026-11-27T10:10:00+08:00"))
    await problem(refused, 422, "insufficient_points")
    # ... and new points fill it first: 5000 fen earns 50 -> -41.
    refill = await till.sale(order("D", [line("BEANS", "coffee", 5000)], member_id=member["id"],
                                   at="2026-11-27T10:15:00+08:00"))
    assert refill["balances"]["points"] == -41
    assert await verify() == []


async def test_refund_of_an_excluded_line_reverses_no_points(till):
    member = await till.new_member("13800000007")
    # 1000 coffee earns 10; 2000 tobacco earns 0.
    await till.sale(order("E1", [line("LATTE", "coffee", 1000), line("CIG", "tobacco", 2000)], member_id=member["id"],
                          at="2026-11-27T10:00:00+08:00"))
    back = await (await till.pos("POST", "/v1/pos/orders/E1/refunds",
                                 {"refund_id": "R", "lines": [{"sku": "CIG", "qty": 1}]})).json()
    # The cigarettes carried no earning weight: 0 points back; 2000 fen refunded.
    assert back["points_reversed"] == 0
    assert back["amount"] == 2000
    assert back["balances"]["points"] == 10


async def test_stored_value_payment_and_its_pro_rata_return(till):
    member = await till.new_member("13800000008")
    credit = await till.admin("POST", f"/v1/members/{member['id']}/adjustments",
                              {"account": "stored_value", "amount": 5000, "reason": "opening balance"})
    assert credit.status == 201
    # 3000 fen paid: 2000 from stored value, 1000 by WeChat Pay. Stored-value payments earn like any other: 30.
    body = order("SV1", [line("CAKE", "bakery", 3000)], at="2026-11-27T10:00:00+08:00", member_id=member["id"])
    body["payments"] = [{"method": "stored_value", "amount": 2000}, {"method": "wechat_pay", "amount": 1000}]
    result = await till.sale(body)
    assert result["points_earned"] == 30
    assert result["balances"]["stored_value"] == 3000
    # A third of the order back (1000 of 3000): a third of the 2000 stored value returns = 666.
    back = await (await till.pos("POST", "/v1/pos/orders/SV1/refunds", {"refund_id": "R", "amount": 1000})).json()
    assert back["stored_value_returned"] == 666
    assert back["points_reversed"] == 10
    assert back["balances"]["stored_value"] == 3666


async def test_guest_sale_is_recorded_and_earns_nothing(till):
    result = await till.sale(order("G1", [line("LATTE", "coffee", 1800)], at="2026-11-27T10:00:00+08:00"))
    assert result["member_id"] is None
    assert result["points_earned"] == 0
    assert result["payable"] == 1800
    again = await till.pos("POST", "/v1/pos/orders", order("G1", [line("LATTE", "coffee", 1800)],
                                                           at="2026-11-27T10:00:00+08:00"))
    assert again.status == 200 and (await again.json())["duplicate"] is True


async def test_preview_equals_the_commit_and_changes_nothing(till):
    member = await gold_member(till, "13800000009")
    before = await till.member(member["id"])
    body = order("P1", MEMBER_DAY_ORDER, 6464, member_id=member["id"], redeem_points=200, at="2026-11-28T10:00:00+08:00")
    preview_body = {k: v for k, v in body.items() if k != "payments"}
    first = await (await till.pos("POST", "/v1/pos/checkout/preview", preview_body)).json()
    second = await (await till.pos("POST", "/v1/pos/checkout/preview", preview_body)).json()
    assert first == second
    assert await till.member(member["id"]) == before
    committed = await till.sale(body)
    assert {k: committed[k] for k in first if k != "points_to_earn"} == {k: v for k, v in first.items()
                                                                         if k != "points_to_earn"}
    assert committed["points_earned"] == first["points_to_earn"]


async def test_same_txn_under_a_new_idempotency_key_is_a_duplicate(till):
    member = await till.new_member("13800000010")
    body = order("DUP", [line("LATTE", "coffee", 1000)], member_id=member["id"], at="2026-11-27T10:00:00+08:00")
    first = await till.sale(body)
    again = await till.sale(body, status=200)
    assert again == {**first, "duplicate": True}
    assert (await till.member(member["id"]))["balances"]["points"] == 10


async def test_pos_member_registration_and_scan_by_phone_card_and_code(till):
    created = await till.pos("POST", "/v1/pos/members", {"phone": "13800000011", "name": "李雷"})
    assert created.status == 201, await created.text()
    member = await created.json()
    assert member["store_code"] == "S01"
    for code in ("13800000011", member["card_no"], await member_code(till, member["id"])):
        scanned = await till.pos("POST", "/v1/pos/scan", {"code": code})
        assert scanned.status == 200, await scanned.text()
        body = await scanned.json()
        assert body["kind"] == "member"
        assert body["member"]["id"] == member["id"]
        assert body["member"]["display_name"] == "李*"


async def test_preview_ignores_payments_and_a_review_level_is_not_entered_by_a_sale(till):
    custom = program()
    custom["tiers"]["levels"][2]["manual_review"] = True  # gold needs a reviewer
    await till.set_program(custom)
    member = await till.new_member("13800000012")
    body = order("RV1", [line("TV", "electronics", 600000)], member_id=member["id"], at="2026-11-27T10:00:00+08:00")
    preview = await till.pos("POST", "/v1/pos/checkout/preview", body)
    assert preview.status == 200 and (await preview.json())["payable"] == 600000
    sold = await till.sale(body)
    # 6000 growth reaches gold (5000), which waits for review: the member goes as far as silver.
    assert sold["tier"] == {"code": "silver", "name": "银卡", "changed": True}
