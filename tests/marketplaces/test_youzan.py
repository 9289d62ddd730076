"""Youzan orders as a chain lives them: a paid order earns pending points for the member with the
order's phone, its confirmation vests them, refunds claw back pro rata, whatever order and however
often Youzan sends; a forged push is refused and kept nowhere; points earned online are spent at
the till; a buyer who is no member yet earns once they bind their account; chains stay apart."""
from __future__ import annotations

from functools import partial
from datetime import timedelta
from zoneinfo import ZoneInfo


from loyalty_core.models import InboxEvent, Order

from ..e2e.programs import line, order, program
from ..fakes.youzan import YouzanShop
from ..helpers import make_chain, problem
from .shops import PLAIN, balances, connected, holder_of, inbox, push

ACK = {"code": 0, "msg": "success"}
send = partial(push, "/v1/hooks/youzan")


def new_shop() -> YouzanShop:
    return YouzanShop.any()


def beijing(clock) -> str:
    return clock.now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


async def test_a_paid_order_earns_pending_points_and_its_confirmation_vests_them(chain, youzan, clock):
    member = await chain.new_member("13700000001")
    other = await chain.new_member("13700000002")
    assert await send(chain, youzan.paid("E1", "188.00", phone="13700000001", pay_time=beijing(clock),
                                         items=[("TEA", 2, "100.00"), ("CUP", 1, "88.00")])) == ACK
    assert await send(chain, youzan.paid("E2", "30.50", phone="13700000002", pay_time=beijing(clock))) == ACK
    assert (await balances(chain, member["id"]))["pending_points"] == 188
    assert (await balances(chain, member["id"]))["points"] == 0
    assert (await balances(chain, other["id"]))["pending_points"] == 30
    stored = await Order.get(chain_id=chain.chain_id, txn_id="E1")
    assert stored.source == f"youzan:{youzan.kdt_id}" and stored.payable == 18800 and stored.store_id is None

    assert await send(chain, youzan.success("E1")) == ACK
    now_held = await balances(chain, member["id"])
    assert (now_held["points"], now_held["pending_points"], now_held["growth"]) == (188, 0, 188)
    assert (await balances(chain, other["id"]))["pending_points"] == 30  # E2 not confirmed yet
    assert {(e["kind"], e["status"]) for e in await inbox(chain, youzan)} == {("paid", "applied"),
                                                                              ("confirmed", "applied")}


async def test_a_wrong_signature_is_refused_and_nothing_is_kept(chain, youzan, clock):
    member = await chain.new_member("13700000011")
    forged = youzan.paid("F1", "500.00", phone="13700000011", pay_time=beijing(clock), secret="not-the-secret")
    await problem(await chain.client.post("/v1/hooks/youzan", data=forged[1], headers=forged[0]), 401,
                  "invalid_signature")
    headers, body = youzan.paid("F1", "500.00", phone="13700000011", pay_time=beijing(clock))
    await problem(await chain.client.post("/v1/hooks/youzan", data=body.replace(b"500.00", b"900.00"),
                                          headers=headers), 401, "invalid_signature")
    stranger = YouzanShop(youzan.kdt_id, "someone-elses-app", youzan.client_secret)
    await problem(await chain.client.post("/v1/hooks/youzan", data=stranger.paid("F1", "1.00")[1],
                                          headers=stranger.paid("F1", "1.00")[0]), 401, "invalid_signature")
    unknown = new_shop().paid("F1", "1.00")
    await problem(await chain.client.post("/v1/hooks/youzan", data=unknown[1], headers=unknown[0]), 404, "not_found")
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    assert not await Order.filter(chain_id=chain.chain_id).exists()
    assert (await balances(chain, member["id"]))["pending_points"] == 0


async def test_the_same_push_five_times_has_one_effect(chain, youzan, clock):
    member = await chain.new_member("13700000021")
    paid = youzan.paid("S1", "99.90", phone="13700000021", pay_time=beijing(clock))
    confirmed = youzan.success("S1")
    for _ in range(5):
        assert await send(chain, paid) == ACK
    for _ in range(5):
        assert await send(chain, confirmed) == ACK
    assert await Order.filter(chain_id=chain.chain_id, txn_id="S1").count() == 1
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (99, 0)
    assert len(await inbox(chain, youzan)) == 2


