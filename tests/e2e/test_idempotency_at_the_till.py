"""An Idempotency-Key at the till, now that a sale's and a top-up's claim goes with their member
look-up (docs/architecture.md, "Round-trip budgets"): every answer API.md names, through HTTP,
for several members, a guest and two chains, with what the till reads afterwards."""
from datetime import datetime

import orjson
import pytest

from gateway import idempotency
from gateway.services import SERVICES

from ..helpers import member_code, problem, sql_rows
from .programs import line, order

AT = "2026-11-27T10:00:00+08:00"


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat("2026-11-28T12:30:00+08:00")
    return till


async def orders_stored() -> int:
    return len(await sql_rows("SELECT id FROM orders"))


async def test_a_sale_sent_again_under_its_key_is_replayed_and_counted_once(till):
    ann, bo = await till.new_member("13600000001"), await till.new_member("13600000002")
    sent = order("K1", [line("LATTE", "coffee", 2500)], member_id=ann["id"], at=AT)
    first = await till.pos("POST", "/v1/pos/orders", sent, idempotency_key="sale-1")
    assert first.status == 201
    again = await till.pos("POST", "/v1/pos/orders", sent, idempotency_key="sale-1")
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    # by member code (the scanner's path), and a guest: the same
    by_code = order("K2", [line("LATTE", "coffee", 1200)], member_code=await member_code(till, bo["id"]), at=AT)
    guest = order("K3", [line("LATTE", "coffee", 900)], at=AT)
    for key, body in (("sale-2", by_code), ("sale-3", guest)):
        answers = [await till.pos("POST", "/v1/pos/orders", body, idempotency_key=key) for _ in range(3)]
        assert [a.status for a in answers] == [201] * 3
        assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    assert await orders_stored() == 3
    assert (await till.member(ann["id"]))["balances"]["points"] == 25
    assert (await till.member(bo["id"]))["balances"]["points"] == 12


async def test_a_key_sent_with_another_sale_changes_nothing(till):
    ann = await till.new_member("13600000003")
    assert (await till.pos("POST", "/v1/pos/orders", order("R1", [line("LATTE", "coffee", 1000)],
                                                            member_id=ann["id"], at=AT),
                           idempotency_key="reused")).status == 201
    other = order("R2", [line("LATTE", "coffee", 5000)], member_id=ann["id"], at=AT)
    await problem(await till.pos("POST", "/v1/pos/orders", other, idempotency_key="reused"), 422,
                  "idempotency_key_reused")
    top_up = {"topup_id": "T9", "amount": 10000, "payment_method": "cash", "member_id": ann["id"]}
    await problem(await till.pos("POST", "/v1/pos/stored-value/topups", top_up, idempotency_key="reused"), 422,
                  "idempotency_key_reused")
    assert await orders_stored() == 1
    member = await till.member(ann["id"])
    assert (member["balances"]["points"], member["balances"]["stored_value"]) == (10, 0)


async def test_refusals_before_and_at_the_look_up_are_kept_and_replayed(till):
    ann = await till.new_member("13600000004")
    too_old = order("O1", [line("LATTE", "coffee", 1000)], member_id=ann["id"], at="2025-01-01T10:00:00+08:00")
    unknown = order("O2", [line("LATTE", "coffee", 1000)], member_id=ann["id"] + 1000, at=AT)
    for key, body, status, code in (("old", too_old, 422, "occurred_at_out_of_range"),
                                    ("nobody", unknown, 404, "member_not_found")):
        await problem(await till.pos("POST", "/v1/pos/orders", body, idempotency_key=key), status, code)
        replayed = await till.pos("POST", "/v1/pos/orders", body, idempotency_key=key)
        await problem(replayed, status, code)
        assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await orders_stored() == 0


async def test_a_key_whose_first_request_still_runs_is_409_and_changes_nothing(till, clock):
    ann = await till.new_member("13600000005")
    body = order("B1", [line("LATTE", "coffee", 1000)], member_id=ann["id"], at=AT)
    vault = till.client.server.app[SERVICES].vault
    running = await idempotency.claim(till.chain_id, "busy", idempotency.fingerprint(
        "POST", "/v1/pos/orders", orjson.dumps(body)), clock.now(), vault)
    assert isinstance(running, idempotency.Claim)
    await problem(await till.pos("POST", "/v1/pos/orders", body, idempotency_key="busy"), 409, "request_in_progress")
    assert await orders_stored() == 0 and (await till.member(ann["id"]))["balances"]["points"] == 0


async def test_a_top_up_sent_again_under_its_key_is_replayed_and_credited_once(till, other_chain):
    ann = await till.new_member("13600000006")
    body = {"topup_id": "T1", "amount": 10000, "payment_method": "cash", "member_id": ann["id"]}
    answers = [await till.pos("POST", "/v1/pos/stored-value/topups", body, idempotency_key="t-1") for _ in range(2)]
    assert [a.status for a in answers] == [201, 201] and answers[1].headers["Idempotent-Replayed"] == "true"
    assert (await till.member(ann["id"]))["balances"]["stored_value"] == 10000
    # another chain's till with the same key: its own key, its own member (none by that id there)
    await problem(await other_chain.pos("POST", "/v1/pos/stored-value/topups", body, idempotency_key="t-1"), 404,
                  "member_not_found")
