"""Eleme retail orders as a chain lives them: a pushed order is completed from Eleme's open API and
earns pending points for the member with the order's phone, its completion vests them, partial
refunds and cancellations claw back, whatever order and however often Eleme sends (with new
tickets); a forged push is refused and kept nowhere; when the open API fails the worker tries again;
an anonymous buyer earns once they bind their Eleme account; chains stay apart."""
from __future__ import annotations

import secrets
from functools import partial
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest

from adapters.marketplaces.eleme import sign
from loyalty_core.models import InboxEvent, Order

from ..fakes.eleme import FORM, ElemeShop, FakeEleme
from ..helpers import make_chain, problem
from .shops import PLAIN, balances, connected, holder_of, inbox, pointed_at, push, served

send = partial(push, "/v1/hooks/eleme")



@pytest.fixture
async def fake_eleme(aiohttp_server) -> FakeEleme:
    return await served(aiohttp_server, FakeEleme())


@pytest.fixture
def settings(settings, fake_eleme):
    return pointed_at(settings, "eleme", fake_eleme)


def new_shop() -> ElemeShop:
    return ElemeShop(str(secrets.randbelow(10**8) + 10**7), secrets.token_hex(16))


async def connect(kit, fake: FakeEleme, shop: ElemeShop | None = None) -> ElemeShop:
    shop = await connected(kit, shop or new_shop())
    fake.add_shop(shop)
    return shop


@pytest.fixture
async def eleme(chain, fake_eleme) -> ElemeShop:
    await chain.set_program(PLAIN)
    return await connect(chain, fake_eleme)


def assert_signed_answer(answer: dict, shop: ElemeShop, pushed: tuple[dict, bytes]) -> None:
    """The answer is the resp envelope, signed with the source's secret, as Eleme checks it."""
    push = dict(parse_qsl(pushed[1].decode()))
    assert answer["body"] == {"errno": 0, "error": "success", "data": ""}
    assert (answer["cmd"], answer["source"], answer["ticket"], answer["version"], answer["encrypt"]) == (
        f"resp.{push['cmd']}", shop.source, push["ticket"], "3", "")
    fields = {**answer, "body": orjson.dumps(answer["body"]).decode(), "timestamp": str(answer["timestamp"])}
    assert answer["sign"] == sign(fields, shop.secret)
    assert answer["sign"] != sign(fields, "another-secret")


async def held(kit, member_id: int) -> tuple[int, int]:
    found = await balances(kit, member_id)
    return found["points"], found["pending_points"]