async def test_a_refund_before_its_payment_waits_and_ends_in_the_right_balance(chain, youzan, clock):
    member = await chain.new_member("13700000031")
    assert await send(chain, youzan.refund("R1", "RF-1", "40.00")) == ACK
    assert await send(chain, youzan.success("R1")) == ACK
    waiting = await inbox(chain, youzan, "waiting")
    assert [(e["kind"], e["reason"]) for e in waiting] == [("refunded", "no_payment"), ("confirmed", "no_payment")]
    assert (await balances(chain, member["id"]))["pending_points"] == 0

    assert await send(chain, youzan.paid("R1", "100.00", phone="13700000031", pay_time=beijing(clock))) == ACK
    # paid 100 yuan (100 points), 40 refunded (40 taken back), then confirmed: 60 available
    assert (await balances(chain, member["id"]))["points"] == 60
    assert (await balances(chain, member["id"]))["pending_points"] == 0
    assert await inbox(chain, youzan, "waiting") == []
    assert await send(chain, youzan.refund("R1", "RF-1", "40.00")) == ACK  # Youzan's resend, new msg_id
    assert (await balances(chain, member["id"]))["points"] == 60
    assert await send(chain, youzan.refund("R1", "RF-2", "60.00")) == ACK  # the rest
    assert (await balances(chain, member["id"]))["points"] == 0


async def test_a_closed_unpaid_order_changes_nothing(chain, youzan, clock):
    member = await chain.new_member("13700000041")
    assert await send(chain, youzan.close("C1")) == ACK
    [closed] = await inbox(chain, youzan)
    assert (closed["kind"], closed["status"], closed["reason"]) == ("closed", "applied", "nothing to do")
    held = await balances(chain, member["id"])
    assert (held["points"], held["pending_points"]) == (0, 0)
    assert not await Order.filter(chain_id=chain.chain_id).exists()


async def test_points_earned_on_youzan_are_spent_at_the_till(chain, youzan, clock):
    member = await chain.new_member("13700000051")
    await send(chain, youzan.paid("T1", "300.00", phone="13700000051", pay_time=beijing(clock)))
    await send(chain, youzan.success("T1"))
    assert (await balances(chain, member["id"]))["points"] == 300
    sale = await chain.sale(order("POS-T1", [line("LATTE", "coffee", 5000)], 4800, member_id=member["id"],
                                  redeem_points=200, at=clock.now().isoformat()))
    assert sale["points_redeemed"] == 200 and sale["points_discount"] == 200 and sale["points_earned"] == 48
    assert (await balances(chain, member["id"]))["points"] == 300 - 200 + 48


async def test_a_buyer_who_is_no_member_earns_once_they_bind_the_account(chain, youzan, clock, fake_wechat):
    from ..wechat.conftest import connect as connect_app

    await send(chain, youzan.paid("B1", "120.00", open_id="yz-open-1", pay_time=beijing(clock)))
    await send(chain, youzan.success("B1"))
    assert await inbox(chain, youzan, "waiting") == []
    holder = await holder_of(chain, "youzan", "yz-open-1")
    assert holder["unclaimed"] and holder["balances"]["points"] == 120
    # a buyer known by a phone no member has waits for the member who joins with it
    await send(chain, youzan.paid("B3", "30.00", phone="13700000061", open_id="yz-open-3", pay_time=beijing(clock)))
    assert [(e["order_id"], e["reason"]) for e in await inbox(chain, youzan, "waiting")] == [("B3", "no_member")]

    app = await connect_app(chain, fake_wechat)
    token, member = await app.member("13700000061")
    bound = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "youzan", "buyer_id": "yz-open-1"})
    assert bound.status == 201, await bound.text()
    assert (await app.me(token))["balances"]["points"] == 120
    assert (await chain.member(holder["id"]))["merged_into"] == member["id"]
    again = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "youzan", "buyer_id": "yz-open-1"})
    assert again.status == 200 and (await app.me(token))["balances"]["points"] == 120
    # later orders of the bound buyer earn at once
    await send(chain, youzan.paid("B2", "10.00", open_id="yz-open-1", pay_time=beijing(clock)))
    assert (await app.me(token))["balances"]["pending_points"] == 10


