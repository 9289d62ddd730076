"""Douyin shop orders as a chain lives them: a paid message names only the order, so its buyer and
lines come from Douyin's open API (the fake's, on loopback); the points go to the member who bound
the buyer's doudian_open_id in the mini-program, pending until the trade succeeds; refunds claw
back, even below zero after the points were spent in the mini-program mall; forged, repeated,
early and unreadable pushes, and an open API that fails, all end in the balance a member reads."""
from __future__ import annotations

import asyncio
import secrets
from functools import partial
import uuid

import aiohttp
import orjson
import pytest

from adapters.marketplaces.douyin import Douyin
from loyalty_core.models import InboxEvent, Order

from ..e2e.programs import line, order
from ..fakes.douyin import DouyinShop, FakeDouyinOpenApi
from ..helpers import make_chain, problem
from .shops import PLAIN, balances, connected, holder_of, inbox, pointed_at, push, served
from ..wechat.conftest import MiniProgram
from ..wechat.conftest import connect as connect_app

ACK = {"code": 0, "msg": "success"}
send = partial(push, "/v1/hooks/douyin")


@pytest.fixture
async def fake_douyin(aiohttp_server) -> FakeDouyinOpenApi:
    return await served(aiohttp_server, FakeDouyinOpenApi())


@pytest.fixture
def settings(settings, fake_douyin):
    return pointed_at(settings, "douyin", fake_douyin)


def new_shop() -> DouyinShop:
    return DouyinShop(str(secrets.randbelow(10**8) + 10**7), str(secrets.randbelow(10**18) + 7 * 10**18),
                      secrets.token_hex(16))


async def connect(kit, fake: FakeDouyinOpenApi, shop: DouyinShop | None = None) -> DouyinShop:
    shop = await connected(kit, shop or new_shop())
    fake.add_shop(shop)
    return shop


@pytest.fixture
async def douyin(chain, fake_douyin) -> DouyinShop:
    await chain.set_program(PLAIN)
    return await connect(chain, fake_douyin)


@pytest.fixture
async def mini(chain, fake_wechat) -> MiniProgram:
    return await connect_app(chain, fake_wechat)


async def bound_member(app: MiniProgram, phone: str, open_id: str) -> tuple[str, dict]:
    """A member who joined in the mini-program and bound their Douyin account."""
    token, member = await app.member(phone)
    bound = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "douyin", "buyer_id": open_id})
    assert bound.status == 201, await bound.text()
    return token, member


def unix(clock) -> int:
    return int(clock.now().timestamp())


async def test_paid_orders_earn_pending_points_for_the_members_who_bound_the_buyers_and_success_vests_them(
        chain, douyin, fake_douyin, mini, clock):
    _, ann = await bound_member(mini, "13800000001", "dy-open-ann")
    _, bob = await bound_member(mini, "13800000002", "dy-open-bob")
    fake_douyin.add_order(douyin, "6920000000000000001", "dy-open-ann", [("TEA-01", 2, 10000), ("CUP-01", 1, 8800)],
                          unix(clock))
    fake_douyin.add_order(douyin, "6920000000000000002", "dy-open-bob", [("TEA-01", 1, 3050)], unix(clock))
    # one push, two messages: each order earns for its own buyer
    assert await send(chain, douyin.push([douyin.paid("6920000000000000001", 18800, unix(clock)),
                                          douyin.paid("6920000000000000002", 3050, unix(clock))])) == ACK
    assert (await balances(chain, ann["id"]))["pending_points"] == 188
    assert (await balances(chain, ann["id"]))["points"] == 0
    assert (await balances(chain, bob["id"]))["pending_points"] == 30
    stored = await Order.get(chain_id=chain.chain_id, txn_id="6920000000000000001")
    assert (stored.source, stored.payable) == (f"douyin:{douyin.shop_id}", 18800)

    assert await send(chain, douyin.push(douyin.success("6920000000000000001"))) == ACK
    held = await balances(chain, ann["id"])
    assert (held["points"], held["pending_points"], held["growth"]) == (188, 0, 188)
    assert (await balances(chain, bob["id"]))["pending_points"] == 30  # not confirmed yet
    assert [(e["kind"], e["buyer_id"], e["status"]) for e in await inbox(chain, douyin)] == [
        ("paid", "dy-open-ann", "applied"), ("paid", "dy-open-bob", "applied"), ("confirmed", None, "applied")]
    # one access token for both orders, each order asked for once, with its shop order id
    assert fake_douyin.methods() == ["token.create", "order.orderDetail", "order.orderDetail"]
    assert [params for _, params in fake_douyin.calls] == [
        {"code": "", "grant_type": "authorization_self", "shop_id": int(douyin.shop_id)},
        {"shop_order_id": "6920000000000000001"}, {"shop_order_id": "6920000000000000002"}]


