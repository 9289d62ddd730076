"""WeChat's push to a connected app and the member card it keeps in step, over HTTP: server
verification, plain and safe mode (with wechatpy's own crypto), refused signatures that keep
nothing, and the worker's updateuser calls with the member's totals, resent or not."""
from __future__ import annotations

import copy
import secrets
from urllib.parse import urlencode

import pytest

from gateway.services import SERVICES
from gateway.worker import Relay, channel_routes
from loyalty_core.models import MemberCard, OutboxEvent

from ..e2e.programs import PROGRAM, line, order
from ..fakes.wechat import card_event, signed_push
from ..helpers import problem
from .conftest import connect

TOKEN, AES_KEY = "pushToken42", secrets.token_hex(22)[:43]
CARD = "pFakeMemberCard0000000000001"


@pytest.fixture
async def shop(chain, fake_wechat, clock):
    await chain.set_program({**copy.deepcopy(PROGRAM), "behaviors": {"register": {"points": 100}}})
    return await connect(chain, fake_wechat, token=TOKEN, aes_key=AES_KEY)


def relay(kit) -> Relay:
    services = kit.client.server.app[SERVICES]
    routes, _ = channel_routes(services.settings, services.cache, services.clock)
    return Relay(services.clock, routes)


async def push(shop, xml: str, safe: bool = False, token: str = TOKEN, aes_key: str = AES_KEY, **query):
    sent, body = signed_push(token, xml, aes_key if safe else None, shop.app_id)
    return await shop.kit.client.post(f"/v1/hooks/wechat/{shop.app_id}?{urlencode({**sent, **query})}", data=body)


async def test_server_verification_answers_echostr_for_the_right_token_only(shop):
    sent, _ = signed_push(TOKEN, "")
    ok = await shop.kit.client.get(f"/v1/hooks/wechat/{shop.app_id}?{urlencode({**sent, 'echostr': 'e42'})}")
    assert ok.status == 200 and await ok.text() == "e42"
    wrong, _ = signed_push("notTheToken", "")
    await problem(await shop.kit.client.get(f"/v1/hooks/wechat/{shop.app_id}?{urlencode({**wrong, 'echostr': 'x'})}"),
                  401, "invalid_signature")
    await problem(await shop.kit.client.get(f"/v1/hooks/wechat/wx0000000000000000?{urlencode(sent)}"), 404, "not_found")


async def test_a_card_taken_in_wechat_shows_the_members_totals_after_every_change(shop):
    kit, fake = shop.kit, shop.fake
    token, member = await shop.member("13500000001", openid="o_card_holder")  # 100 welcome points
    answer = await push(shop, card_event("user_get_card", "o_card_holder", CARD, "100200300"))
    assert answer.status == 200 and await answer.text() == "success"
    worker = relay(kit)
    await worker.run_once()
    # the welcome's balance.changed and the card's own sync: both write the totals; 100 added once
    assert {(u["code"], u["bonus"], u["balance"]) for u in fake.card_updates} == {("100200300", 100, 0)}
    assert sum(u["add_bonus"] for u in fake.card_updates) == 100
    await kit.sale(order("C1", [line("BEANS", "coffee", 25000)], member_id=member["id"], at=kit.clock.now().isoformat()))
    await worker.run_once()
    assert fake.card_updates[-1]["bonus"] == 100 + 250 and fake.card_updates[-1]["add_bonus"] == 250
    # the same event delivered again (a worker died before marking it): the same totals, nothing added
    resent = await OutboxEvent.filter(chain_id=kit.chain_id, topic="balance.changed").order_by("-id").first()
    await worker.deliver(resent)
    assert (fake.card_updates[-1]["bonus"], fake.card_updates[-1]["add_bonus"]) == (350, 0)
    assert (await shop.me(token))["balances"]["points"] == 350
    other = await kit.new_member("13500000002")
    await kit.sale(order("C2", [line("BEANS", "coffee", 1000)], member_id=other["id"], at=kit.clock.now().isoformat()))
    before = len(fake.card_updates)
    await worker.run_once()
    assert len(fake.card_updates) == before  # a member without a card: no call
    await push(shop, card_event("user_del_card", "o_card_holder", CARD, "100200300"), safe=True)
    await kit.sale(order("C3", [line("BEANS", "coffee", 1000)], member_id=member["id"], at=kit.clock.now().isoformat()))
    await worker.run_once()
    assert len(fake.card_updates) == before  # deleted: not written any more


