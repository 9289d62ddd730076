"""Merging two records of one person, over the HTTP API: balances, pending points, lots, coupons,
identities, orders and tags move in one go; the source is closed and leads to the target; what
happens afterwards (refunds, vesting, scans, orders by the old id) lands on the target."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta

from loyalty_core.verify import verify

from ..helpers import adjustment, ledger_items, problem
from .programs import PROGRAM, line, order
from .test_stored_value import BONUSES, top_up

NOW = datetime.fromisoformat("2026-11-20T10:05:00+08:00")


def program() -> dict:
    changed = copy.deepcopy(PROGRAM)
    changed["points"]["pending_days"] = 3
    changed["stored_value"] = BONUSES
    return changed


async def test_everything_moves_and_the_source_leads_to_the_target(chain, clock):
    clock.at = NOW
    await chain.set_program(program())
    at = NOW.isoformat()
    target = await chain.new_member("13700002001")
    source = await chain.new_member("13700002002", card_no="OLDCARD7")
    bystander = await chain.new_member("13700002003")
    await adjustment(chain, target["id"], 500)
    await adjustment(chain, source["id"], 300)
    await chain.sale(order("T1", [line("BEANS", "coffee", 10000)], at=at, member_id=target["id"]))  # 100 pending
    await chain.sale(order("S1", [line("BEANS", "coffee", 100000)], at=at, member_id=source["id"]))  # 1000 pending
    await top_up(chain, "TOP1", 10000, member_id=source["id"])  # 10000 + 1000 bonus
    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": "5 off", "kind": "cash", "amount_off": 500, "valid_days": 30})).json()
    coupon = await (await chain.admin("POST", f"/v1/members/{source['id']}/coupons", {"template_id": template["id"]})).json()
    await chain.admin("PUT", f"/v1/members/{source['id']}/tags", {"tags": ["vip"]})
    await chain.admin("PUT", f"/v1/members/{target['id']}/tags", {"tags": ["coffee"]})
    assert (await chain.member(source["id"]))["tier"]["code"] == "silver"  # growth 1000 from S1
    before = [(await chain.member(m["id"]))["balances"] for m in (target, source)]

    merged = await chain.admin("POST", f"/v1/members/{target['id']}/merge", {"from_member_id": source["id"]})
    assert merged.status == 200, await merged.text()
    view = await merged.json()
    # points 500 + 300 = 800; pending 100 (T1) + 1,000 (S1) = 1,100; stored value 10,000 + 1,000 bonus = 11,000
    assert view["balances"] == {k: before[0][k] + before[1][k] for k in before[0]}
    assert view["balances"]["points"] == 800 and view["balances"]["pending_points"] == 1100
    assert view["balances"]["stored_value"] == 11000 and view["tags"] == ["coffee", "vip"]
    assert view["tier"]["code"] == "silver"  # the higher of the two (the target was regular)
    closed = await chain.member(source["id"])
    assert closed["merged_into"] == target["id"] and closed["frozen"] is True
    assert all(value == 0 for value in closed["balances"].values())
    merge_entry = next(e for e in await ledger_items(chain, target["id"]) if e["kind"] == "merge")
    assert merge_entry["reason"] == f"merged from member {source['id']}"

    # the source's phone, card and id now find the target
    for code in ("13700002002", "OLDCARD7"):
        scanned = await (await chain.pos("POST", "/v1/pos/scan", {"code": code})).json()
        assert scanned["member"]["id"] == target["id"], code
        assert [c["code"] for c in scanned["coupons"]] == [coupon["code"]]
    # 6,000 - 500 coupon = 5,500 paid: 55 points x silver's 1.2 = 66, pending on the target
    sale = await chain.sale(order("S2", [line("BEANS", "coffee", 6000)], 5500, at=at, member_id=source["id"],
                                  coupons=[coupon["code"]]))
    assert sale["member_id"] == target["id"] and sale["coupon_discount"] == 500 and sale["points_earned"] == 66
    # the source's order is refunded from the target; its pending points vest into the target
    refund = await chain.pos("POST", "/v1/pos/orders/S1/refunds", {"refund_id": "R1", "amount": 50000})
    assert refund.status == 201, await refund.text()
    # half of S1 refunded: 1,000 x 50,000 / 100,000 = 500 of its pending points reversed
    assert (await refund.json())["balances"]["pending_points"] == 1100 + 66 - 500
    clock.at = NOW + timedelta(days=4)
    assert (await chain.admin("POST", "/v1/jobs/vest_points")).status == 200
    after = (await chain.member(target["id"]))["balances"]
    assert (after["points"], after["pending_points"]) == (800 + 666, 0)
    assert (await chain.member(bystander["id"]))["balances"]["points"] == 0
    assert await verify() == []


async def test_refused_merges_change_nothing(chain, other_chain, clock):
    clock.at = NOW
    a, b, c = [await chain.new_member(f"1370000201{i}") for i in range(3)]
    stranger = await other_chain.new_member("13700002019")
    await adjustment(chain, b["id"], 100)
    path = f"/v1/members/{a['id']}/merge"
    await problem(await chain.admin("POST", path, {"from_member_id": a["id"]}), 422, "validation_error")
    await problem(await chain.admin("POST", path, {"from_member_id": stranger["id"]}), 404, "not_found")
    await problem(await other_chain.admin("POST", path, {"from_member_id": b["id"]}), 404, "not_found")
    assert (await chain.admin("DELETE", f"/v1/members/{c['id']}")).status == 204
    await problem(await chain.admin("POST", path, {"from_member_id": c["id"]}), 422, "member_erased")
    assert (await chain.admin("POST", path, {"from_member_id": b["id"]}, idempotency_key="merge-1")).status == 200
    replay = await chain.admin("POST", path, {"from_member_id": b["id"]}, idempotency_key="merge-1")
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    await problem(await chain.admin("POST", path, {"from_member_id": b["id"]}), 422, "validation_error")  # merged already
    assert (await chain.member(a["id"]))["balances"]["points"] == 100
    assert await verify() == []