async def test_an_order_naming_the_buyers_phone_binds_their_account_and_brings_what_it_held(chain, youzan, clock):
    member = await chain.new_member("13700000121")
    await send(chain, youzan.paid("W1", "40.00", open_id="yz-open-121", pay_time=beijing(clock)))  # no phone
    holder = await holder_of(chain, "youzan", "yz-open-121")
    assert holder["unclaimed"] and holder["balances"]["pending_points"] == 40
    await send(chain, youzan.paid("W2", "60.00", phone="13700000121", open_id="yz-open-121", pay_time=beijing(clock)))
    assert (await balances(chain, member["id"]))["pending_points"] == 100  # W2, and W1's from the holder
    assert (await chain.member(holder["id"]))["merged_into"] == member["id"]
    assert {"channel": "youzan", "external_id": "yz-open-121"} in (await chain.member(member["id"]))["identities"]


async def test_a_shop_belongs_to_one_chain_and_its_orders_stay_there(chain, client, clock, youzan):
    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(PLAIN)
    here = await chain.new_member("13700000071")
    there = await other.new_member("13700000071")  # the same phone in another chain
    await problem(await other.admin("POST", "/v1/channels", youzan.connection()), 409, "already_exists")
    await send(chain, youzan.paid("X1", "50.00", phone="13700000071", pay_time=beijing(clock)))
    assert (await balances(chain, here["id"]))["pending_points"] == 50
    assert (await balances(other, there["id"]))["pending_points"] == 0
    await problem(await other.admin("GET", f"/v1/channels/{youzan.channel_id}/inbox"), 404, "not_found")
    listed = (await (await chain.admin("GET", "/v1/channels")).json())["items"]
    assert [(c["platform"], c["shop_id"], c["client_id"], c["secrets_set"]) for c in listed] == [
        ("youzan", youzan.kdt_id, youzan.client_id, ["client_secret"])]
    assert youzan.client_secret not in str(listed)


async def test_bad_connections_and_replay(chain, youzan, clock):
    for body, field in (({"platform": "youzan", "shop_id": "abc", "client_id": "x" * 10, "client_secret": "y" * 16},
                         "shop_id"),
                        ({"platform": "youzan", "shop_id": "123"}, "client_id"),
                        ({"platform": "lazada", "shop_id": "123"}, "platform"),
                        ({"platform": "taobao", "shop_id": "123", "app_key": "12345678"}, "app_secret")):
        found = await problem(await chain.admin("POST", "/v1/channels", body), 422, "validation_error")
        assert field in str(found["errors"])
    member = await chain.new_member("13700000081")
    await send(chain, youzan.paid("P1", "20.00", phone="13700000081", pay_time=beijing(clock)))
    [event] = await inbox(chain, youzan)
    replayed = await chain.admin("POST", f"/v1/channels/{youzan.channel_id}/inbox/{event['event_id']}/replay")
    assert replayed.status == 200, await replayed.text()
    assert (await replayed.json())["status"] == "applied" and (await replayed.json())["attempts"] == 2
    assert (await balances(chain, member["id"]))["pending_points"] == 20  # applied twice, earned once
    await problem(await chain.admin("POST", f"/v1/channels/{youzan.channel_id}/inbox/nope/replay"), 404, "not_found")


async def test_an_order_of_a_frozen_member_fails_and_the_worker_applies_it_once_unfrozen(chain, youzan, clock):
    from gateway.services import SERVICES
    from gateway.worker import Schedule

    member = await chain.new_member("13700000091")
    assert (await chain.admin("POST", f"/v1/members/{member['id']}/freeze", {"reason": "check"})).status == 200
    await send(chain, youzan.paid("Z1", "70.00", phone="13700000091", pay_time=beijing(clock)))
    [failed] = await inbox(chain, youzan, "failed")
    assert "member_frozen" in failed["reason"] and failed["next_attempt_at"] is not None
    assert (await balances(chain, member["id"]))["pending_points"] == 0
    assert (await chain.admin("POST", f"/v1/members/{member['id']}/unfreeze", {})).status == 200
    services = chain.client.server.app[SERVICES]
    schedule = Schedule(clock, vault=services.vault)
    clock.advance(minutes=5)
    await schedule.run_due()
    assert (await balances(chain, member["id"]))["pending_points"] == 70
    assert [e["status"] for e in await inbox(chain, youzan)] == ["applied"]