async def test_a_card_taken_before_joining_is_the_members_once_they_join(shop):
    await push(shop, card_event("user_get_card", "o_early", CARD, "555000111"), safe=True)
    held = await MemberCard.get(chain_id=shop.kit.chain_id, code="555000111")
    assert held.member_id is None and held.active
    _, member = await shop.member("13500000003", openid="o_early")
    await relay(shop.kit).run_once()
    assert {(u["code"], u["bonus"]) for u in shop.fake.card_updates} == {("555000111", 100)}
    assert sum(u["add_bonus"] for u in shop.fake.card_updates) == 100
    assert (await MemberCard.get(id=held.id)).member_id == member["id"]


async def test_a_card_changed_outside_the_gateway_is_written_with_the_members_totals_again(shop):
    kit, fake = shop.kit, shop.fake
    token, member = await shop.member("13500000004", openid="o_changed")  # 100 welcome points
    await push(shop, card_event("user_get_card", "o_changed", CARD, "300400500"))
    worker = relay(kit)
    await worker.run_once()
    assert (fake.card_updates[-1]["bonus"], sum(u["add_bonus"] for u in fake.card_updates)) == (100, 100)
    writes = len(fake.card_updates)

    # WeChat's push of our own last write (add_bonus of that write, balance unchanged): nothing to do
    ours = await push(shop, card_event("update_member_card", "o_changed", CARD, "300400500",
                                       ModifyBonus=str(fake.card_updates[-1]["add_bonus"]), ModifyBalance="0"))
    assert ours.status == 200 and await ours.text() == "success"
    await worker.run_once()
    assert len(fake.card_updates) == writes

    # someone took 30 off the card in WeChat's console: the card is set back to the member's 100
    await push(shop, card_event("update_member_card", "o_changed", CARD, "300400500",
                                ModifyBonus="-30", ModifyBalance="0"), safe=True)
    await worker.run_once()
    assert len(fake.card_updates) == writes + 1
    assert (fake.card_updates[-1]["code"], fake.card_updates[-1]["bonus"], fake.card_updates[-1]["add_bonus"]) == (
        "300400500", 100, 0)
    # that write's own push (no change) ends it; the member's points never moved
    await push(shop, card_event("update_member_card", "o_changed", CARD, "300400500",
                                ModifyBonus="0", ModifyBalance="0"))
    await worker.run_once()
    assert len(fake.card_updates) == writes + 1
    assert (await shop.me(token))["balances"]["points"] == 100

    # a card WeChat reports that we never saw taken (its user_get_card lost) is kept and written
    await push(shop, card_event("update_member_card", "o_changed", CARD, "300400999", ModifyBonus="5"))
    await worker.run_once()
    assert fake.card_updates[-1]["code"] == "300400999" and fake.card_updates[-1]["bonus"] == 100
    assert (await MemberCard.get(chain_id=kit.chain_id, code="300400999")).member_id == member["id"]

    # a figure that is not a whole number: 400, nothing written
    for bad in ("ten", "--5", "9" * 5000):
        await problem(await push(shop, card_event("update_member_card", "o_changed", CARD, "300400500",
                                                  ModifyBonus=bad)), 400, "bad_request")
    await worker.run_once()
    assert fake.card_updates[-1]["code"] == "300400999"


