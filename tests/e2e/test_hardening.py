"""The defects of the hardening issue, each as a till or an operator would meet it."""
import json
import secrets as stdlib_secrets
from datetime import datetime, timedelta

import orjson
import pytest

from gateway.services import SERVICES
from loyalty_core import codes
from loyalty_core.models import JournalEntry, Member, Order
from loyalty_core.verify import verify

from ..helpers import adjustment, member_code, problem
from .programs import PROGRAM, line, order

NOW = "2026-11-20T10:05:00+08:00"


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat(NOW)
    return till


def at(delta: timedelta) -> str:
    return (datetime.fromisoformat(NOW) + delta).isoformat()


# ---- back-dated sales ----------------------------------------------------------------------

async def test_an_online_order_must_be_recent_and_its_code_valid_on_receipt(till, clock):
    member = await till.new_member("13700000001")
    for when in (timedelta(days=-30), timedelta(days=-7, seconds=-1), timedelta(minutes=6)):
        refused = await problem(await till.pos("POST", "/v1/pos/orders", order(
            "OLD", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=at(when))), 422,
            "occurred_at_out_of_range")
        assert refused["errors"] == [{"field": "occurred_at", "message": "out of range"}]
    assert not await Order.exists(txn_id="OLD")
    # a code seen three minutes ago, with occurred_at inside its validity: the order is received now
    clock.advance(minutes=-3)
    code = await member_code(till, member["id"])
    seen_at = clock.now().isoformat()
    clock.advance(minutes=3)
    late = await till.pos("POST", "/v1/pos/orders", order("LATE", [line("LATTE", "coffee", 1000)],
                                                           member_code=code, at=seen_at))
    await problem(late, 410, "code_expired")
    assert (await till.member(member["id"]))["balances"]["points"] == 0
    # seven days back is still a sale the till may send, and the order records when it arrived
    ok = await till.sale(order("WEEK", [line("LATTE", "coffee", 1000)], member_id=member["id"],
                               at=at(timedelta(days=-7))))
    row = await Order.get(id=ok["order_id"])
    assert row.received_at == clock.now() and row.occurred_at == datetime.fromisoformat(at(timedelta(days=-7)))


async def test_only_the_offline_batch_resolves_a_code_at_occurred_at(till, clock):
    member = await till.new_member("13700000002")
    clock.advance(minutes=-3)
    code = await member_code(till, member["id"])
    sold_at = clock.now().isoformat()
    clock.advance(minutes=3)
    batch = await till.pos("POST", "/v1/pos/orders/batch", {"orders": [
        order("OFF1", [line("LATTE", "coffee", 1000)], member_code=code, at=sold_at),
        order("OFF2", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=at(timedelta(days=-8)))]})
    results = (await batch.json())["results"]
    assert [r["status"] for r in results] == ["created", "rejected"]
    assert results[1]["problem"]["code"] == "occurred_at_out_of_range"
    assert (await till.member(member["id"]))["balances"]["points"] == 10


# ---- phones ------------------------------------------------------------------------------

async def test_a_phone_in_full_width_or_other_spellings_is_refused_everywhere(till):
    await till.set_program({**PROGRAM, "behaviors": {"register": {"points": 100}}})
    first = await till.new_member("13800138000")
    for spelling in ["1380013800０", "138 0013 8000", "+8613800138000", "１３８００１３８０００", "13800138000 "]:
        for route, send in (("/v1/members", till.admin), ("/v1/pos/members", till.pos)):
            refused = await problem(await send("POST", route, {"phone": spelling}), 422, "validation_error")
            assert [e["field"] for e in refused["errors"]] == ["phone"], (route, spelling)
    assert await Member.filter(chain_id=till.chain_id).count() == 1
    assert (await till.member(first["id"]))["balances"]["points"] == 100
    assert await JournalEntry.filter(chain_id=till.chain_id, kind="behavior").count() == 1
    scan = await till.pos("POST", "/v1/pos/scan", {"code": "１３８００１３８０００"})
    await problem(scan, 404, "code_not_found")


# ---- bad input that used to be a 500 ------------------------------------------------------

