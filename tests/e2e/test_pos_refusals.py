"""Every 4xx of API.md's POS section, triggered for real, each checked to have changed nothing."""
from datetime import datetime

import pytest
from tortoise import Tortoise

from loyalty_core.verify import verify

from ..helpers import member_code, problem
from .programs import line, order

AT = "2026-11-20T10:05:00+08:00"  # the till's clock in these tests


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat("2026-11-20T10:05:00+08:00")
    return till


async def snapshot(till, member_id: int | None = None) -> dict:
    """What a refused request must leave as it was: balances, journal, orders, refunds, outbox."""
    conn = Tortoise.get_connection("default")
    counts = {}
    for table in ("orders", "refunds", "journal_entries", "postings", "points_lots", "outbox_events"):
        counts[table] = (await conn.execute_query_dict(f"SELECT COUNT(*) AS n FROM {table}"))[0]["n"]
    if member_id is not None:
        counts["member"] = await till.member(member_id)
    return counts


@pytest.fixture
async def rich(till):
    """A member with 1000 points and 500 fen of stored value."""
    member = await till.new_member("13900000001")
    for account, amount in (("points", 1000), ("stored_value", 500)):
        response = await till.admin("POST", f"/v1/members/{member['id']}/adjustments",
                                    {"account": account, "amount": amount, "reason": "setup"})
        assert response.status == 201
    return member


async def refused(till, member_id, body, status, code, path="/v1/pos/orders"):
    before = await snapshot(till, member_id)
    answer = await till.pos("POST", path, body)
    details = await problem(answer, status, code)
    assert await snapshot(till, member_id) == before
    assert await verify() == []
    return details


async def test_amount_mismatch_tells_the_payable(till, rich):
    details = await refused(till, rich["id"], order("X1", [line("LATTE", "coffee", 1000)], 999, member_id=rich["id"],
                                                    at=AT), 422, "amount_mismatch")
    assert details["payable"] == 1000 and "1000" in details["detail"]
    # a refused order leaves no trace: its txn_id can be sent again
    assert (await till.pos("POST", "/v1/pos/orders", order("X1", [line("LATTE", "coffee", 1000)],
                                                           member_id=rich["id"], at=AT))).status == 201


async def test_insufficient_points(till):
    poor = await till.new_member("13900000002")
    await refused(till, poor["id"], order("X2", [line("LATTE", "coffee", 1000)], 900, member_id=poor["id"],
                                          redeem_points=100, at=AT), 422, "insufficient_points")


async def test_insufficient_stored_value(till, rich):
    body = order("X3", [line("LATTE", "coffee", 1000)], member_id=rich["id"], at=AT, method="stored_value")
    await refused(till, rich["id"], body, 422, "insufficient_stored_value")


async def test_a_guest_cannot_pay_with_stored_value_or_redeem(till, rich):
    await refused(till, rich["id"], order("G1", [line("LATTE", "coffee", 1000)], at=AT, method="stored_value"),
                  422, "insufficient_stored_value")
    await refused(till, rich["id"], order("G2", [line("LATTE", "coffee", 1000)], 900, at=AT, redeem_points=100),
                  422, "invalid_redeem_points")


async def test_coupon_not_usable(till, rich):
    await refused(till, rich["id"], order("X4", [line("LATTE", "coffee", 1000)], member_id=rich["id"],
                                          coupons=["CPN-NOT-MINE"], at=AT), 422, "coupon_not_usable")


async def test_member_frozen(till, rich):
    frozen = await till.admin("POST", f"/v1/members/{rich['id']}/freeze", {"reason": "fraud check"})
    assert frozen.status == 200
    await refused(till, rich["id"], order("X5", [line("LATTE", "coffee", 1000)], member_id=rich["id"], at=AT),
                  422, "member_frozen")


async def test_invalid_redeem_points(till, rich):
    await refused(till, rich["id"], order("X6", [line("LATTE", "coffee", 1000)], 950, member_id=rich["id"],
                                          redeem_points=50, at=AT), 422, "invalid_redeem_points")


async def test_redeem_over_limit(till, rich):
    # max_ratio 0.5 of 1000 fen = 500 fen = 500 points; 600 is over.
    await refused(till, rich["id"], order("X7", [line("LATTE", "coffee", 1000)], 400, member_id=rich["id"],
                                          redeem_points=600, at=AT), 422, "redeem_over_limit")


async def test_code_used_once_per_order(till, rich):
    code = await member_code(till, rich["id"])
    first = await till.pos("POST", "/v1/pos/orders", order("X8", [line("LATTE", "coffee", 1000)], member_code=code,
                                                            at=AT))
    assert first.status == 201
    await refused(till, rich["id"], order("X9", [line("LATTE", "coffee", 1000)], member_code=code, at=AT),
                  409, "code_used")


async def test_code_expired_and_not_found(till, rich, clock):
    code = await member_code(till, rich["id"])
    clock.advance(seconds=121)
    now = clock.now().isoformat()
    await refused(till, rich["id"], order("X10", [line("LATTE", "coffee", 1000)], member_code=code, at=now),
                  410, "code_expired")
    await refused(till, rich["id"], {"code": code}, 410, "code_expired", path="/v1/pos/scan")
    forged = code[:-1] + str((int(code[-1]) + 1) % 10)
    await refused(till, rich["id"], {"code": forged}, 404, "code_not_found", path="/v1/pos/scan")
    await refused(till, rich["id"], {"code": "13999999999"}, 404, "code_not_found", path="/v1/pos/scan")
    await refused(till, rich["id"], {"code": "NO-SUCH-CARD"}, 404, "code_not_found", path="/v1/pos/scan")


