"""Taobao/Tmall orders as the worker pulls them from TMC: a paid order earns pending points for the
member who bound the buyer's open uid, its success vests them, refunds claw back, whatever TMC
hands out twice and in whatever order; a Tmall buyer who is no member earns once they bind the
account and spends it at the till; a wrong app secret is refused by TOP and loses nothing."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest

from adapters.marketplaces.taobao import TmcPull
from gateway.services import SERVICES
from loyalty_core.models import InboxEvent, Order

from ..e2e.programs import PROGRAM, line, order
from ..fakes.taobao import FakeTop, Seller
from ..helpers import make_chain, problem
from .shops import balances, holder_of, inbox, pointed_at, served

APP_KEY = "12345678"


@pytest.fixture
async def fake_top(aiohttp_server) -> FakeTop:
    fake = await served(aiohttp_server, FakeTop(), "/router/rest")
    fake.app(APP_KEY, secrets.token_hex(16))
    return fake


@pytest.fixture
def settings(settings, fake_top):
    return pointed_at(settings, "taobao", fake_top)


def new_seller() -> Seller:
    return Seller(str(secrets.randbelow(10**9) + 10**9))


async def connect(kit, fake: FakeTop, seller: Seller, app_secret: str | None = None) -> int:
    response = await kit.admin("POST", "/v1/channels", {
        "platform": "taobao", "shop_id": seller.user_id, "app_key": APP_KEY,
        "app_secret": app_secret or fake.apps[APP_KEY], "session": "6100e2" + secrets.token_hex(20)})
    assert response.status in (200, 201), await response.text()
    return (await response.json())["id"]


@pytest.fixture
async def tmall(chain, fake_top) -> Seller:
    await chain.set_program(PROGRAM)
    seller = new_seller()
    seller.channel_id = await connect(chain, fake_top, seller)
    return seller


async def pull(kit) -> int:
    """One pass of the worker's TMC pull, as ``loyalty worker`` runs it."""
    services = kit.client.server.app[SERVICES]
    return await TmcPull(services.marketplaces.api, services.vault, every=timedelta(0)).run_due(services.clock.now())


async def bound_member(kit, fake_wechat, phone: str, open_uid: str) -> tuple:
    from ..wechat.conftest import connect as connect_app

    app = kit.extra.get("app") or await connect_app(kit, fake_wechat)
    kit.extra["app"] = app
    token, member = await app.member(phone)
    bound = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "taobao", "buyer_id": open_uid})
    assert bound.status == 201, await bound.text()
    return app, token, member


async def test_a_paid_order_earns_for_the_bound_buyer_and_its_success_vests(chain, tmall, fake_top, fake_wechat):
    _, _, alice = await bound_member(chain, fake_wechat, "13900000001", "AAAAgpDaJ3bkQ1")
    _, _, bob = await bound_member(chain, fake_wechat, "13900000002", "AAAAgpDaJ3bkQ2")
    fake_top.paid(APP_KEY, tmall, "3001", "188.00", open_uid="AAAAgpDaJ3bkQ1", post_fee="10.00")
    fake_top.paid(APP_KEY, tmall, "3002", "66.00", open_uid="AAAAgpDaJ3bkQ2")
    assert await pull(chain) == 2
    assert fake_top.unconfirmed(APP_KEY) == []
    # 188 paid of which 10 postage: 178 points, pending until the trade succeeds
    assert ((await balances(chain, alice["id"]))["pending_points"], (await balances(chain, bob["id"]))["pending_points"]) \
        == (178, 66)
    stored = await Order.get(chain_id=chain.chain_id, txn_id="3001")
    assert stored.source == f"taobao:{tmall.user_id}" and stored.payable == 17800

    fake_top.success(APP_KEY, tmall, "3001")
    assert await pull(chain) == 1
    held = await balances(chain, alice["id"])
    assert (held["points"], held["pending_points"], held["growth"]) == (178, 0, 178)
    assert (await balances(chain, bob["id"]))["pending_points"] == 66
    assert [(e["kind"], e["status"]) for e in await inbox(chain, tmall)] == [
        ("paid", "applied"), ("paid", "applied"), ("confirmed", "applied")]