async def test_numbers_past_the_bounds_are_422_never_500(till):
    member = await till.new_member("13700000003")
    huge = 10**19
    cases = [
        (order("N1", [{**line("LATTE", "coffee", 1000), "unit_price": huge}], at=NOW), "lines[0].unit_price"),
        (order("N2", [{**line("LATTE", "coffee", 1000), "amount": huge}], 1000, at=NOW), "lines[0].amount"),
        (order("N3", [line("LATTE", "coffee", 1000)], member_id=huge, at=NOW), "member_id"),
        (order("N4", [line("LATTE", "coffee", 1000)], member_id=2**53, at=NOW), "member_id"),
        (order("N5", [{**line("LATTE", "coffee", 1000), "qty": 1_000_001}], at=NOW), "lines[0].qty"),
        (order("N6", [line("LATTE", "coffee", 10_000_000_001)], at=NOW), "lines[0].amount"),
        (order("N7", [line("LATTE", "coffee", 1000)], member_id=member["id"], redeem_points=2**53, at=NOW),
         "redeem_points"),
        (order("N8", [line("LATTE", "coffee", 1000)] * 501, at=NOW), "lines"),
    ]
    for body, field in cases:
        refused = await problem(await till.pos("POST", "/v1/pos/orders", raw=json.dumps(body).encode()), 422,
                                "validation_error")
        assert field in [e["field"] for e in refused["errors"]], (field, refused)
    refund = await till.pos("POST", "/v1/pos/orders/N1/refunds", raw=json.dumps({"refund_id": "R", "amount": huge})
                            .encode())
    await problem(refund, 422, "validation_error")
    batch = await till.pos("POST", "/v1/pos/orders/batch", raw=json.dumps({"orders": [
        order("B1", [{**line("LATTE", "coffee", 1000), "amount": 2**70}], at=NOW),
        {"txn_id": "B2", "weird": 2**80}]}).encode())
    assert batch.status == 200
    assert [(r["txn_id"], r["status"], r["problem"]["code"]) for r in (await batch.json())["results"]] == [
        ("B1", "rejected", "validation_error"), ("B2", "rejected", "validation_error")]
    too_many = await till.pos("POST", "/v1/pos/orders/batch", {"orders": [{"txn_id": f"X{i}"} for i in range(501)]})
    await problem(too_many, 422, "validation_error")
    program = dict(PROGRAM, tiers={"levels": [{"code": "regular", "name": "R", "threshold": 0},
                                              {"code": "big", "name": "B", "threshold": huge}]})
    put = await till.client.put("/v1/program", data=json.dumps(program),
                                headers={"Authorization": f"Bearer {till.admin_key}"})
    await problem(put, 422, "validation_error")
    assert not await Order.exists(chain_id=till.chain_id)


async def test_malformed_credential_headers_are_401(till):
    body = orjson.dumps({"code": "13700000009"})
    for headers in ({"X-Signature": "ä" * 64}, {"X-Signature": "g" * 64}, {"X-Signature": "ab"},
                    {"X-Timestamp": "١٧٩٥٣٥٥٥٠٤"}, {"X-Timestamp": "9" * 40}, {"X-Terminal-Id": "Té" * 30},
                    {"X-Nonce": "ä" * 20}):
        answer = await till.pos("POST", "/v1/pos/scan", raw=body, headers=headers)
        assert answer.status == 401, (headers, await answer.text())
        assert answer.headers["Content-Type"].startswith("application/problem+json")
    for bearer in ("Bearer lk_ä", "Bearer " + "x" * 300):
        answer = await till.client.get("/v1/members", headers={"Authorization": bearer.encode("utf-8").decode("latin-1")})
        await problem(answer, 401, "unauthorized")


# ---- dynamic member codes ----------------------------------------------------------------------

async def test_member_codes_never_collide_and_old_digits_can_be_issued_again(till, monkeypatch):
    services = till.client.server.app[SERVICES]
    a, b = await till.new_member("13700000004"), await till.new_member("13700000005")
    # a random source that repeats itself: the second draw hits a live code and draws again
    draws = iter("12345678901" * 2 + "22222222222")
    monkeypatch.setattr(codes.secrets, "choice", lambda digits: next(draws))
    first = await codes.issue(services.cache, services.vault, till.chain_id, a["id"], till.clock.now())
    second = await codes.issue(services.cache, services.vault, till.chain_id, b["id"], till.clock.now())
    monkeypatch.setattr(codes.secrets, "choice", stdlib_secrets.choice)
    assert first.code != second.code
    assert (await (await till.pos("POST", "/v1/pos/scan", {"code": first.code})).json())["member"]["id"] == a["id"]
    assert (await (await till.pos("POST", "/v1/pos/scan", {"code": second.code})).json())["member"]["id"] == b["id"]
    used = await till.sale(order("C1", [line("LATTE", "coffee", 1000)], member_code=first.code, at=NOW))
    assert used["member_id"] == a["id"]
    # a day later the record is forgotten and the same digits may come again, for another member
    await services.cache.redis.delete(codes._key(services.cache, till.chain_id, first.code))
    till.clock.advance(days=1)
    monkeypatch.setattr(codes.secrets, "choice", lambda digits, it=iter("12345678901"): next(it))
    again = await codes.issue(services.cache, services.vault, till.chain_id, b["id"], till.clock.now())
    assert again.code == first.code
    reused = await till.sale(order("C2", [line("LATTE", "coffee", 1000)], member_code=again.code,
                                   at=till.clock.now().isoformat()))
    assert reused["member_id"] == b["id"]  # not a false code_used


