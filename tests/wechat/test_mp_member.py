"""What a joined member does in the mini-program, over HTTP: the member code the till scans, check-ins
and tasks, their own ledger and coupons, the points mall, marketplace bindings; several members and
chains."""
from __future__ import annotations

import copy
import uuid

import pytest

from loyalty_core.verify import verify

from ..e2e.programs import API_EXAMPLE, PROGRAM, line, order
from ..helpers import adjustment, problem
from .conftest import connect

BEHAVING = {**copy.deepcopy(PROGRAM), "behaviors": copy.deepcopy(API_EXAMPLE["behaviors"])}


@pytest.fixture
async def shop(mini, clock):
    await mini.kit.set_program(BEHAVING)
    return mini


async def test_the_code_shown_in_the_mini_program_earns_at_the_till(shop):
    token, member = await shop.member("13700000001")  # 100 welcome points
    shown = await (await shop.call("GET", "/v1/mp/me/code", token)).json()
    assert len(shown["code"]) == 18 and shown["expires_in"] > shown["refresh_after"] > 0
    assert shown["qr_svg"].lstrip().startswith("<") and "svg" in shown["qr_svg"][:200]
    scanned = await (await shop.kit.pos("POST", "/v1/pos/scan", {"code": shown["code"]})).json()
    assert scanned["member"]["id"] == member["id"]
    sale = await shop.kit.sale(order("MP1", [line("BEANS", "coffee", 12000)], member_code=shown["code"],
                                     at=shop.kit.clock.now().isoformat()))
    assert sale["member_id"] == member["id"] and sale["points_earned"] == 120  # 120 yuan, 1 point per yuan
    assert (await shop.me(token))["balances"]["points"] == 100 + 120
    png = await shop.call("GET", "/v1/mp/me/code.png", token)
    assert png.status == 200 and png.content_type == "image/png"
    assert (await png.read()).startswith(b"\x89PNG") and len(png.headers["X-Member-Code"]) == 18
    assert png.headers["X-Member-Code"] != shown["code"]  # each call a new code


async def test_check_in_once_a_day_with_a_streak(shop, clock):
    token, _ = await shop.member("13700000002")
    first = await shop.call("POST", "/v1/mp/me/checkins", token)
    assert first.status == 201
    assert await first.json() == {"points_awarded": 5, "streak": 1, "balances": {**(await first.json())["balances"]}}
    assert (await first.json())["balances"]["points"] == 100 + 5
    await problem(await shop.call("POST", "/v1/mp/me/checkins", token), 409, "already_checked_in")
    for day in range(2, 8):  # days 2..7: 5 each, and the 7-day streak bonus of 20 on day 7
        clock.advance(days=1)
        done = await (await shop.call("POST", "/v1/mp/me/checkins", token)).json()
        assert done["streak"] == day
    assert done["points_awarded"] == 5 + 20
    assert (await shop.me(token))["balances"]["points"] == 100 + 7 * 5 + 20


async def test_tasks_within_their_caps(shop):
    token, member = await shop.member("13700000003")
    shares = [await (await shop.call("POST", "/v1/mp/me/tasks/share", token, {})).json() for _ in range(6)]
    assert [s["points_awarded"] for s in shares] == [2] * 5 + [0] and shares[-1]["capped"] is True  # daily_cap 5
    retry = str(uuid.uuid4())
    again = [await shop.call("POST", "/v1/mp/me/tasks/review", token, {"ref": "order-1"}, idempotency_key=retry)
             for _ in range(2)]
    assert [a.status for a in again] == [201, 201] and again[1].headers["Idempotent-Replayed"] == "true"
    await problem(await shop.call("POST", "/v1/mp/me/tasks/review", token, {"ref": "order-1"}), 409, "already_done")
    await problem(await shop.call("POST", "/v1/mp/me/tasks/review", token, {}), 422, "validation_error")
    profile = await (await shop.call("POST", "/v1/mp/me/tasks/complete_profile", token, {})).json()
    assert profile["points_awarded"] == 30
    await problem(await shop.call("POST", "/v1/mp/me/tasks/complete_profile", token, {}), 409, "already_done")
    await problem(await shop.call("POST", "/v1/mp/me/tasks/invite", token, {"ref": "x"}), 404, "not_found")
    # 100 welcome + 5 shares x 2 + a review's 10 + the profile's 30
    assert (await shop.kit.member(member["id"]))["balances"]["points"] == 100 + 10 + 10 + 30