async def test_a_tmall_buyer_who_is_no_member_earns_once_they_bind_and_spends_it_at_the_till(
        chain, tmall, fake_top, fake_wechat, clock):
    fake_top.paid(APP_KEY, tmall, "3101", "120.00", open_uid="AAAAnewBuyer01")
    fake_top.success(APP_KEY, tmall, "3101")
    fake_top.paid(APP_KEY, tmall, "3102", "45.00", open_uid="AAAAnewBuyer02")  # another buyer, no member either
    assert await pull(chain) == 3
    assert fake_top.unconfirmed(APP_KEY) == []  # kept here, so TMC need not hand them out again
    assert await inbox(chain, tmall, "waiting") == []
    holder = await holder_of(chain, "taobao", "AAAAnewBuyer01")  # the unclaimed points, as an operator sees them
    assert holder["unclaimed"] and (holder["balances"]["points"], holder["balances"]["growth"]) == (120, 120)
    other = await holder_of(chain, "taobao", "AAAAnewBuyer02")
    assert other["id"] != holder["id"] and other["balances"]["pending_points"] == 45

    app, token, member = await bound_member(chain, fake_wechat, "13900000011", "AAAAnewBuyer01")
    mine = (await app.me(token))["balances"]
    assert (mine["points"], mine["growth"]) == (120, 120)
    assert (await chain.member(holder["id"]))["merged_into"] == member["id"]
    again = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "taobao", "buyer_id": "AAAAnewBuyer01"})
    assert again.status == 200 and (await app.me(token))["balances"]["points"] == 120  # moved once
    assert (await chain.member(other["id"]))["balances"]["pending_points"] == 45  # still waiting for its buyer
    # the order moved with the points: a refund on Tmall claws back from the member
    fake_top.refund(APP_KEY, tmall, "3101", "88101", "20.00")
    await pull(chain)
    assert (await app.me(token))["balances"]["points"] == 100

    sale = await chain.sale(order("POS-3101", [line("LATTE", "coffee", 3000)], 2900, member_id=member["id"],
                                  redeem_points=100, at=clock.now().isoformat()))
    assert (sale["points_redeemed"], sale["points_earned"]) == (100, 29)
    assert (await app.me(token))["balances"]["points"] == 100 - 100 + 29


async def test_a_batch_handed_out_again_has_one_effect(chain, tmall, fake_top, fake_wechat):
    _, _, member = await bound_member(chain, fake_wechat, "13900000021", "AAAAtwice0001")
    ids = [fake_top.paid(APP_KEY, tmall, "3201", "50.00", open_uid="AAAAtwice0001"),
           fake_top.success(APP_KEY, tmall, "3201")]
    fake_top.fail_next["taobao.tmc.messages.confirm"] = 15  # the confirm is lost: TMC hands the batch out again
    assert await pull(chain) == 0
    assert fake_top.unconfirmed(APP_KEY) == ids
    assert (await balances(chain, member["id"]))["points"] == 50  # applied already
    for _ in range(4):
        await pull(chain)
    assert fake_top.unconfirmed(APP_KEY) == [] and sorted(fake_top.confirmed) == ids
    assert await Order.filter(chain_id=chain.chain_id, txn_id="3201").count() == 1
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 2
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (50, 0)


async def test_a_refund_before_its_payment_waits_and_ends_in_the_right_balance(chain, tmall, fake_top, fake_wechat):
    _, _, member = await bound_member(chain, fake_wechat, "13900000031", "AAAArefund001")
    fake_top.refund(APP_KEY, tmall, "3301", "88001", "40.00")
    assert await pull(chain) == 1
    assert [(e["kind"], e["reason"]) for e in await inbox(chain, tmall, "waiting")] == [("refunded", "no_payment")]
    fake_top.paid(APP_KEY, tmall, "3301", "100.00", open_uid="AAAArefund001")
    fake_top.success(APP_KEY, tmall, "3301")
    assert await pull(chain) == 2
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (60, 0)  # 100 earned, 40 clawed back
    fake_top.refund(APP_KEY, tmall, "3301", "88002", "60.00")  # the rest
    await pull(chain)
    assert (await balances(chain, member["id"]))["points"] == 0
    assert await inbox(chain, tmall, "waiting") == []