async def test_a_code_record_lives_under_its_chain(till, other_chain):
    member = await till.new_member("13700000006")
    code = await member_code(till, member["id"])
    services = till.client.server.app[SERVICES]
    assert await services.cache.redis.exists(codes._key(services.cache, till.chain_id, code))
    assert not await services.cache.redis.exists(codes._key(services.cache, other_chain.chain_id, code))
    await problem(await other_chain.pos("POST", "/v1/pos/scan", {"code": code}), 404, "code_not_found")


# ---- claw-backs and refunds ---------------------------------------------------------------------

async def test_a_refund_claws_back_from_the_orders_own_lot(till, clock):
    await till.set_program({**PROGRAM, "points": {**PROGRAM["points"], "expiry": {"mode": "rolling_months",
                                                                                   "months": 12}}})
    member = await till.new_member("13700000007")
    assert (await adjustment(till, member["id"], 100, reason="older points")).status == 201  # expires first
    clock.advance(days=40)
    later = clock.now().isoformat()
    await till.sale(order("LOT", [line("BEANS", "coffee", 10000)], member_id=member["id"], at=later))  # +100
    refund = await till.pos("POST", "/v1/pos/orders/LOT/refunds", {"refund_id": "R1", "amount": 10000})
    assert (await refund.json())["points_reversed"] == 100
    # the adjustment's lot is whole: when it expires (before the order's would have), all of it goes
    clock.advance(days=330)
    job = await (await till.admin("POST", "/v1/jobs/expire_points")).json()
    assert (job["processed"], job["points"]) == (1, 100)
    assert (await till.member(member["id"]))["balances"]["points"] == 0
    assert await verify() == []


async def test_a_line_refund_after_a_full_amount_refund_is_refused(till):
    member = await till.new_member("13700000008")
    await till.sale(order("FULL", [line("LATTE", "coffee", 1000, qty=2)], member_id=member["id"], at=NOW))
    assert (await till.pos("POST", "/v1/pos/orders/FULL/refunds", {"refund_id": "A", "amount": 1000})).status == 201
    lines = await till.pos("POST", "/v1/pos/orders/FULL/refunds", {"refund_id": "B", "lines": [{"sku": "LATTE",
                                                                                                  "qty": 1}]})
    await problem(lines, 422, "refund_exceeds_order")


# ---- terminals and metrics -------------------------------------------------------------------------

async def test_a_revoked_terminal_is_refused(till, other_chain):
    assert (await till.pos("POST", "/v1/pos/scan", {"code": "13700000010"})).status == 404
    path = f"/v1/stores/S01/terminals/{till.terminal_id}"
    await problem(await other_chain.admin("DELETE", path), 404, "not_found")
    revoked = await till.admin("DELETE", path)
    assert revoked.status == 204
    await problem(await till.pos("POST", "/v1/pos/scan", {"code": "13700000010"}), 401, "unauthorized")
    await problem(await till.admin("DELETE", path), 404, "not_found")
    assert (await other_chain.pos("POST", "/v1/pos/scan", {"code": "13700000010"})).status == 404


async def test_metrics_count_problem_answers(till):
    await till.client.get("/v1/members")  # 401
    await till.client.get("/v1/no-such-route")  # 404
    text = await (await till.client.get("/metrics")).text()
    assert 'route="/v1/members",status="401"' in text
    assert 'status="404"' in text


async def test_path_codes_that_cannot_exist_and_nul_characters_are_not_500s(till):
    long_txn = await till.pos("POST", "/v1/pos/orders/" + "0" * 65 + "/refunds", {"refund_id": "R1", "amount": 1})
    await problem(long_txn, 404, "order_not_found")
    nul_txn = await till.pos("POST", "/v1/pos/orders/a%00b/refunds", {"refund_id": "R1", "amount": 1})
    await problem(nul_txn, 404, "order_not_found")
    await problem(await till.admin("POST", "/v1/stores/" + "S" * 33 + "/terminals", {"code": "P2"}), 404, "not_found")
    await problem(await till.admin("POST", "/v1/stores/a%00b/terminals", {"code": "P2"}), 404, "not_found")
    await problem(await till.admin("DELETE", "/v1/stores/S01/terminals/" + "T" * 41), 404, "not_found")
    program = {**PROGRAM, "points": {**PROGRAM["points"], "exclude_categories": ["a\u0000"]}}
    refused = await problem(await till.admin("PUT", "/v1/program", program), 422, "validation_error")
    assert refused["errors"] == [{"field": "points.exclude_categories[0]", "message": "must not contain U+0000"}]
    await problem(await till.admin("GET", "/v1/members?tier=a%00"), 422, "validation_error")
