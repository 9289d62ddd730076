"""Members through the admin API: joining, finding, history, freezing, correcting, erasing."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from loyalty_core.models import JournalEntry, Member, Posting
from loyalty_core.verify import verify

from ..helpers import adjustment, ledger_items, problem, sql_rows

WELCOME = {"behaviors": {"register": {"points": 100}}}


async def owner_key_id(chain) -> int:
    keys = await (await chain.admin("GET", "/v1/admin-keys")).json()
    return next(k["id"] for k in keys["items"] if k["role"] == "owner")


async def test_welcome_points_are_credited_once(chain):
    await chain.set_program(WELCOME)
    created = await chain.new_member("13600136000", name="韩梅梅", birthday="1995-04-01", card_no="C-1001")
    assert created["balances"] == {"points": 100, "pending_points": 0, "growth": 100, "stored_value": 0,
                                   "stored_value_principal": 0, "stored_value_bonus": 0}
    assert created["tier"]["code"] == "regular"
    assert set(created["tier"]["progress"]) == {"metric", "current", "next_threshold"}
    assert created["phone"] == "136****6000" and created["name"] == "韩梅梅"
    assert created["birthday"] == "1995-04-01" and created["card_no"] == "C-1001"
    assert {"channel": "card", "external_id": "C-1001"} in created["identities"]
    entries = await ledger_items(chain, created["id"])
    assert [(e["kind"], e["reason"], e["changes"]) for e in entries] == [
        ("behavior", "register", {"points": 100, "growth": 100})]

    duplicate = await chain.admin("POST", "/v1/members", {"phone": "13600136000"})
    await problem(duplicate, 409, "already_exists")
    same_card = await chain.admin("POST", "/v1/members", {"phone": "13600136001", "card_no": "C-1001"})
    await problem(same_card, 409, "already_exists")
    assert (await chain.member(created["id"]))["balances"]["points"] == 100
    assert await JournalEntry.filter(chain_id=chain.chain_id).count() == 1
    assert await verify(chain.chain_id) == []


async def test_erase_keeps_the_ledger_and_welcome_is_once_per_phone_ever(chain):
    await chain.set_program(WELCOME)
    first = await chain.new_member("13600136002", name="张伟", birthday="1990-01-02")
    assert (await adjustment(chain, first["id"], 50, reason="apology")).status == 201

    erased = await chain.admin("DELETE", f"/v1/members/{first['id']}")
    assert erased.status == 204 and await erased.read() == b""
    shown = await chain.member(first["id"])
    assert shown["erased"] is True and shown["frozen"] is True
    assert shown["phone"] is None and shown["name"] is None and shown["birthday"] is None
    assert shown["card_no"] is None and shown["identities"] == []
    assert shown["display_name"] == "已注销"
    found = await (await chain.admin("GET", "/v1/members?phone=13600136002")).json()
    assert found["items"] == []
    row = (await sql_rows(f"SELECT phone_hash, phone_enc, name_enc, birthday_enc FROM members WHERE id = {first['id']}"))[0]
    assert set(row.values()) == {None}

    # The history stays, tied to the anonymous id.
    history = await ledger_items(chain, first["id"])
    assert [e["kind"] for e in history] == ["adjustment", "behavior"]
    assert shown["balances"]["points"] == 150

    again = await chain.new_member("13600136002", name="张伟")
    assert again["id"] != first["id"]
    assert again["balances"]["points"] == 0 and again["balances"]["growth"] == 0
    assert await ledger_items(chain, again["id"]) == []
    found = await (await chain.admin("GET", "/v1/members?phone=13600136002")).json()
    assert [m["id"] for m in found["items"]] == [again["id"]]
    # Erasing twice is harmless; erasing an unknown member is 404.
    assert (await chain.admin("DELETE", f"/v1/members/{first['id']}")).status == 204
    await problem(await chain.admin("DELETE", "/v1/members/99999999"), 404, "not_found")
    assert await verify(chain.chain_id) == []


async def test_search_by_phone_card_tier_with_pages(chain):
    await chain.set_program({"tiers": {"levels": [
        {"code": "regular", "name": "普通", "threshold": 0}, {"code": "silver", "name": "银卡", "threshold": 500}]}})
    made = [await chain.new_member(f"1350013500{i}", card_no=f"CARD-{i}") for i in range(5)]
    ids = [m["id"] for m in made]

    body = await (await chain.admin("GET", "/v1/members?phone=13500135003")).json()
    assert [m["id"] for m in body["items"]] == [ids[3]]
    assert body["next_cursor"] is None
    for spelling in ["135 0013 5003", "+86 135-0013-5003", "008613500135003", "1350013500３"]:
        refused = await problem(await chain.admin("GET", f"/v1/members?phone={quote(spelling)}"), 422, "validation_error")
        assert refused["errors"][0]["field"] == "phone", spelling
    assert (await (await chain.admin("GET", "/v1/members?phone=13500135009")).json())["items"] == []

    by_card = await (await chain.admin("GET", "/v1/members?identity=card:CARD-1")).json()
    assert [m["id"] for m in by_card["items"]] == [ids[1]]
    generated = await chain.new_member("13500135009")
    by_generated = await (await chain.admin("GET", f"/v1/members?identity=card:{generated['card_no']}")).json()
    assert [m["id"] for m in by_generated["items"]] == [generated["id"]]
    assert (await (await chain.admin("GET", "/v1/members?identity=wechat:CARD-1")).json())["items"] == []
    ids.append(generated["id"])

    regular = await (await chain.admin("GET", "/v1/members?tier=regular&limit=200")).json()
    assert sorted(m["id"] for m in regular["items"]) == sorted(ids)
    assert (await (await chain.admin("GET", "/v1/members?tier=silver")).json())["items"] == []

    seen, cursor, pages = [], None, 0
    while True:
        response = await chain.admin("GET", "/v1/members?limit=4" + (f"&cursor={cursor}" if cursor else ""))
        page = await response.json()
        assert len(page["items"]) <= 4
        seen += [m["id"] for m in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 2
    both = await (await chain.admin("GET", "/v1/members?tier=regular&identity=card:CARD-2&limit=1")).json()
    assert [m["id"] for m in both["items"]] == [ids[2]]


async def test_ledger_is_newest_first_with_cursor(chain):
    member = await chain.new_member("13600136003")
    amounts = [10, 20, -5, 30, -15, 40, 1]
    for amount in amounts:
        assert (await adjustment(chain, member["id"], amount, reason=f"r{amount}")).status == 201
    pages, cursor = [], None
    while True:
        response = await chain.admin("GET", f"/v1/members/{member['id']}/ledger?limit=3"
                                     + (f"&cursor={cursor}" if cursor else ""))
        assert response.status == 200
        page = await response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    entries = [e for p in pages for e in p]
    assert [e["changes"]["points"] for e in entries] == list(reversed(amounts))
    assert [e["reason"] for e in entries] == [f"r{a}" for a in reversed(amounts)]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert (await chain.member(member["id"]))["balances"]["points"] == sum(amounts)


async def test_freeze_and_unfreeze(chain):
    member = await chain.new_member("13600136004")
    frozen = await chain.admin("POST", f"/v1/members/{member['id']}/freeze", {"reason": "suspected fraud"})
    assert frozen.status == 200
    assert (await frozen.json())["frozen"] is True
    shown = await chain.member(member["id"])
    assert shown["frozen"] is True and shown["frozen_reason"] == "suspected fraud"
    listed = await (await chain.admin("GET", "/v1/members?phone=13600136004")).json()
    assert listed["items"][0]["frozen"] is True
    await problem(await chain.admin("POST", f"/v1/members/{member['id']}/freeze", {}), 422, "validation_error")

    thawed = await chain.admin("POST", f"/v1/members/{member['id']}/unfreeze")
    assert thawed.status == 200
    shown = await chain.member(member["id"])
    assert shown["frozen"] is False and shown["frozen_reason"] is None
    row = await Member.get(id=member["id"])
    assert row.frozen is False


async def test_adjustments_are_audited_and_never_overdraw(chain):
    operator = await (await chain.admin("POST", "/v1/admin-keys", {"role": "operator"})).json()
    owner_id = await owner_key_id(chain)
    member = await chain.new_member("13600136005")
    mid = member["id"]

    credit = await adjustment(chain, mid, 500, reason="lost receipt")
    assert credit.status == 201
    body = await credit.json()
    assert body["account"] == "points" and body["amount"] == 500 and body["reason"] == "lost receipt"
    assert body["balances"]["points"] == 500 and isinstance(body["entry_id"], int)
    debit = await adjustment(chain, mid, -200, reason="double credit", key=operator["key"])
    assert (await debit.json())["balances"]["points"] == 300
    topped = await adjustment(chain, mid, 10000, account="stored_value", reason="cash top-up by hand")
    assert (await topped.json())["balances"]["stored_value"] == 10000
    assert (await topped.json())["balances"]["stored_value_principal"] == 10000
    spent = await adjustment(chain, mid, -3000, account="stored_value", reason="paid outside the till")
    assert (await spent.json())["balances"]["stored_value"] == 7000

    before_entries = await ledger_items(chain, mid)
    await problem(await adjustment(chain, mid, -301, reason="too much"), 422, "insufficient_points")
    await problem(await adjustment(chain, mid, -7001, account="stored_value", reason="too much"),
                  422, "insufficient_stored_value")
    after = await chain.member(mid)
    assert after["balances"]["points"] == 300 and after["balances"]["stored_value"] == 7000
    assert await ledger_items(chain, mid) == before_entries

    assert [(e["actor"], e["reason"], e["changes"]) for e in before_entries] == [
        (f"admin_key:{owner_id}", "paid outside the till", {"sv_principal": -3000}),
        (f"admin_key:{owner_id}", "cash top-up by hand", {"sv_principal": 10000}),
        (f"admin_key:{operator['id']}", "double credit", {"points": -200}),
        (f"admin_key:{owner_id}", "lost receipt", {"points": 500}),
    ]
    assert all(e["kind"] == "adjustment" and e["channel"] == "admin" for e in before_entries)
    # In the database: each entry balances, with the chain-level counterpart on the other side.
    for entry in before_entries:
        legs = await Posting.filter(entry_id=entry["id"]).values_list("ledger", "amount")
        assert sum(amount for _, amount in legs) == 0
        assert {ledger for ledger, _ in legs} in ({"points", "points_adjusted"}, {"sv_principal", "sv_adjusted"})
    # Exactly down to zero is allowed.
    assert (await (await adjustment(chain, mid, -300)).json())["balances"]["points"] == 0
    assert await verify(chain.chain_id) == []


async def test_tier_progress_counts_growth_inside_the_window_in_the_chains_timezone(chain, clock):
    """A 12-month window is the current local month and the 11 before it, in the chain's timezone."""
    await chain.set_program({**WELCOME, "timezone": "Asia/Shanghai", "tiers": {"window_months": 12, "levels": [
        {"code": "regular", "name": "普通", "threshold": 0}, {"code": "silver", "name": "银卡", "threshold": 1000}]}})
    clock.at = datetime.fromisoformat("2026-01-31T20:00:00+00:00")  # 1 February 04:00 in Shanghai
    member = await chain.new_member("13600136006")
    assert member["tier"]["progress"] == {"metric": "growth", "current": 100, "next_threshold": 1000}

    clock.at = datetime.fromisoformat("2027-01-31T15:59:00+00:00")  # 31 January 23:59 in Shanghai: still inside
    assert (await chain.member(member["id"]))["tier"]["progress"]["current"] == 100
    clock.at = datetime.fromisoformat("2027-01-31T16:00:00+00:00")  # 1 February: February 2026 left the window
    assert (await chain.member(member["id"]))["tier"]["progress"]["current"] == 0
