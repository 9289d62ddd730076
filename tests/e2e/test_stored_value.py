"""Stored value at the till, over the HTTP API as a till and an operator use it: top-ups with the
program's bonus, principal spent first, refunds back to where the money came from, the tier
metric ``stored_value``, once per (store, topup_id), several members, stores and chains."""
from __future__ import annotations

import asyncio
import copy

import pytest

from loyalty_core.verify import verify

from ..helpers import ChainKit, ledger_items, member_code, problem, sql_rows
from .programs import PROGRAM, line, order

NOW = "2026-11-20T10:05:00+08:00"
BONUSES = {"topup_bonuses": [{"min": 10000, "bonus": 1000}, {"min": 50000, "bonus": 8000}]}
TOPUPS = "/v1/pos/stored-value/topups"


def with_bonuses(metric: str | None = None) -> dict:
    changed = copy.deepcopy(PROGRAM)
    changed["stored_value"] = BONUSES
    if metric:
        changed["tiers"] = {"metric": metric, "window_months": 12, "levels": [
            {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
            {"code": "silver", "name": "银卡", "threshold": 20000, "earn_multiplier": 1},
            {"code": "gold", "name": "金卡", "threshold": 100000, "earn_multiplier": 1}]}
    return changed


@pytest.fixture
async def till(chain, clock):
    from datetime import datetime

    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program(with_bonuses())
    return chain


async def top_up(kit: ChainKit, topup_id: str, amount: int, status: int = 201, **member) -> dict:
    response = await kit.pos("POST", TOPUPS, {"topup_id": topup_id, "amount": amount, "payment_method": "wechat_pay",
                                              **member})
    assert response.status == status, await response.text()
    return await response.json()


async def stored(kit: ChainKit, member_id: int) -> tuple[int, int, int]:
    balances = (await kit.member(member_id))["balances"]
    return balances["stored_value_principal"], balances["stored_value_bonus"], balances["stored_value"]


async def test_the_highest_rule_reached_adds_its_bonus_to_each_member(till):
    members = [await till.new_member(f"1370000000{i}") for i in range(4)]
    # rules {min 10,000: +1,000} and {min 50,000: +8,000}; the highest one reached applies:
    # 9,999 reaches none (0); 10,000 and 49,999 reach the first (1,000); 60,000 both, the higher gives 8,000
    amounts = [9999, 10000, 49999, 60000]
    answers = [await top_up(till, f"T{i}", amount, member_id=m["id"]) for i, (m, amount) in enumerate(zip(members, amounts))]
    assert [(a["principal"], a["bonus"]) for a in answers] == [(9999, 0), (10000, 1000), (49999, 1000), (60000, 8000)]
    for member, amount, bonus in zip(members, amounts, [0, 1000, 1000, 8000]):
        assert await stored(till, member["id"]) == (amount, bonus, amount + bonus)
    assert answers[3]["balances"]["stored_value"] == 68000 and answers[3]["duplicate"] is False

    # a second top-up adds up: 60,000 + 10,000 = 70,000 principal, 8,000 + 1,000 = 9,000 bonus, 79,000 in all
    again = await top_up(till, "T9", 10000, member_id=members[3]["id"])
    assert again["balances"]["stored_value_principal"] == 70000 and again["balances"]["stored_value_bonus"] == 9000
    assert await stored(till, members[3]["id"]) == (70000, 9000, 79000)
    kinds = [item["kind"] for item in await ledger_items(till, members[3]["id"])]
    assert kinds.count("topup") == 2
    assert await verify() == []


async def test_without_rules_there_is_no_bonus(chain, clock):
    member = await chain.new_member("13700000010")
    answer = await top_up(chain, "T1", 60000, member_id=member["id"])
    assert (answer["principal"], answer["bonus"]) == (60000, 0)


async def test_once_per_store_and_topup_id_whatever_the_resend_carries(till, client, clock):
    member = await till.new_member("13700000020")
    first = await top_up(till, "T1", 10000, member_id=member["id"])
    for resend in ({"amount": 10000}, {"amount": 50000}):  # a new Idempotency-Key each time
        twin = await top_up(till, "T1", resend["amount"], status=200, member_id=member["id"])
        assert twin == {**first, "duplicate": True}
    assert await stored(till, member["id"]) == (10000, 1000, 11000)

    other_store = await _second_store(till)
    elsewhere = await top_up(other_store, "T1", 10000, member_id=member["id"])  # another store's T1
    assert elsewhere["duplicate"] is False and elsewhere["balances"]["stored_value"] == 22000
    assert len(await sql_rows("SELECT id FROM topups")) == 2


async def test_the_same_idempotency_key_replays_the_answer(till):
    member = await till.new_member("13700000030")
    body = {"topup_id": "T1", "amount": 10000, "payment_method": "cash", "member_id": member["id"]}
    first = await till.pos("POST", TOPUPS, body, idempotency_key="topup-1")
    replay = await till.pos("POST", TOPUPS, body, idempotency_key="topup-1")
    assert first.status == replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == await first.json()
    await problem(await till.pos("POST", TOPUPS, {**body, "amount": 20000}, idempotency_key="topup-1"),
                  422, "idempotency_key_reused")
    assert await stored(till, member["id"]) == (10000, 1000, 11000)


async def test_by_what_the_scanner_read(till):
    member = await till.new_member("13700000040", card_no="C0040")
    by_phone = await top_up(till, "T1", 10000, member_code="13700000040")
    by_card = await top_up(till, "T2", 10000, member_code="C0040")
    code = await member_code(till, member["id"])
    by_code = await top_up(till, "T3", 10000, member_code=code)
    assert {by_phone["member_id"], by_card["member_id"], by_code["member_id"]} == {member["id"]}
    # the dynamic code is not used up by the top-up: the sale that follows takes it
    sale = await till.sale(order("O1", [line("LATTE", "coffee", 3000)], at=NOW, method="stored_value",
                                 member_code=code))
    assert sale["balances"]["stored_value"] == 33000 - 3000


async def test_refused_top_ups_change_nothing(till, other_chain):
    member = await till.new_member("13700000050")
    frozen = await till.new_member("13700000051")
    assert (await till.admin("POST", f"/v1/members/{frozen['id']}/freeze", {"reason": "card fraud"})).status == 200
    base = {"topup_id": "T1", "amount": 10000, "payment_method": "cash"}
    cases = [
        ({**base}, 422, "validation_error"),  # a guest: no member
        ({**base, "member_id": member["id"], "member_code": "13700000050"}, 422, "validation_error"),
        ({**base, "member_id": member["id"], "amount": 0}, 422, "validation_error"),
        ({**base, "member_id": member["id"], "amount": 10_000_000_001}, 422, "validation_error"),
        ({**base, "member_id": member["id"], "payment_method": "stored_value"}, 422, "validation_error"),
        ({**base, "member_id": member["id"], "topup_id": "no spaces"}, 422, "validation_error"),
        ({**base, "member_id": frozen["id"]}, 422, "member_frozen"),
        ({**base, "member_id": 987654}, 404, "member_not_found"),
        ({**base, "member_code": "13799999999"}, 404, "code_not_found"),
    ]
    for body, status, code in cases:
        await problem(await till.pos("POST", TOPUPS, body), status, code)
    # another chain's terminal cannot reach this chain's member
    await problem(await other_chain.pos("POST", TOPUPS, {**base, "member_id": member["id"]}), 404, "member_not_found")
    assert await stored(till, member["id"]) == (0, 0, 0) and await stored(till, frozen["id"]) == (0, 0, 0)
    assert await sql_rows("SELECT id FROM topups") == []
    # a refused topup_id can be sent again once the cause is gone
    assert (await till.admin("POST", f"/v1/members/{frozen['id']}/unfreeze", {})).status == 200
    assert (await top_up(till, "T1", 10000, member_id=frozen["id"]))["balances"]["stored_value"] == 11000


async def test_payments_spend_principal_first_and_refunds_give_back_in_proportion(till):
    member = await till.new_member("13700000060")
    await top_up(till, "T1", 10000, member_id=member["id"])  # 10000 principal + 1000 bonus
    sale = await till.sale(order("O1", [line("BEANS", "coffee", 10500)], at=NOW, method="stored_value",
                                 member_id=member["id"]))
    assert sale["balances"]["stored_value_principal"] == 0 and sale["balances"]["stored_value_bonus"] == 500
    refund = await till.pos("POST", "/v1/pos/orders/O1/refunds", {"refund_id": "R1", "amount": 5250})
    assert refund.status == 201, await refund.text()
    assert (await refund.json())["stored_value_returned"] == 5250
    assert await stored(till, member["id"]) == (5000, 750, 5750)  # 10000:500 of the payment, halved
    await problem(await till.pos("POST", "/v1/pos/orders", order(
        "O2", [line("BEANS", "coffee", 6000)], at=NOW, method="stored_value", member_id=member["id"])),
        422, "insufficient_stored_value")
    assert await stored(till, member["id"]) == (5000, 750, 5750)
    assert await verify() == []


async def test_top_ups_count_towards_a_stored_value_tier(till):
    await till.set_program(with_bonuses(metric="stored_value"))
    big, small = await till.new_member("13700000070"), await till.new_member("13700000071")
    lifted = await top_up(till, "T1", 50000, member_id=big["id"])
    assert lifted["tier"] == {"code": "silver", "name": "银卡", "changed": True}
    kept = await top_up(till, "T2", 10000, member_id=small["id"])
    assert kept["tier"]["changed"] is False
    big_view, small_view = await till.member(big["id"]), await till.member(small["id"])
    assert big_view["tier"]["code"] == "silver" and small_view["tier"]["code"] == "regular"
    # the principal counts, not the bonus
    assert big_view["tier"]["progress"] == {"metric": "stored_value", "current": 50000, "next_threshold": 100000}
    assert small_view["tier"]["progress"]["current"] == 10000
    await top_up(till, "T3", 50000, member_id=big["id"])
    assert (await till.member(big["id"]))["tier"]["code"] == "gold"


@pytest.mark.postgres
async def test_concurrent_resends_credit_once_and_different_top_ups_all_count(till):
    member = await till.new_member("13700000080")
    answers = await asyncio.gather(*[till.pos("POST", TOPUPS, {
        "topup_id": "SAME", "amount": 10000, "payment_method": "cash", "member_id": member["id"]}) for _ in range(8)])
    assert sorted(a.status for a in answers) == [200] * 7 + [201]
    answers = await asyncio.gather(*[till.pos("POST", TOPUPS, {
        "topup_id": f"T{i}", "amount": 1000, "payment_method": "cash", "member_id": member["id"]}) for i in range(8)])
    assert [a.status for a in answers] == [201] * 8
    assert await stored(till, member["id"]) == (18000, 1000, 19000)
    assert await verify() == []


async def _second_store(kit: ChainKit) -> ChainKit:
    assert (await kit.admin("POST", "/v1/stores", {"code": "S02", "name": "Second"})).status == 201
    created = await kit.admin("POST", "/v1/stores/S02/terminals", {"code": "POS1"})
    assert created.status == 201, await created.text()
    body = await created.json()
    return ChainKit(kit.client, kit.clock, kit.chain_id, kit.admin_key, body["terminal_id"], body["secret"])



@pytest.mark.postgres
async def test_twenty_concurrent_payments_of_100_from_1000_take_exactly_ten(till):
    member = await till.new_member("13700000090")
    await top_up(till, "T1", 1000, member_id=member["id"])  # below every bonus rule: 1000 principal
    answers = await asyncio.gather(*[till.pos("POST", "/v1/pos/orders", order(
        f"SV{i}", [line("LATTE", "coffee", 100)], at=NOW, method="stored_value", member_id=member["id"]))
        for i in range(20)])
    assert sorted(a.status for a in answers) == [201] * 10 + [422] * 10
    assert await stored(till, member["id"]) == (0, 0, 0)
    assert await verify() == []


async def test_worked_example_a_mixed_stored_value_and_wechat_pay_sale_and_its_partial_refund(till):
    member = await till.new_member("13700000100")
    await top_up(till, "T1", 10000, member_id=member["id"])  # 10,000 principal + 1,000 bonus (min 10,000 rule)
    body = order("MIX", [line("BEANS", "coffee", 12000)], at=NOW, member_id=member["id"])
    body["payments"] = [{"method": "stored_value", "amount": 10500}, {"method": "wechat_pay", "amount": 1500}]
    sale = await till.sale(body)
    # stored value pays 10,500: principal first (10,000), then bonus (500); WeChat Pay the other 1,500.
    # points: 12,000 fen paid x 1 point / 100 fen = 120 (stored value earns like any payment)
    assert sale["points_earned"] == 120
    assert (sale["balances"]["stored_value_principal"], sale["balances"]["stored_value_bonus"]) == (0, 500)
    refund = await till.pos("POST", "/v1/pos/orders/MIX/refunds", {"refund_id": "R1", "amount": 6000})
    answer = await refund.json()
    # half the payable: half of each stored-value account comes back (5,000 principal, 250 bonus = 5,250);
    # the other 750 of the refund is WeChat Pay's to return; half the points (60) are reversed
    assert answer["stored_value_returned"] == 5250 and answer["points_reversed"] == 60
    assert await stored(till, member["id"]) == (5000, 750, 5750)
    assert (await till.member(member["id"]))["balances"]["points"] == 60
    assert await verify() == []