async def test_another_chains_code_is_not_found(till, rich, other_chain):
    code = await member_code(till, rich["id"])
    answer = await other_chain.pos("POST", "/v1/pos/scan", {"code": code})
    await problem(answer, 404, "code_not_found")
    answer = await other_chain.pos("POST", "/v1/pos/scan", {"code": "13900000001"})
    await problem(answer, 404, "code_not_found")


async def test_refund_exceeds_order_and_order_not_found(till, rich):
    made = await till.pos("POST", "/v1/pos/orders", order("R1", [line("LATTE", "coffee", 1000, qty=2)],
                                                           member_id=rich["id"], at=AT))
    assert made.status == 201
    await refused(till, rich["id"], {"refund_id": "A", "amount": 1001}, 422, "refund_exceeds_order",
                  path="/v1/pos/orders/R1/refunds")
    await refused(till, rich["id"], {"refund_id": "B", "lines": [{"sku": "LATTE", "qty": 3}]}, 422,
                  "refund_exceeds_order", path="/v1/pos/orders/R1/refunds")
    ok = await till.pos("POST", "/v1/pos/orders/R1/refunds", {"refund_id": "C", "amount": 600})
    assert ok.status == 201
    await refused(till, rich["id"], {"refund_id": "D", "amount": 401}, 422, "refund_exceeds_order",
                  path="/v1/pos/orders/R1/refunds")
    await refused(till, rich["id"], {"refund_id": "E", "amount": 1}, 404, "order_not_found",
                  path="/v1/pos/orders/NOPE/refunds")
    again = await till.pos("POST", "/v1/pos/orders/R1/refunds", {"refund_id": "C", "amount": 600})
    assert again.status == 200 and (await again.json())["duplicate"] is True


async def test_unknown_member_and_bad_bodies(till, rich):
    await refused(till, rich["id"], order("B1", [line("LATTE", "coffee", 1000)], member_id=999999, at=AT),
                  404, "member_not_found")
    for body, field in [
        ({"txn_id": "B2", "lines": [], "payments": []}, "lines"),
        (order("B3", [{**line("LATTE", "coffee", 1000), "qty": 0}], at=AT), "lines[0].qty"),
        (order("B4", [{**line("LATTE", "coffee", 1000), "amount": "1000"}], 1000, at=AT), "lines[0].amount"),
        (order("B5", [line("LATTE", "coffee", 1000)], at="2026-11-20 10:00"), "occurred_at"),
        ({**order("B6", [line("LATTE", "coffee", 1000)], at=AT), "member_id": 1, "member_code": "x"}, "(body)"),
        (order("B7", [line("LATTE", "coffee", 1000)], at=AT, redeem_points=-100), "redeem_points"),
    ]:
        details = await refused(till, rich["id"], body, 422, "validation_error")
        assert field in [e["field"] for e in details["errors"]], details
    await refused(till, rich["id"], {"refund_id": "X", "amount": 10, "lines": [{"sku": "A", "qty": 1}]}, 422,
                  "validation_error", path="/v1/pos/orders/B1/refunds")


async def test_terminal_signature_codes(till, clock):
    path, body = "/v1/pos/scan", {"code": "13900000009"}
    stale = int(clock.now().timestamp()) - 301
    await problem(await till.pos("POST", path, body, timestamp=stale), 401, "stale_request")
    await problem(await till.pos("POST", path, body, secret="0" * 64), 401, "invalid_signature")
    nonce = "n" * 20
    first = await till.pos("POST", path, body, nonce=nonce)
    assert first.status == 404  # signed fine; the phone just isn't a member
    await problem(await till.pos("POST", path, body, nonce=nonce), 401, "replayed_request")
    # a scan and a preview record their nonce while they read: sent again, each is refused all the same
    member = await till.new_member("13900000019")
    for read, sent in (("/v1/pos/scan", {"code": "13900000019"}),
                       ("/v1/pos/checkout/preview", {k: v for k, v in order(
                           "P1", [line("LATTE", "coffee", 1800)], member_id=member["id"], at=AT).items()
                           if k != "payments"})):
        assert (await till.pos("POST", read, sent, nonce="r" * 16 + read[-4:])).status == 200
        await problem(await till.pos("POST", read, sent, nonce="r" * 16 + read[-4:]), 401, "replayed_request")
    await problem(await till.client.post(path, json=body), 401, "unauthorized")
    await problem(await till.pos("POST", path, body, nonce="short"), 401, "unauthorized")
    # the signature covers the body: the same headers with another body fail
    tampered = await till.pos("POST", path, body, headers={"X-Signature": "ab" * 32})
    await problem(tampered, 401, "invalid_signature")
    # an admin key is not a terminal, and a terminal is not an admin
    await problem(await till.client.post(path, json=body, headers={"Authorization": f"Bearer {till.admin_key}"}),
                  401, "unauthorized")


async def test_order_needs_an_idempotency_key(till, rich):
    body = order("K1", [line("LATTE", "coffee", 1000)], member_id=rich["id"], at=AT)
    before = await snapshot(till, rich["id"])
    answer = await till.pos("POST", "/v1/pos/orders", body, idempotency_key=False)
    await problem(answer, 400, "idempotency_key_required")
    assert await snapshot(till, rich["id"]) == before
