"""The points mall over the HTTP API: a catalogue, redemptions that take the points and issue the
coupon all or nothing, once per request, within stock and per-member limits under concurrency."""
from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from loyalty_core.verify import verify

from ..helpers import adjustment, problem
from .programs import PROGRAM

NOW = datetime.fromisoformat("2026-11-20T10:05:00+08:00")
COOKIE = {"name": "free cookie", "kind": "gift", "sku": "COOKIE", "valid_days": 30}


@pytest.fixture
async def mall(chain, clock):
    clock.at = NOW
    await chain.set_program(PROGRAM)
    template = await (await chain.admin("POST", "/v1/coupon-templates", COOKIE)).json()
    chain.extra["template_id"] = template["id"]
    return chain


async def reward(kit, **fields) -> dict:
    response = await kit.admin("POST", "/v1/rewards", {"name": "cookie for 300", "points": 300,
                                                        "template_id": kit.extra["template_id"], **fields})
    assert response.status == 201, await response.text()
    return await response.json()


def redeem(kit, member_id: int, reward_id: int, key: str | bool = True):
    return kit.admin("POST", f"/v1/members/{member_id}/rewards/{reward_id}/redeem", idempotency_key=key)


async def points_of(kit, member_id: int) -> int:
    return (await kit.member(member_id))["balances"]["points"]


async def test_a_redemption_takes_the_points_and_gives_the_coupon_once(mall):
    item = await reward(mall, stock=2, per_member_limit=1)
    rich, poor, third, late = [await mall.new_member(f"1380000100{i}") for i in range(4)]
    for member, amount in ((rich, 1000), (poor, 200), (third, 300), (late, 300)):
        assert (await adjustment(mall, member["id"], amount)).status == 201

    first = await redeem(mall, rich["id"], item["id"], key="mall-1")
    assert first.status == 201, await first.text()
    body = await first.json()
    assert body["points"] == 300 and body["balances"]["points"] == 700
    assert body["coupon"]["kind"] == "gift" and body["coupon"]["status"] == "issued"
    replay = await redeem(mall, rich["id"], item["id"], key="mall-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and await replay.json() == body
    await problem(await redeem(mall, rich["id"], item["id"]), 422, "coupon_limit_reached")
    await problem(await redeem(mall, poor["id"], item["id"]), 422, "insufficient_points")
    assert (await redeem(mall, third["id"], item["id"])).status == 201
    await problem(await redeem(mall, late["id"], item["id"]), 422, "coupon_out_of_stock")
    assert [await points_of(mall, m["id"]) for m in (rich, poor, third, late)] == [700, 200, 0, 300]
    listed = (await (await mall.admin("GET", "/v1/rewards")).json())["items"]
    assert (listed[0]["redeemed"], listed[0]["left"]) == (2, 0)
    coupons = (await (await mall.admin("GET", f"/v1/members/{poor['id']}/coupons")).json())["items"]
    assert coupons == []  # the refused redemption left no coupon
    # the coupon is handed over at the counter
    handed = await mall.pos("POST", f"/v1/pos/coupons/{body['coupon']['code']}/redeem", None)
    assert handed.status == 200 and (await handed.json())["status"] == "redeemed"
    assert await verify() == []


async def test_the_catalogue_is_the_chains_own(mall, other_chain):
    item = await reward(mall)
    member = await mall.new_member("13800001010")
    await problem(await mall.admin("POST", "/v1/rewards", {"name": "cookie for 300", "points": 1,
                                                           "template_id": mall.extra["template_id"]}),
                  409, "already_exists")
    await problem(await other_chain.admin("POST", "/v1/rewards", {"name": "stolen", "points": 1,
                                                                  "template_id": mall.extra["template_id"]}),
                  404, "not_found")
    assert (await (await other_chain.admin("GET", "/v1/rewards")).json())["items"] == []
    await problem(await redeem(other_chain, member["id"], item["id"]), 404, "member_not_found")
    await problem(await redeem(mall, member["id"], 999999), 404, "not_found")
    for bad in ({"points": 0}, {"stock": 0}, {"name": ""}, {"extra": 1}):
        await problem(await mall.admin("POST", "/v1/rewards", {"name": "x", "points": 5,
                                                               "template_id": mall.extra["template_id"], **bad}),
                      422, "validation_error")
    inactive = await reward(mall, name="retired", active=False)
    assert (await adjustment(mall, member["id"], 1000)).status == 201
    await problem(await redeem(mall, member["id"], inactive["id"]), 404, "not_found")


@pytest.mark.postgres
async def test_stock_and_points_hold_under_concurrent_redemptions(mall):
    scarce = await reward(mall, name="scarce", stock=3, points=100)
    people = [await mall.new_member(f"138000011{i:02d}") for i in range(20)]
    for person in people:
        assert (await adjustment(mall, person["id"], 100)).status == 201
    answers = await asyncio.gather(*[redeem(mall, p["id"], scarce["id"]) for p in people])
    assert sorted(a.status for a in answers) == [201] * 3 + [422] * 17  # 20 redemptions of a stock of 3
    assert sum([await points_of(mall, p["id"]) for p in people]) == 17 * 100
    cheap = await reward(mall, name="cheap", points=100)
    spender = await mall.new_member("13800001029")
    assert (await adjustment(mall, spender["id"], 350)).status == 201
    answers = await asyncio.gather(*[redeem(mall, spender["id"], cheap["id"]) for _ in range(8)])
    assert sorted(a.status for a in answers) == [201] * 3 + [422] * 5
    assert await points_of(mall, spender["id"]) == 50
    assert await verify() == []