async def test_own_ledger_and_coupons_only(shop):
    token, member = await shop.member("13700000004")
    other_token, other = await shop.member("13700000005")
    await adjustment(shop.kit, member["id"], 40, reason="goodwill")
    template = await (await shop.kit.admin("POST", "/v1/coupon-templates", {
        "name": "5 off", "kind": "cash", "amount_off": 500, "valid_days": 30})).json()
    coupon = await (await shop.kit.admin("POST", f"/v1/members/{member['id']}/coupons",
                                         {"template_id": template["id"]})).json()
    ledger = await (await shop.call("GET", "/v1/mp/me/ledger?limit=1", token)).json()
    assert len(ledger["items"]) == 1 and ledger["items"][0]["changes"] == {"points": 40} and ledger["next_cursor"]
    rest = await (await shop.call("GET", f"/v1/mp/me/ledger?cursor={ledger['next_cursor']}", token)).json()
    assert [e["reason"] for e in rest["items"]] == ["register"] and rest["next_cursor"] is None
    mine = await (await shop.call("GET", "/v1/mp/me/coupons", token)).json()
    assert [c["code"] for c in mine["items"]] == [coupon["code"]]
    assert (await (await shop.call("GET", "/v1/mp/me/coupons", other_token)).json())["items"] == []
    assert [e["reason"] for e in (await (await shop.call("GET", "/v1/mp/me/ledger", other_token)).json())["items"]] \
        == ["register"]
    # the coupon issued in the mini-program's view is redeemed at the till
    sale = await shop.kit.sale(order("MP2", [line("BEANS", "coffee", 6000)], 5500, member_id=member["id"],
                                     coupons=[coupon["code"]], at=shop.kit.clock.now().isoformat()))
    assert sale["coupon_discount"] == 500
    assert (await (await shop.call("GET", "/v1/mp/me/coupons", token)).json())["items"][0]["status"] == "redeemed"
    await problem(await shop.call("GET", "/v1/mp/me/ledger?cursor=%%%", token), 400, "bad_request")
    assert other["id"] != member["id"]


async def test_the_points_mall_in_the_mini_program(shop, other_chain):
    token, member = await shop.member("13700000006")  # 100 welcome points
    template = await (await shop.kit.admin("POST", "/v1/coupon-templates", {
        "name": "free latte", "kind": "gift", "sku": "LATTE", "valid_days": 30})).json()
    reward = await (await shop.kit.admin("POST", "/v1/rewards", {
        "name": "latte", "points": 60, "template_id": template["id"], "stock": 5})).json()
    browsing = (await shop.login())["token"]  # not joined yet: may browse
    listed = await (await shop.call("GET", "/v1/mp/rewards", browsing)).json()
    assert [(r["name"], r["points"], r["left"]) for r in listed["items"]] == [("latte", 60, 5)]
    path = f"/v1/mp/rewards/{reward['id']}/redeem"
    await problem(await shop.call("POST", path, token), 400, "idempotency_key_required")
    key = uuid.uuid4().hex
    first = await shop.call("POST", path, token, idempotency_key=key)
    assert first.status == 201, await first.text()
    redeemed = await first.json()
    assert redeemed["points"] == 60 and redeemed["balances"]["points"] == 100 - 60
    replay = await shop.call("POST", path, token, idempotency_key=key)
    assert replay.headers["Idempotent-Replayed"] == "true" and await replay.json() == redeemed
    await problem(await shop.call("POST", path, token, idempotency_key=uuid.uuid4().hex), 422, "insufficient_points")
    assert (await shop.me(token))["balances"]["points"] == 40
    held = await (await shop.call("GET", "/v1/mp/me/coupons", token)).json()
    assert [c["code"] for c in held["items"]] == [redeemed["coupon"]["code"]]
    gift = await shop.kit.pos("POST", f"/v1/pos/coupons/{redeemed['coupon']['code']}/redeem", None)
    assert gift.status == 200  # handed over at the counter
    other_app = await connect(other_chain, shop.fake)
    stranger, _ = await other_app.member("13700000006")
    await problem(await other_app.call("POST", path, stranger, idempotency_key=uuid.uuid4().hex), 404, "not_found")
    assert await verify() == []


async def test_marketplace_bindings_are_recorded_once(shop):
    token, member = await shop.member("13700000007")
    other_token, _ = await shop.member("13700000008")
    body = {"platform": "taobao", "buyer_id": "tb_buyer_42"}
    first = await shop.call("POST", "/v1/mp/me/bindings", token, body)
    assert first.status == 201 and await first.json() == {**body, "member_id": member["id"]}
    assert (await shop.call("POST", "/v1/mp/me/bindings", token, body)).status == 200
    await problem(await shop.call("POST", "/v1/mp/me/bindings", other_token, body), 409, "already_exists")
    await problem(await shop.call("POST", "/v1/mp/me/bindings", token, {"platform": "ebay", "buyer_id": "x"}),
                  422, "validation_error")
    assert {"channel": "taobao", "external_id": "tb_buyer_42"} in (await shop.me(token))["identities"]


async def test_a_frozen_member_can_look_but_not_earn(shop):
    token, member = await shop.member("13700000009")
    assert (await shop.kit.admin("POST", f"/v1/members/{member['id']}/freeze", {"reason": "fraud"})).status == 200
    assert (await shop.me(token))["frozen"] is True
    await problem(await shop.call("POST", "/v1/mp/me/checkins", token), 422, "member_frozen")
