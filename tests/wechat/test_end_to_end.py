"""The whole WeChat journey over HTTP, as a member and a cashier live it: log in, join, show the
code at the till and earn, see the card follow (a resent sync included), check in, redeem in the
points mall, and use the reward's coupon at the till; every balance read where a user reads it."""
from __future__ import annotations

import copy
import uuid

from loyalty_core.models import OutboxEvent
from loyalty_core.verify import verify

from ..e2e.programs import API_EXAMPLE, PROGRAM, line, order
from ..fakes.wechat import card_event
from .conftest import connect
from .test_wechat_push import AES_KEY, CARD, TOKEN, push, relay

PROGRAM_WITH_BEHAVIOURS = {**copy.deepcopy(PROGRAM), "behaviors": copy.deepcopy(API_EXAMPLE["behaviors"])}


async def test_login_join_earn_card_checkin_mall_and_coupon_at_the_till(chain, fake_wechat, clock):
    await chain.set_program(PROGRAM_WITH_BEHAVIOURS)
    shop = await connect(chain, fake_wechat, token=TOKEN, aes_key=AES_KEY)
    login = await shop.login(openid="o_journey")
    assert login["needs_join"] is True
    joined = await shop.join(login["token"], "13400000001", nickname="王", store_code="S01")
    token, member_id = login["token"], joined["member"]["id"]
    assert joined["member"]["balances"]["points"] == 100  # welcome
    await push(shop, card_event("user_get_card", "o_journey", CARD, "880001"), safe=True)

    code = (await (await shop.call("GET", "/v1/mp/me/code", token)).json())["code"]
    scanned = await (await chain.pos("POST", "/v1/pos/scan", {"code": code})).json()
    assert scanned["member"]["id"] == member_id
    sale = await chain.sale(order("J1", [line("BEANS", "coffee", 18800)], member_code=code, at=clock.now().isoformat()))
    assert sale["points_earned"] == 188  # 188 yuan at 1 point per yuan
    worker = relay(chain)
    await worker.run_once()
    assert fake_wechat.card_updates[-1]["bonus"] == 100 + 188
    resent = await OutboxEvent.filter(chain_id=chain.chain_id, topic="balance.changed").order_by("-id").first()
    await worker.deliver(resent)  # delivered twice: the same total, nothing added
    assert (fake_wechat.card_updates[-1]["bonus"], fake_wechat.card_updates[-1]["add_bonus"]) == (288, 0)
    assert sum(u["add_bonus"] for u in fake_wechat.card_updates) == 288

    checked = await (await shop.call("POST", "/v1/mp/me/checkins", token)).json()
    assert checked["points_awarded"] == 5 and checked["balances"]["points"] == 293

    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": "20 off", "kind": "cash", "amount_off": 2000, "min_spend": 5000, "valid_days": 30})).json()
    reward = await (await chain.admin("POST", "/v1/rewards", {
        "name": "20 yuan voucher", "points": 200, "template_id": template["id"]})).json()
    redeemed = await shop.call("POST", f"/v1/mp/rewards/{reward['id']}/redeem", token, idempotency_key=uuid.uuid4().hex)
    assert redeemed.status == 201
    voucher = (await redeemed.json())["coupon"]["code"]
    assert (await shop.me(token))["balances"]["points"] == 293 - 200

    # at the till: the coupon issued in the mini-program takes 20 yuan off
    used = await chain.sale(order("J2", [line("BEANS", "coffee", 6000)], 4000, member_id=member_id, coupons=[voucher],
                                  at=clock.now().isoformat()))
    assert used["coupon_discount"] == 2000 and used["points_earned"] == 40  # 40 yuan paid
    await worker.run_once()
    me = await shop.me(token)
    assert me["balances"]["points"] == 93 + 40 and fake_wechat.card_updates[-1]["bonus"] == 133
    held = await (await shop.call("GET", "/v1/mp/me/coupons", token)).json()
    assert [(c["code"], c["status"]) for c in held["items"]] == [(voucher, "redeemed")]
    ledger = await (await shop.call("GET", "/v1/mp/me/ledger", token)).json()
    assert [e["kind"] for e in ledger["items"]][:4] == ["order", "mall", "behavior", "order"]
    assert await verify() == []