async def test_a_buyer_who_is_no_member_yet_earns_on_a_holder_that_moves_to_who_binds(chain, douyin, fake_douyin,
                                                                                     mini, clock):
    fake_douyin.add_order(douyin, "6920000000000000011", "dy-open-cy", [("TEA-01", 1, 12000)], unix(clock))
    assert await send(chain, douyin.push(douyin.paid("6920000000000000011", 12000, unix(clock)))) == ACK
    assert await send(chain, douyin.push(douyin.success("6920000000000000011"))) == ACK
    assert await inbox(chain, douyin, "waiting") == []
    holder = await holder_of(chain, "douyin", "dy-open-cy")
    assert holder["unclaimed"] and (holder["balances"]["points"], holder["phone"]) == (120, None)

    token, member = await bound_member(mini, "13800000011", "dy-open-cy")
    assert (await mini.me(token))["balances"]["points"] == 120
    assert (await chain.member(holder["id"]))["merged_into"] == member["id"]
    assert (await holder_of(chain, "douyin", "dy-open-cy"))["id"] == member["id"]
    fake_douyin.add_order(douyin, "6920000000000000012", "dy-open-cy", [("CUP-01", 1, 1000)], unix(clock))
    await send(chain, douyin.push(douyin.paid("6920000000000000012", 1000, unix(clock))))
    assert (await mini.me(token))["balances"]["pending_points"] == 10  # later orders earn at once
    assert fake_douyin.methods().count("order.orderDetail") == 2  # the waiting order was not asked for again


async def test_a_wrong_signature_is_401_and_nothing_is_kept_an_unknown_shop_404(chain, douyin, fake_douyin, mini,
                                                                                  clock):
    _, member = await bound_member(mini, "13800000021", "dy-open-dee")
    fake_douyin.add_order(douyin, "6920000000000000021", "dy-open-dee", [("TEA-01", 1, 12345)], unix(clock))
    paid = douyin.paid("6920000000000000021", 12345, unix(clock))
    await problem(await chain.client.post("/v1/hooks/douyin", data=douyin.push(paid, secret="not-the-secret")[1],
                                          headers=douyin.push(paid, secret="not-the-secret")[0]),
                  401, "invalid_signature")
    headers, body = douyin.push(paid)
    changed = body.replace(b'\\"pay_amount\\":12345', b'\\"pay_amount\\":99999', 1)
    assert changed != body
    await problem(await chain.client.post("/v1/hooks/douyin", data=changed, headers=headers), 401, "invalid_signature")
    await problem(await chain.client.post("/v1/hooks/douyin", data=body, headers={**headers, "app-id": "1" * 19}),
                  401, "invalid_signature")
    other_app = douyin.push(paid, app_key="1" * 19)  # signed right, by another app with the same secret
    await problem(await chain.client.post("/v1/hooks/douyin", data=other_app[1], headers=other_app[0]), 401,
                  "invalid_signature")
    unsigned = {k: v for k, v in headers.items() if k != "event-sign"}
    await problem(await chain.client.post("/v1/hooks/douyin", data=body, headers=unsigned), 401, "invalid_signature")
    stranger = new_shop()
    unknown = stranger.push(stranger.paid("6920000000000000021", 12345, unix(clock)))
    await problem(await chain.client.post("/v1/hooks/douyin", data=unknown[1], headers=unknown[0]), 404, "not_found")

    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    assert not await Order.filter(chain_id=chain.chain_id).exists()
    assert fake_douyin.calls == []
    assert (await balances(chain, member["id"]))["pending_points"] == 0