async def test_a_created_order_earns_pending_points_and_its_completion_vests_them(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000001")
    other = await chain.new_member("13700000002")
    fake_eleme.add_order("3001", 18800, phone="13700000001", user_id="u-1",
                         products=[("TEA", 2, 10000), ("CUP", 1, 8800)])
    fake_eleme.add_order("3002", 3050, phone="13700000002", user_id="u-2")
    pushed = eleme.created("3001")
    assert_signed_answer(await send(chain, pushed), eleme, pushed)
    await send(chain, eleme.created("3002"))
    assert await held(chain, member["id"]) == (0, 188)
    assert await held(chain, other["id"]) == (0, 30)
    stored = await Order.get(chain_id=chain.chain_id, txn_id="3001")
    assert stored.source == f"eleme:{eleme.source}" and stored.payable == 18800

    completed = eleme.completed("3001")
    assert_signed_answer(await send(chain, completed), eleme, completed)
    assert await held(chain, member["id"]) == (188, 0)
    assert await held(chain, other["id"]) == (0, 30)  # 3002 not completed yet
    assert {(e["kind"], e["order_id"], e["status"]) for e in await inbox(chain, eleme)} == {
        ("paid", "3001", "applied"), ("paid", "3002", "applied"), ("confirmed", "3001", "applied")}
    assert fake_eleme.called("order.get") == 2


async def test_a_wrong_sign_is_refused_and_nothing_is_kept(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000011")
    fake_eleme.add_order("7771001", 50000, phone="13700000011")
    forged = eleme.created("7771001", secret="not-the-secret-at-all")
    await problem(await chain.client.post("/v1/hooks/eleme", data=forged[1], headers=forged[0]), 401,
                  "invalid_signature")
    headers, body = eleme.created("7771001")
    changed = body.replace(b"7771001", b"7771002")
    await problem(await chain.client.post("/v1/hooks/eleme", data=changed, headers=headers), 401, "invalid_signature")
    fields = dict(parse_qsl(body.decode()))
    for wrong in ("é", "", fields["sign"].lower()[:-1]):
        tampered = urlencode({**fields, "sign": wrong}).encode()
        await problem(await chain.client.post("/v1/hooks/eleme", data=tampered, headers=FORM), 401,
                      "invalid_signature")
    unknown = new_shop().created("7771001")
    await problem(await chain.client.post("/v1/hooks/eleme", data=unknown[1], headers=unknown[0]), 404, "not_found")
    assert await InboxEvent.filter(chain_id=chain.chain_id).count() == 0
    assert not await Order.filter(chain_id=chain.chain_id).exists()
    assert fake_eleme.calls == []
    assert await held(chain, member["id"]) == (0, 0)


async def test_the_same_push_five_times_has_one_effect(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000021")
    fake_eleme.add_order("5001", 9990, phone="13700000021", user_id="u-21")
    created, completed = eleme.created("5001"), eleme.completed("5001")
    # the very same bytes three times, then twice as Eleme resends: the same message, a new ticket
    for pushed in (created, created, created, eleme.created("5001"), eleme.created("5001")):
        assert_signed_answer(await send(chain, pushed), eleme, pushed)
    for pushed in (completed, completed, completed, eleme.completed("5001"), eleme.completed("5001")):
        assert_signed_answer(await send(chain, pushed), eleme, pushed)
    assert await Order.filter(chain_id=chain.chain_id, txn_id="5001").count() == 1
    assert await held(chain, member["id"]) == (99, 0)
    assert [(e["kind"], e["attempts"]) for e in await inbox(chain, eleme)] == [("paid", 1), ("confirmed", 1)]
    assert fake_eleme.called("order.get", "5001") == 1


async def test_a_partial_refund_before_its_order_waits_and_ends_in_the_right_balance(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000031")
    fake_eleme.add_order("6001", 10000, phone="13700000031", user_id="u-31")
    await send(chain, eleme.part_refund("6001", "RF-1", 4000))
    await send(chain, eleme.completed("6001"))
    waiting = await inbox(chain, eleme, "waiting")
    assert [(e["kind"], e["reason"]) for e in waiting] == [("refunded", "no_payment"), ("confirmed", "no_payment")]
    assert await held(chain, member["id"]) == (0, 0)

    await send(chain, eleme.created("6001"))
    # paid 100 yuan (100 points), 40 refunded (40 taken back), then completed: 60 available
    assert await held(chain, member["id"]) == (60, 0)
    assert await inbox(chain, eleme, "waiting") == []
    await send(chain, eleme.part_refund("6001", "RF-1", 4000))      # Eleme's resend, a new ticket
    await send(chain, eleme.part_refund("6001", "RF-2", 6000, status=10))  # only applied for
    await send(chain, eleme.part_refund("6001", "RF-3", 1000, status=50))  # refused by the shop
    assert await held(chain, member["id"]) == (60, 0)
    await send(chain, eleme.part_refund("6001", "RF-2", 6000))      # now agreed: the rest
    assert await held(chain, member["id"]) == (0, 0)


async def test_a_cancellation_refunds_what_is_left_and_one_never_paid_is_closed(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000041")
    fake_eleme.add_order("8001", 10000, phone="13700000041", user_id="u-41")
    await send(chain, eleme.created("8001"))
    await send(chain, eleme.part_refund("8001", "RF-8", 3000))
    assert await held(chain, member["id"]) == (0, 70)
    await send(chain, eleme.cancelled("8001"))          # Eleme gives back all it took: the 70 left go
    assert await held(chain, member["id"]) == (0, 0)
    await send(chain, eleme.user_cancel("8001", 60))    # the shop agreed the user's cancellation: the same refund
    await send(chain, eleme.user_cancel("8001", 10))    # a request only
    reverse = {"order_id": "8001", "refund_order_id": "RO-8", "platform_shop_id": "5",
               "cur_reverse_event": {"refund_status": 50, "last_refund_status": 10, "operator_role": 20}}
    for _ in range(2):  # the newer message: kept once, nothing more to do
        await send(chain, eleme.push("order.reverse.push", reverse))
    assert await held(chain, member["id"]) == (0, 0)

    fake_eleme.add_order("8002", 5000, phone="13700000041", pay_status=1)  # never paid
    await send(chain, eleme.cancelled("8002"))
    closed = [e for e in await inbox(chain, eleme) if e["order_id"] == "8002"]
    assert [(e["status"], e["reason"]) for e in closed] == [("applied", "nothing to do")]
    assert not await Order.filter(chain_id=chain.chain_id, txn_id="8002").exists()
    assert await held(chain, member["id"]) == (0, 0)
    assert {(e["order_id"], e["status"]) for e in await inbox(chain, eleme)} == {
        ("8001", "applied"), ("8002", "applied")}
    assert len([e for e in await inbox(chain, eleme) if e["kind"] == "other"]) == 2  # user.cancel 10, reverse


async def test_the_open_api_failing_then_recovering_earns_once(chain, eleme, fake_eleme, clock):
    from gateway.services import SERVICES
    from gateway.worker import Schedule

    member = await chain.new_member("13700000051")
    fake_eleme.add_order("9001", 7000, phone="13700000051", user_id="u-51")
    fake_eleme.add_order("9002", 3000, phone="13700000051", user_id="u-51")
    fake_eleme.fail(1, "errno")
    fake_eleme.fail(1, "http")
    await send(chain, eleme.created("9001"))
    await send(chain, eleme.created("9002"))
    failed = await inbox(chain, eleme, "failed")
    assert [e["order_id"] for e in failed] == ["9001", "9002"]
    assert all("platform_error" in e["reason"] and e["next_attempt_at"] for e in failed)
    assert await held(chain, member["id"]) == (0, 0)

    services = chain.client.server.app[SERVICES]
    schedule = Schedule(clock, vault=services.vault, details=services.marketplaces)
    clock.advance(minutes=5)
    await schedule.run_due()
    assert await held(chain, member["id"]) == (0, 100)
    assert [e["status"] for e in await inbox(chain, eleme)] == ["applied", "applied"]
    clock.advance(minutes=5)
    await schedule.run_due()
    await send(chain, eleme.created("9001"))  # a late resend changes nothing
    assert await held(chain, member["id"]) == (0, 100)
    assert fake_eleme.called("order.get", "9001") == 2 and fake_eleme.called("order.get", "9002") == 2


async def test_an_anonymous_buyer_earns_once_they_bind_their_eleme_account(chain, eleme, fake_eleme, fake_wechat):
    from ..wechat.conftest import connect as connect_app

    # the privacy number (隐私小号) of an anonymous order looks like a mobile: it names nobody
    stranger = await chain.new_member("17012345678")
    fake_eleme.add_order("4001", 12000, phone="17012345678", is_private=1, user_id="130395477")
    await send(chain, eleme.created("4001"))
    await send(chain, eleme.completed("4001"))
    assert await inbox(chain, eleme, "waiting") == []
    assert await held(chain, stranger["id"]) == (0, 0)
    holder = await holder_of(chain, "eleme", "130395477")  # the points wait on the account's holder
    assert holder["unclaimed"] and await held(chain, holder["id"]) == (120, 0)

    app = await connect_app(chain, fake_wechat)
    token, member = await app.member("13700000061")
    bound = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "eleme", "buyer_id": "130395477"})
    assert bound.status == 201, await bound.text()
    assert (await app.me(token))["balances"]["points"] == 120
    assert await inbox(chain, eleme, "waiting") == []
    # later orders of the bound buyer earn at once
    fake_eleme.add_order("4002", 1000, phone="13800000000,1234", user_id="130395477")
    await send(chain, eleme.created("4002"))
    assert (await app.me(token))["balances"]["pending_points"] == 10
    assert await held(chain, stranger["id"]) == (0, 0)


async def test_pushes_that_cannot_be_read_are_400_never_500_and_chains_stay_apart(chain, client, clock, eleme,
                                                                                   fake_eleme):
    member = await chain.new_member("13700000071")
    fake_eleme.add_order("1001", 5000, phone="13700000071")
    good_headers, good = eleme.created("1001")
    fields = dict(parse_qsl(good.decode()))
    unreadable = [
        b"\xff\xfe\x00not a form", urlencode({k: v for k, v in fields.items() if k != "cmd"}).encode(),
        good + b"&cmd=order.create", urlencode({**fields, "source": "9" * 5000}).encode(),
        eleme.push("order.create", "not json")[1], eleme.push("order.create", "[1, 2]")[1],
        eleme.push("order.create", {"order_id": "BAD\u00001"})[1], eleme.push("order.create", {"order_id": "9" * 500})[1],
        eleme.push("order.create", {"platform_shop_id": "5"})[1], eleme.status("1001", "abc")[1],
        eleme.part_refund("1001", "RF-X", "12.5")[1], eleme.part_refund("1001", "RF-X", 1.5)[1],
        eleme.part_refund("1001", "RF-X", -100)[1], eleme.part_refund("1001", "", 100)[1]]
    statuses = [(await chain.client.post("/v1/hooks/eleme", data=body, headers=FORM)).status for body in unreadable]
    assert statuses == [400] * len(unreadable)
    await problem(await chain.client.post("/v1/hooks/eleme", data=unreadable[4], headers=FORM), 400, "bad_request")
    # a command the ledger does not follow is taken and kept, with nothing to do
    assert_signed_answer(await send(chain, pushed := eleme.push("shop.msg.push", {"msg_type": "shop_open"})),
                         eleme, pushed)
    assert [(e["kind"], e["status"]) for e in await inbox(chain, eleme)] == [("other", "applied")]
    assert not await Order.filter(chain_id=chain.chain_id).exists()

    other = await make_chain(client, clock, "Other Chain")
    await other.set_program(PLAIN)
    there = await other.new_member("13700000071")  # the same phone in another chain
    await problem(await other.admin("POST", "/v1/channels", eleme.connection()), 409, "already_exists")
    await send(chain, (good_headers, good))
    assert await held(chain, member["id"]) == (0, 50)
    assert await held(other, there["id"]) == (0, 0)
    await problem(await other.admin("GET", f"/v1/channels/{eleme.channel_id}/inbox"), 404, "not_found")
    listed = (await (await chain.admin("GET", "/v1/channels")).json())["items"]
    assert [(c["platform"], c["shop_id"], c["secrets_set"]) for c in listed] == [("eleme", eleme.source, ["secret"])]
    assert eleme.secret not in str(listed)


async def test_an_order_sent_to_a_friends_phone_binds_nothing(chain, eleme, fake_eleme, fake_wechat):
    """Eleme's user.phone is who the order goes to: it earns for that member, but does not make the
    buyer's Eleme account theirs; the buyer binds their own account later."""
    from ..wechat.conftest import connect as connect_app

    friend = await chain.new_member("13700000201")
    fake_eleme.add_order("5001", 20000, phone="13700000201", user_id="u-9")
    await send(chain, eleme.created("5001"))
    assert await held(chain, friend["id"]) == (0, 200)
    fake_eleme.add_order("5002", 3000, phone="13800000000,5678", user_id="u-9", is_private=1)
    await send(chain, eleme.created("5002"))
    assert await held(chain, friend["id"]) == (0, 200)  # the anonymous order is not the friend's
    assert await held(chain, (await holder_of(chain, "eleme", "u-9"))["id"]) == (0, 30)  # but the account's

    app = await connect_app(chain, fake_wechat)
    token, buyer = await app.member("13700000202")
    bound = await app.call("POST", "/v1/mp/me/bindings", token, {"platform": "eleme", "buyer_id": "u-9"})
    assert bound.status == 201, await bound.text()
    assert await held(chain, buyer["id"]) == (0, 30)


async def test_an_unpaid_order_earns_nothing(chain, eleme, fake_eleme):
    member = await chain.new_member("13700000211")
    fake_eleme.add_order("5101", 9900, phone="13700000211", pay_status=1)
    await send(chain, eleme.created("5101"))
    assert await held(chain, member["id"]) == (0, 0)
    [event] = await inbox(chain, eleme)
    assert (event["status"], event["reason"]) == ("applied", "nothing to do")