async def test_a_change_pushed_for_one_card_rewrites_that_card_only(shop, other_chain):
    """Two members of this chain and one of another chain hold cards (the other chain's with the
    same CardId and code, from its own app): a console change on one card is written back on
    that card alone, with that member's totals."""
    kit, fake = shop.kit, shop.fake
    elsewhere = await connect(other_chain, fake, token=TOKEN, aes_key=AES_KEY)
    await other_chain.set_program({**copy.deepcopy(PROGRAM), "behaviors": {"register": {"points": 40}}})
    _, ann = await shop.member("13500000011", openid="o_ann")  # 100 welcome points each here
    _, bo = await shop.member("13500000012", openid="o_bo")
    _, cy = await elsewhere.member("13500000011", openid="o_cy")  # the same phone, another chain: 40
    await kit.sale(order("A1", [line("BEANS", "coffee", 5000)], member_id=bo["id"], at=kit.clock.now().isoformat()))
    for mini, openid, code in ((shop, "o_ann", "700001"), (shop, "o_bo", "700002"), (elsewhere, "o_cy", "700001")):
        await push(mini, card_event("user_get_card", openid, CARD, code))
    await relay(kit).run_once()
    await relay(other_chain).run_once()
    written = len(fake.card_updates)
    assert {(u["code"], u["bonus"]) for u in fake.card_updates} == {("700001", 100), ("700002", 150), ("700001", 40)}

    await push(shop, card_event("update_member_card", "o_bo", CARD, "700002", ModifyBonus="-50"))
    await relay(kit).run_once()
    await relay(other_chain).run_once()
    assert [(u["code"], u["bonus"], u["add_bonus"]) for u in fake.card_updates[written:]] == [("700002", 150, 0)]
    cards = {(c.chain_id, c.code): c.synced_bonus for c in await MemberCard.all()}
    assert cards == {(kit.chain_id, "700001"): 100, (kit.chain_id, "700002"): 150, (other_chain.chain_id, "700001"): 40}
    assert [(await kit.member(m["id"]))["balances"]["points"] for m in (ann, bo)] == [100, 150]
    assert (await other_chain.member(cy["id"]))["balances"]["points"] == 40


async def test_safe_mode_round_trip_and_refused_pushes_keep_nothing(shop, other_chain):
    kit = shop.kit
    xml = card_event("user_get_card", "o_someone", CARD, "777")
    assert (await push(shop, xml, safe=True)).status == 200  # encrypted by wechatpy's crypto, decrypted by ours
    refusals = [
        await push(shop, card_event("user_get_card", "o_x", CARD, "800"), token="notTheToken"),
        await push(shop, card_event("user_get_card", "o_x", CARD, "801"), safe=True, token="notTheToken"),
        await push(shop, card_event("user_get_card", "o_x", CARD, "802"), safe=True, aes_key="b" * 43),
        await push(shop, card_event("user_get_card", "o_x", CARD, "803"), msg_signature="0" * 40, encrypt_type="aes"),
    ]
    for refused in refusals:
        await problem(refused, 401, "invalid_signature")
    plain = await connect(other_chain, shop.fake)  # an app connected without a push token
    sent, body = signed_push(TOKEN, card_event("user_get_card", "o_x", CARD, "804"))
    await problem(await kit.client.post(f"/v1/hooks/wechat/{plain.app_id}?{urlencode(sent)}", data=body),
                  401, "invalid_signature")
    sent, _ = signed_push(TOKEN, "")
    await problem(await kit.client.post(f"/v1/hooks/wechat/{shop.app_id}?{urlencode(sent)}", data=b"not xml <"),
                  400, "bad_request")
    assert [c.code for c in await MemberCard.all()] == ["777"]
    other = await push(shop, "<xml><ToUserName>a</ToUserName><FromUserName>o_y</FromUserName><CreateTime>1"
                             "</CreateTime><MsgType>text</MsgType><Content>hello</Content><MsgId>1</MsgId></xml>")
    assert other.status == 200 and await other.text() == "success"  # other messages: logged, answered