async def test_the_same_push_five_times_has_one_effect(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000031", "dy-open-eve")
    fake_douyin.add_order(douyin, "6920000000000000031", "dy-open-eve", [("TEA-01", 3, 9990)], unix(clock))
    paid = douyin.push(douyin.paid("6920000000000000031", 9990, unix(clock)))
    confirmed = douyin.push(douyin.success("6920000000000000031"))
    for _ in range(5):
        assert await send(chain, paid) == ACK
    for _ in range(5):
        assert await send(chain, confirmed) == ACK
    assert await Order.filter(chain_id=chain.chain_id, txn_id="6920000000000000031").count() == 1
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (99, 0)
    assert [(e["kind"], e["status"], e["attempts"]) for e in await inbox(chain, douyin)] == [
        ("paid", "applied", 1), ("confirmed", "applied", 1)]
    assert fake_douyin.methods() == ["token.create", "order.orderDetail"]


async def test_a_refund_before_its_payment_waits_and_ends_in_the_right_balance(chain, douyin, fake_douyin, mini,
                                                                               clock):
    _, member = await bound_member(mini, "13800000041", "dy-open-fay")
    # 100 yuan of tea and 5 yuan of postage
    fake_douyin.add_order(douyin, "6920000000000000041", "dy-open-fay", [("TEA-01", 1, 10000)], unix(clock),
                          post_amount=500)
    assert await send(chain, douyin.push(douyin.refund("6920000000000000041", "7010000000000000001", 4000))) == ACK
    assert await send(chain, douyin.push(douyin.success("6920000000000000041"))) == ACK
    assert [(e["kind"], e["reason"]) for e in await inbox(chain, douyin, "waiting")] == [
        ("refunded", "no_payment"), ("confirmed", "no_payment")]
    assert (await balances(chain, member["id"]))["pending_points"] == 0

    assert await send(chain, douyin.push(douyin.paid("6920000000000000041", 10500, unix(clock)))) == ACK
    # paid 100 yuan of goods (100 points), 40 refunded (40 taken back), then confirmed: 60 available
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (60, 0)
    assert await inbox(chain, douyin, "waiting") == []
    # the same after-sale again (a new msg_id) takes nothing more
    assert await send(chain, douyin.push(douyin.refund("6920000000000000041", "7010000000000000001", 4000))) == ACK
    assert (await balances(chain, member["id"]))["points"] == 60
    # the rest, with the postage: 65 yuan refunded of which 5 postage, which never earned
    assert await send(chain, douyin.push(douyin.refund("6920000000000000041", "7010000000000000002", 6500,
                                                       refund_post_amount=500))) == ACK
    assert (await balances(chain, member["id"]))["points"] == 0
    stored = await Order.get(chain_id=chain.chain_id, txn_id="6920000000000000041")
    assert (stored.payable, stored.refunded_amount) == (10000, 10000)


async def test_a_canceled_order_and_other_messages_change_nothing(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000051", "dy-open-gus")
    address_changed = douyin.message(105, {"p_id": "6920000000000000051", "shop_id": int(douyin.shop_id)})
    assert await send(chain, douyin.push([douyin.canceled("6920000000000000051"), address_changed])) == ACK
    assert [(e["kind"], e["status"], e["reason"]) for e in await inbox(chain, douyin)] == [
        ("closed", "applied", "nothing to do"), ("other", "applied", "nothing to do")]
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (0, 0)
    assert fake_douyin.calls == []


async def test_douyins_check_of_the_push_url_is_acked_and_keeps_nothing(chain, douyin, fake_douyin):
    assert await send(chain, douyin.push(douyin.check())) == ACK
    stranger = new_shop()  # a check names no shop: it is verified with a shop of its app
    await problem(await chain.client.post("/v1/hooks/douyin", data=stranger.push(stranger.check())[1],
                                          headers=stranger.push(stranger.check())[0]), 404, "not_found")
    forged = douyin.push(douyin.check(), secret="not-the-app-secret")
    await problem(await chain.client.post("/v1/hooks/douyin", data=forged[1], headers=forged[0]), 401,
                  "invalid_signature")
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    # a check message in a push of the shop's messages is skipped
    assert await send(chain, douyin.push([douyin.check(), douyin.canceled("6920000000000000061")])) == ACK
    assert [e["kind"] for e in await inbox(chain, douyin)] == ["closed"]


async def test_the_open_api_failing_leaves_the_event_failed_and_the_worker_applies_it_once(
        chain, douyin, fake_douyin, mini, clock, monkeypatch):
    from gateway.services import SERVICES
    from gateway.worker import Schedule

    _, member = await bound_member(mini, "13800000071", "dy-open-hal")
    services = chain.client.server.app[SERVICES]
    schedule = Schedule(clock, vault=services.vault, details=services.marketplaces)
    fake_douyin.add_order(douyin, "6920000000000000071", "dy-open-hal", [("TEA-01", 1, 7000)], unix(clock))
    fake_douyin.fail("order.orderDetail", 20000, "dop.service-error")
    assert await send(chain, douyin.push(douyin.paid("6920000000000000071", 7000, unix(clock)))) == ACK
    [failed] = await inbox(chain, douyin, "failed")
    assert "20000" in failed["reason"] and "dop.service-error" in failed["reason"], failed
    assert failed["next_attempt_at"] is not None and failed["buyer_id"] is None
    assert (await balances(chain, member["id"]))["pending_points"] == 0

    clock.advance(minutes=5)
    await schedule.run_due()
    assert (await balances(chain, member["id"]))["pending_points"] == 70
    assert [(e["status"], e["attempts"]) for e in await inbox(chain, douyin)] == [("applied", 2)]
    clock.advance(minutes=5)
    await schedule.run_due()  # nothing is due: applied once
    assert (await balances(chain, member["id"]))["pending_points"] == 70
    assert fake_douyin.methods().count("order.orderDetail") == 2

    # Douyin not answering in time is the same: failed, then applied by the worker
    monkeypatch.setattr(Douyin, "timeout", aiohttp.ClientTimeout(total=0.2))
    fake_douyin.add_order(douyin, "6920000000000000072", "dy-open-hal", [("CUP-01", 1, 2000)], unix(clock))
    fake_douyin.hang("order.orderDetail", 1.0)
    assert await send(chain, douyin.push(douyin.paid("6920000000000000072", 2000, unix(clock)))) == ACK
    [failed] = await inbox(chain, douyin, "failed")
    assert "did not answer" in failed["reason"], failed
    clock.advance(minutes=5)
    await schedule.run_due()
    assert (await balances(chain, member["id"]))["pending_points"] == 90
    assert await inbox(chain, douyin, "failed") == []


async def test_an_expired_access_token_is_replaced_once(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000081", "dy-open-ivy")
    for n in (1, 2):
        fake_douyin.add_order(douyin, f"692000000000000008{n}", "dy-open-ivy", [("TEA-01", 1, 1000 * n)], unix(clock))
    await send(chain, douyin.push(douyin.paid("6920000000000000081", 1000, unix(clock))))
    fake_douyin.expire_tokens()
    await send(chain, douyin.push(douyin.paid("6920000000000000082", 2000, unix(clock))))
    assert (await balances(chain, member["id"]))["pending_points"] == 30
    assert fake_douyin.methods() == ["token.create", "order.orderDetail",
                                     "order.orderDetail", "token.create", "order.orderDetail"]


async def test_ten_pushes_at_once_fetch_one_token(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000085", "dy-open-kit")
    orders = [f"69200000000000009{n:02d}" for n in range(10)]
    for n, order_id in enumerate(orders):
        fake_douyin.add_order(douyin, order_id, "dy-open-kit", [("TEA-01", 1, 100 * (n + 1))], unix(clock))
    await asyncio.gather(*(send(chain, douyin.push(douyin.paid(order_id, 100 * (n + 1), unix(clock))))
                           for n, order_id in enumerate(orders)))
    assert fake_douyin.methods().count("token.create") == 1  # the others waited for it (adapters.tokens)
    assert fake_douyin.methods().count("order.orderDetail") == 10
    assert (await balances(chain, member["id"]))["pending_points"] == sum(range(1, 11))


async def test_an_order_detail_that_cannot_be_read_fails_never_500(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000091", "dy-open-jo")
    detail = fake_douyin.add_order(douyin, "6920000000000000091", "dy-open-jo", [("TEA-01", 1, 1000)], unix(clock))
    detail["sku_order_list"][0]["item_num"] = "many"
    assert await send(chain, douyin.push(douyin.paid("6920000000000000091", 1000, unix(clock)))) == ACK
    [failed] = await inbox(chain, douyin, "failed")
    assert "cannot be read" in failed["reason"] and "quantity" in failed["reason"], failed
    assert (await balances(chain, member["id"]))["pending_points"] == 0


async def test_a_call_douyin_cannot_verify_fails_with_its_error(chain, douyin, fake_douyin, mini, clock):
    _, member = await bound_member(mini, "13800000095", "dy-open-jan")
    fake_douyin.add_order(douyin, "6920000000000000095", "dy-open-jan", [("TEA-01", 1, 1000)], unix(clock))
    fake_douyin.apps[douyin.app_key].app_secret = secrets.token_hex(16)  # reset in Douyin's console, not here
    assert await send(chain, douyin.push(douyin.paid("6920000000000000095", 1000, unix(clock)))) == ACK
    [failed] = await inbox(chain, douyin, "failed")
    assert "40003 isv.signature-invalid" in failed["reason"], failed
    assert fake_douyin.methods() == ["token.create"]
    assert (await balances(chain, member["id"]))["pending_points"] == 0


async def test_a_douyin_refund_of_points_spent_in_the_mall_leaves_the_documented_negative_balance(
        chain, douyin, fake_douyin, mini, clock):
    token, member = await bound_member(mini, "13800000101", "dy-open-kim")
    fake_douyin.add_order(douyin, "6920000000000000101", "dy-open-kim", [("TEA-01", 1, 10000)], unix(clock))
    await send(chain, douyin.push([douyin.paid("6920000000000000101", 10000, unix(clock)),
                                   douyin.success("6920000000000000101")]))
    assert (await mini.me(token))["balances"]["points"] == 100

    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": "20 off", "kind": "cash", "amount_off": 2000, "min_spend": 5000, "valid_days": 30})).json()
    reward = await (await chain.admin("POST", "/v1/rewards", {
        "name": "20 yuan voucher", "points": 100, "template_id": template["id"]})).json()
    redeemed = await mini.call("POST", f"/v1/mp/rewards/{reward['id']}/redeem", token, idempotency_key=uuid.uuid4().hex)
    assert redeemed.status == 201, await redeemed.text()
    assert (await mini.me(token))["balances"]["points"] == 0

    # Douyin refunds the whole order: its 100 points are taken back even into a negative balance
    await send(chain, douyin.push(douyin.refund("6920000000000000101", "7010000000000000101", 10000)))
    assert (await mini.me(token))["balances"]["points"] == -100
    assert (await balances(chain, member["id"]))["points"] == -100
    again = await mini.call("POST", f"/v1/mp/rewards/{reward['id']}/redeem", token, idempotency_key=uuid.uuid4().hex)
    await problem(again, 422, "insufficient_points")  # a negative balance cannot be spent
    # the next earning, at the till, fills the hole first
    sale = await chain.sale(order("POS-K1", [line("LATTE", "coffee", 3000)], member_id=member["id"],
                                  at=clock.now().isoformat()))
    assert sale["points_earned"] == 30
    assert (await mini.me(token))["balances"]["points"] == -70


def bad(shop: DouyinShop, **data) -> dict:
    """A paid message whose data has these fields changed."""
    return {"tag": "101", "msg_id": uuid.uuid4().hex, "data": orjson.dumps({
        "p_id": "6920000000000000111", "shop_id": int(shop.shop_id), "pay_time": 1_800_000_000, "pay_amount": 1000,
        **data}).decode()}


async def test_pushes_that_cannot_be_read_are_400_never_500(chain, douyin, fake_douyin):
    refund = douyin.refund("6920000000000000111", "7010000000000000111", 4000)
    half_fen = {**refund, "data": refund["data"].replace('"refund_amount":4000', '"refund_amount":40.5')}
    other_shop = new_shop().paid("6920000000000000112", 1000, 1_800_000_000)
    unreadable = [b"not json", b'{"tag": "101"}', b"[]", b'["101"]',
                  orjson.dumps([{"tag": "101", "msg_id": "m1", "data": "{not json"}]),
                  orjson.dumps([{"tag": "101", "msg_id": "m1", "data": "[1, 2]"}]),
                  orjson.dumps([{"tag": "paid", "msg_id": "m1", "data": "{}"}]),
                  orjson.dumps([bad(douyin, pay_amount=12.5)]), orjson.dumps([bad(douyin, pay_amount="ten")]),
                  orjson.dumps([half_fen]), orjson.dumps([bad(douyin, p_id="6920\u00001")]),
                  orjson.dumps([bad(douyin, p_id=None)]), orjson.dumps([bad(douyin, p_id="9" * 65)]),
                  orjson.dumps([bad(douyin, shop_id=None)]), orjson.dumps([bad(douyin, shop_id="9" * 5000)]),
                  orjson.dumps([{**bad(douyin), "msg_id": "m\u00001"}]),
                  orjson.dumps([douyin.paid("6920000000000000112", 1000, 1_800_000_000), other_shop])]
    for body in unreadable:
        await problem(await chain.client.post("/v1/hooks/douyin", data=body, headers=douyin.push([], raw=body)[0]),
                      400, "bad_request")
    headers, body = douyin.push(douyin.paid("6920000000000000113", 1000, 1_800_000_000))
    await problem(await chain.client.post("/v1/hooks/douyin", data=body, headers={**headers, "event-sign": "é"}),
                  401, "invalid_signature")
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    assert not await Order.filter(chain_id=chain.chain_id).exists()
    assert fake_douyin.calls == []


async def test_a_shop_belongs_to_one_chain_and_its_orders_stay_there(chain, client, clock, douyin, fake_douyin,
                                                                      fake_wechat):
    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(PLAIN)
    await problem(await other.admin("POST", "/v1/channels", douyin.connection()), 409, "already_exists")
    here_app, there_app = await connect_app(chain, fake_wechat), await connect_app(other, fake_wechat)
    _, here = await bound_member(here_app, "13800000121", "dy-open-lu")
    _, there = await bound_member(there_app, "13800000121", "dy-open-lu")  # the same buyer in another chain
    fake_douyin.add_order(douyin, "6920000000000000121", "dy-open-lu", [("TEA-01", 1, 5000)], unix(clock))
    await send(chain, douyin.push(douyin.paid("6920000000000000121", 5000, unix(clock))))
    assert (await balances(chain, here["id"]))["pending_points"] == 50
    assert (await balances(other, there["id"]))["pending_points"] == 0
    await problem(await other.admin("GET", f"/v1/channels/{douyin.channel_id}/inbox"), 404, "not_found")
    listed = (await (await chain.admin("GET", "/v1/channels")).json())["items"]
    assert [(c["platform"], c["shop_id"], c["app_key"], c["secrets_set"]) for c in listed if c["platform"] == "douyin"
            ] == [("douyin", douyin.shop_id, douyin.app_key, ["app_secret"])]
    assert douyin.app_secret not in str(listed)
