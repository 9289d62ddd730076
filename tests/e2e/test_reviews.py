"""Tier upgrades to a manual_review level wait for a reviewer: over the HTTP API, with several
members and chains; the decision moves the tier once and shows in the member's ledger."""
from __future__ import annotations

import copy
from datetime import datetime

from ..helpers import ledger_items, problem, sql_rows
from .programs import PROGRAM, line, order

NOW = "2026-11-20T10:05:00+08:00"


def reviewed_program() -> dict:
    changed = copy.deepcopy(PROGRAM)
    changed["tiers"] = {"metric": "growth", "window_months": 12, "levels": [
        {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
        {"code": "silver", "name": "银卡", "threshold": 100, "earn_multiplier": 1},
        {"code": "black", "name": "黑卡", "threshold": 500, "earn_multiplier": 1, "manual_review": True}]}
    return changed


async def queue(kit, status: str = "pending") -> list[dict]:
    response = await kit.admin("GET", f"/v1/reviews?status={status}")
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def decide(kit, review_id: int, approve: bool, note: str = "checked", status: int = 200, key=None):
    response = await kit.admin("POST", f"/v1/reviews/{review_id}/decision", {"approve": approve, "note": note}, key=key)
    assert response.status == status, await response.text()
    return await response.json()


async def test_a_review_level_waits_for_a_reviewer(chain, other_chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    for kit in (chain, other_chain):
        await kit.set_program(reviewed_program())
    big, second, small = [await chain.new_member(f"1330000010{i}") for i in range(3)]
    # growth is 1 per yuan (no welcome points in PROGRAM); silver at 100, black (reviewed) at 500
    sale = await chain.sale(order("O1", [line("BEANS", "coffee", 60000)], at=NOW, member_id=big["id"]))
    # 600 >= 500 opens a black review; 600 >= 100 upgrades to silver now
    assert sale["tier"] == {"code": "silver", "name": "银卡", "changed": True}  # black waits for a reviewer
    await chain.sale(order("O2", [line("BEANS", "coffee", 10000)], at=NOW, member_id=big["id"]))  # 700: still pending, no 2nd
    await chain.sale(order("O3", [line("BEANS", "coffee", 70000)], at=NOW, member_id=second["id"]))  # 700: a review
    await chain.sale(order("O4", [line("BEANS", "coffee", 20000)], at=NOW, member_id=small["id"]))  # 200: silver only
    pending = await queue(chain)
    assert [(r["member_id"], r["kind"], r["subject"]) for r in pending] == [
        (big["id"], "tier_upgrade", "black"), (second["id"], "tier_upgrade", "black")]
    assert pending[0]["detail"] == {"metric": "growth", "value": 600, "threshold": 500}
    assert await queue(other_chain) == []
    assert (await chain.member(big["id"]))["tier"]["code"] == "silver"

    approved = await decide(chain, pending[0]["id"], True, "VIP known to the store")
    assert approved["status"] == "approved" and approved["tier"] == {"code": "black", "name": "黑卡", "changed": True}
    assert approved["decided_by"].startswith("admin_key:") and approved["note"] == "VIP known to the store"
    assert (await chain.member(big["id"]))["tier"]["code"] == "black"
    entry = next(e for e in await ledger_items(chain, big["id"]) if e["kind"] == "review")
    assert "black approved: VIP known to the store" in entry["reason"] and entry["changes"] == {}

    rejected = await decide(chain, pending[1]["id"], False, "not yet")
    assert rejected["status"] == "rejected" and "tier" not in rejected or rejected["tier"] is None
    assert (await chain.member(second["id"]))["tier"]["code"] == "silver"
    again = await decide(chain, pending[1]["id"], False, "not yet")  # the same decision: the review as it is
    assert again["status"] == "rejected"
    await problem(await chain.admin("POST", f"/v1/reviews/{pending[1]['id']}/decision", {"approve": True}),
                  409, "review_decided")
    assert await queue(chain) == [] and len(await queue(chain, "approved")) == 1
    # a rejected member who buys again is asked about again: 700 + 10 = 710, still >= 500
    await chain.sale(order("O5", [line("BEANS", "coffee", 1000)], at=NOW, member_id=second["id"]))
    assert [r["member_id"] for r in await queue(chain)] == [second["id"]]
    events = await sql_rows("SELECT topic FROM outbox_events WHERE topic LIKE 'review.%' OR topic = 'tier.changed'")
    assert sorted(e["topic"] for e in events).count("review.opened") == 3


async def test_other_chains_and_read_only_keys_cannot_decide(chain, other_chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program(reviewed_program())
    member = await chain.new_member("13300000110")
    await chain.sale(order("O1", [line("BEANS", "coffee", 60000)], at=NOW, member_id=member["id"]))
    review = (await queue(chain))[0]
    await problem(await other_chain.admin("POST", f"/v1/reviews/{review['id']}/decision", {"approve": True}),
                  404, "not_found")
    auditor = await (await chain.admin("POST", "/v1/admin-keys", {"role": "auditor"})).json()
    assert (await chain.admin("GET", "/v1/reviews", key=auditor["key"])).status == 200
    await problem(await chain.admin("POST", f"/v1/reviews/{review['id']}/decision", {"approve": True},
                                    key=auditor["key"]), 403, "forbidden")
    await problem(await chain.admin("POST", "/v1/reviews/999999/decision", {"approve": True}), 404, "not_found")
    await problem(await chain.admin("POST", f"/v1/reviews/{review['id']}/decision", {"approve": "yes"}),
                  422, "validation_error")
    assert (await chain.member(member["id"]))["tier"]["code"] == "silver"