async def test_a_member_on_a_discount_tier_earns_on_what_they_paid_and_postage_earns_nothing(chain, clock):
    discounted = program(campaigns=[])
    discounted["tiers"]["levels"][0]["discount_percent"] = 5  # everyone's tier takes 5 % off at the till
    await chain.set_program(discounted)
    shop = await connected(chain, new_shop())
    member = await chain.new_member("13700000101")
    # 100 yuan of goods and 10 of postage: Youzan priced it; the 5 % is the till's, not taken again
    await send(chain, shop.paid("D1", "110.00", phone="13700000101", pay_time=beijing(clock),
                                items=[("TEA", 1, "100.00")]))
    [event] = await inbox(chain, shop)
    assert event["status"] == "applied", event
    assert (await balances(chain, member["id"]))["pending_points"] == 100
    # Youzan refunds all 110 (postage too): what the order earned goes back, nothing more
    await send(chain, shop.refund("D1", "RF-D1", "110.00"))
    assert (await balances(chain, member["id"]))["pending_points"] == 0
    assert [e["status"] for e in await inbox(chain, shop)] == ["applied", "applied"]
    # an order said to be from years ago earns as of a month ago at the oldest, pending from now
    await send(chain, shop.paid("D2", "20.00", phone="13700000101", pay_time="2020-01-01 10:00:00"))
    stored = await Order.get(chain_id=chain.chain_id, txn_id="D2")
    assert clock.now() - timedelta(days=31) < stored.occurred_at <= clock.now()
    assert (await balances(chain, member["id"]))["pending_points"] == 20


async def test_pushes_that_cannot_be_read_are_400_or_401_never_500(chain, youzan, clock):
    def paid_with(**full) -> tuple[dict, bytes]:
        msg = {"full_order_info": {"order_info": {"tid": "BAD1", "pay_time": beijing(clock)},
                                   "buyer_info": {"buyer_phone": "13700000111"},
                                   "pay_info": {"payment": "10.00"},
                                   "orders": [{"outer_item_id": "A", "num": 1, "payment": "10.00"}], **full}}
        return youzan.push("trade_TradeBuyerPay", "BAD1", msg)

    statuses = []
    for pushed in (paid_with(pay_info={"payment": "NaN"}), paid_with(pay_info={"payment": "1.005"}),
                   paid_with(orders=[{"outer_item_id": "A", "num": "abc", "payment": "10.00"}]),
                   paid_with(order_info={"tid": "BAD\u00001"}),
                   # readable enough: no order sections means the push's id and one line of what was paid
                   paid_with(order_info=["not", "a", "dict"]), paid_with(orders=5)):
        statuses.append((await chain.client.post("/v1/hooks/youzan", data=pushed[1], headers=pushed[0])).status)
    assert statuses == [400, 400, 400, 400, 200, 200]
    # the two readable pushes (two msg_ids of one order) wait for a member with that phone
    assert [(e["order_id"], e["status"], e["reason"]) for e in await inbox(chain, youzan)] == [
        ("BAD1", "waiting", "no_member")] * 2

    headers, body = youzan.paid("BAD2", "1.00")
    huge = body.replace(f'"kdt_id":{youzan.kdt_id}'.encode(), b'"kdt_id":' + b"9" * 5000)
    assert (await chain.client.post("/v1/hooks/youzan", data=huge, headers=headers)).status == 400
    await problem(await chain.client.post("/v1/hooks/youzan", data=body, headers={**headers, "Event-Sign": "é"}),
                  401, "invalid_signature")
    assert not await Order.filter(chain_id=chain.chain_id, txn_id="BAD1").exists()
    found = await problem(await chain.admin("POST", "/v1/channels", {"shop_id": "1"}), 422, "validation_error")
    assert [e["field"] for e in found["errors"]] == ["platform"]
