"""Rule segments over the HTTP API, on members with different histories: recency, activity,
frequency and spend from the per-member figures, tiers, channels and tags; a coupon campaign
that reaches each member once, however often it is sent; other chains never included."""
from __future__ import annotations

from datetime import datetime, timedelta

from ..helpers import problem
from .programs import PROGRAM, line, order

START = datetime.fromisoformat("2026-06-01T10:00:00+08:00")


async def segment(kit, name: str, rules: dict) -> int:
    response = await kit.admin("POST", "/v1/segments", {"name": name, "rules": rules})
    assert response.status == 201, await response.text()
    return (await response.json())["id"]


async def members_of(kit, segment_id: int, limit: int = 200) -> list[int]:
    ids, cursor = [], None
    while True:
        path = f"/v1/segments/{segment_id}/members?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        page = await (await kit.admin("GET", path)).json()
        ids += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return ids


async def test_rules_pick_the_members_their_figures_describe(chain, other_chain, clock):
    clock.at = START
    await chain.set_program(PROGRAM)
    fresh, sleeping, churned, big, never = [await chain.new_member(f"1350000300{i}") for i in range(5)]
    outsider = await other_chain.new_member("13500003009")

    async def buy(member, txn: str, fen: int, days_ago: int, kit=chain) -> None:
        clock.at = START + timedelta(days=200 - days_ago)
        await kit.sale(order(txn, [line("BEANS", "coffee", fen)], at=clock.now().isoformat(), member_id=member["id"]))

    await buy(churned, "C1", 2000, 150)
    await buy(sleeping, "S1", 3000, 60)
    for i, days in enumerate((40, 25, 10, 5)):
        await buy(big, f"B{i}", 60000, days)  # gold by growth, 4 orders, 2400 yuan
    await buy(fresh, "F1", 1000, 2)
    await buy(outsider, "X1", 1000, 2, kit=other_chain)
    clock.at = START + timedelta(days=200)
    await chain.admin("PUT", f"/v1/members/{big['id']}/tags", {"tags": ["vip", "beans"]})
    await chain.admin("PUT", f"/v1/members/{fresh['id']}/tags", {"tags": ["vip"]})

    cases = {
        "active": ({"activity": "active"}, [fresh, big]),
        "sleeping": ({"activity": "sleeping"}, [sleeping]),
        "churned": ({"activity": "churned"}, [churned]),
        "lapsed 30-100 days": ({"recency_days": {"min": 30, "max": 100}}, [sleeping]),
        "frequent": ({"frequency": {"min": 3}}, [big]),
        "big spenders": ({"monetary": {"min": 100000}}, [big]),
        "small spenders": ({"monetary": {"max": 3000}, "frequency": {"min": 1}}, [churned, sleeping, fresh]),
        "silver": ({"tiers": ["silver"]}, [big]),  # growth 2400: silver
        "regulars": ({"tiers": ["regular"]}, [fresh, sleeping, churned, never]),
        "vip beans": ({"tags": ["vip", "beans"]}, [big]),
        "vip": ({"tags": ["vip"]}, [fresh, big]),
        "card holders": ({"channels": ["card"]}, [fresh, sleeping, churned, big, never]),
        "wechat": ({"channels": ["wechat"]}, []),
        "everyone": ({}, [fresh, sleeping, churned, big, never]),
    }
    for name, (rules, expected) in cases.items():
        assert await members_of(chain, await segment(chain, name, rules)) == sorted(m["id"] for m in expected), name
    everyone = await segment(chain, "everyone again", {})
    assert await members_of(chain, everyone, limit=2) == sorted(m["id"] for m in (fresh, sleeping, churned, big, never))
    assert outsider["id"] not in await members_of(chain, everyone)
    await problem(await chain.admin("POST", "/v1/segments", {"name": "everyone", "rules": {}}), 409, "already_exists")
    for bad in ({"activity": "asleep"}, {"recency_days": {"min": -1}}, {"frequency": 3}, {"colour": "red"},
                {"active_days": 90, "churned_days": 30}):
        await problem(await chain.admin("POST", "/v1/segments", {"name": "bad", "rules": bad}), 422, "validation_error")
    await problem(await other_chain.admin("GET", f"/v1/segments/{everyone}/members"), 404, "not_found")


async def test_a_coupon_campaign_reaches_each_member_once(chain, clock):
    clock.at = START
    await chain.set_program(PROGRAM)
    members = [await chain.new_member(f"1350000310{i}") for i in range(4)]
    for member in members[:2]:
        await chain.admin("PUT", f"/v1/members/{member['id']}/tags", {"tags": ["vip"]})
    frozen = members[1]
    assert (await chain.admin("POST", f"/v1/members/{frozen['id']}/freeze", {"reason": "check"})).status == 200
    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": "vip 10", "kind": "cash", "amount_off": 1000, "valid_days": 30})).json()
    vip = await segment(chain, "vip", {"tags": ["vip"]})
    path = f"/v1/segments/{vip}/coupons"
    first = await chain.admin("POST", path, {"template_id": template["id"]}, idempotency_key="campaign-1")
    assert first.status == 200, await first.text()
    assert await first.json() == {"segment_id": vip, "template_id": template["id"], "members": 2, "issued": 1,
                                  "already": 0, "skipped": 1, "done": True, "stopped": None}
    replay = await chain.admin("POST", path, {"template_id": template["id"]}, idempotency_key="campaign-1")
    assert replay.headers["Idempotent-Replayed"] == "true"
    await chain.admin("PUT", f"/v1/members/{members[2]['id']}/tags", {"tags": ["vip"]})  # joins the segment
    again = await (await chain.admin("POST", path, {"template_id": template["id"]})).json()
    assert (again["issued"], again["already"], again["skipped"]) == (1, 1, 1)
    held = [len((await (await chain.admin("GET", f"/v1/members/{m['id']}/coupons")).json())["items"]) for m in members]
    assert held == [1, 0, 1, 0]
    await problem(await chain.admin("POST", path, {"template_id": 999999}), 404, "not_found")