async def test_a_wrong_app_secret_is_refused_by_top_and_nothing_is_lost(chain, fake_top, fake_wechat):
    await chain.set_program(PROGRAM)
    seller = new_seller()
    seller.channel_id = await connect(chain, fake_top, seller, app_secret="0" * 32)
    _, _, member = await bound_member(chain, fake_wechat, "13900000041", "AAAAsecret001")
    fake_top.paid(APP_KEY, seller, "3401", "30.00", open_uid="AAAAsecret001")
    assert await pull(chain) == 0
    assert [c["method"] for c in fake_top.calls] == ["taobao.tmc.messages.consume"]  # refused: 25 Invalid signature
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    assert len(fake_top.unconfirmed(APP_KEY)) == 1

    await connect(chain, fake_top, seller)  # the operator mends the secret
    assert await pull(chain) == 1
    assert (await balances(chain, member["id"]))["pending_points"] == 30


async def test_messages_go_to_their_sellers_chain_and_unreadable_ones_are_dropped(
        chain, client, clock, tmall, fake_top, fake_wechat):
    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(PROGRAM)
    elsewhere = new_seller()
    elsewhere.channel_id = await connect(other, fake_top, elsewhere)
    _, _, here = await bound_member(chain, fake_wechat, "13900000051", "AAAAsameBuyer1")
    _, _, there = await bound_member(other, fake_wechat, "13900000051", "AAAAsameBuyer1")
    stranger = new_seller()  # a seller of the app that no chain connected
    fake_top.paid(APP_KEY, tmall, "3501", "10.00", open_uid="AAAAsameBuyer1")
    fake_top.paid(APP_KEY, elsewhere, "3502", "20.00", open_uid="AAAAsameBuyer1")
    fake_top.paid(APP_KEY, stranger, "3503", "30.00", open_uid="AAAAsameBuyer1")
    fake_top.publish(APP_KEY, tmall, "taobao_trade_TradeBuyerPay", tid=3504, payment="1.005")
    fake_top.queues[APP_KEY].append({**tmall.message("taobao_trade_TradeSuccess", {"tid": 3505}, 1), "content": "{"})
    assert await pull(chain) == 5
    assert fake_top.unconfirmed(APP_KEY) == []
    assert (await balances(chain, here["id"]))["pending_points"] == 10
    assert (await balances(other, there["id"]))["pending_points"] == 20
    assert [e["order_id"] for e in await inbox(chain, tmall)] == ["3501"]
    assert not await Order.filter(txn_id__in=["3503", "3504"]).exists()
    await problem(await other.admin("GET", f"/v1/channels/{tmall.channel_id}/inbox"), 404, "not_found")
    await problem(await other.admin("POST", "/v1/channels", {
        "platform": "taobao", "shop_id": tmall.user_id, "app_key": APP_KEY, "app_secret": fake_top.apps[APP_KEY],
        "session": "6100e2" + "a" * 40}), 409, "already_exists")


async def test_another_chains_wrong_secret_for_the_same_app_stops_nothing(chain, client, clock, fake_top, fake_wechat):
    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(PROGRAM)
    squatter = new_seller()  # connected first, with the app's key but not its secret
    squatter.channel_id = await connect(other, fake_top, squatter, app_secret="f" * 32)
    await chain.set_program(PROGRAM)
    tmall = new_seller()
    tmall.channel_id = await connect(chain, fake_top, tmall)
    _, _, member = await bound_member(chain, fake_wechat, "13900000061", "AAAAfirst0001")
    _, _, theirs = await bound_member(other, fake_wechat, "13900000062", "AAAAother0001")
    fake_top.paid(APP_KEY, tmall, "3601", "25.00", open_uid="AAAAfirst0001")
    fake_top.paid(APP_KEY, squatter, "3602", "35.00", open_uid="AAAAother0001")
    assert await pull(chain) == 2
    assert (await balances(chain, member["id"]))["pending_points"] == 25
    assert (await balances(other, theirs["id"]))["pending_points"] == 0  # not through another chain's secret
    assert await InboxEvent.filter(chain_id=other.chain_id).count() == 0
