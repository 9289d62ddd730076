"""Subscribe messages as members get them: told of points earned at the till, a coupon received in the
mall and points about to expire, once per event whatever the outbox resends, only as often as each
member allowed, never to a member who refused; WeChat's refusals and failures handled; bad
template settings refused at connection; several members and two chains."""
from __future__ import annotations

import uuid
from datetime import timedelta
from zoneinfo import ZoneInfo

from adapters.wechat.client import WeChat
from adapters.wechat.messages import SubscribeMessages
from gateway.app import SERVICES
from loyalty_core.messages import render
from loyalty_core.models import MessageSend, OutboxEvent, PointsLot

from ..e2e.programs import line, order, program
from ..fakes.wechat import card_event
from ..helpers import make_chain, problem
from .conftest import connect
from .test_wechat_push import TOKEN, push, relay

SEND = "/cgi-bin/message/subscribe/send"
TEMPLATES = {
    "points_earned": {"template_id": "TPL_EARNED", "page": "pages/points/index",
                      "data": {"number1": "{points}", "thing2": "{reason}", "number3": "{balance}", "time4": "{time}"}},
    "coupon_received": {"template_id": "TPL_COUPON", "data": {"thing1": "{coupon}", "time2": "{valid_to}"}},
    "points_expiring": {"template_id": "TPL_EXPIRY",
                        "data": {"number1": "{points}", "date2": "{expires_on}", "thing3": "积分即将过期"}},
}
SHANGHAI = ZoneInfo("Asia/Shanghai")
PLAIN = program(campaigns=[])  # no campaign days: the points are the yuan paid


def popup(openid: str, **choices: str) -> str:
    """The XML WeChat pushes after a subscribe popup (subscribe_msg_popup_event)."""
    items = "".join(f"<List><TemplateId><![CDATA[{t}]]></TemplateId><SubscribeStatusString><![CDATA[{c}]]>"
                    f"</SubscribeStatusString><PopupScene>0</PopupScene></List>" for t, c in choices.items())
    return card_event("subscribe_msg_popup_event", openid, "", "").replace(
        "<CardId><![CDATA[]]></CardId><UserCardCode><![CDATA[]]></UserCardCode>",
        f"<SubscribeMsgPopupEvent>{items}</SubscribeMsgPopupEvent>")


async def shop_with_templates(kit, fake, **more):
    return await connect(kit, fake, token=TOKEN, subscribe_templates=TEMPLATES, **more)


async def accept(shop, openid: str, template_id: str = "TPL_EARNED", times: int = 1) -> None:
    """The user taps accept ``times`` times: WeChat allows that many, and pushes each popup."""
    for _ in range(times):
        shop.fake.subscribe(shop.app_id, openid, template_id)
        pushed = await push(shop, popup(openid, **{template_id: "accept"}))
        assert pushed.status == 200 and await pushed.text() == "success"


async def buy(kit, clock, txn: str, member_id: int, fen: int) -> dict:
    return await kit.sale(order(txn, [line("BEANS", "coffee", fen)], member_id=member_id, at=clock.now().isoformat()))


def sent_to(fake, openid: str) -> list[dict]:
    return [message for message in fake.messages if message["touser"] == openid]


async def test_points_earned_at_the_till_are_told_once_to_who_accepted_and_never_to_who_refused(
        chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    token_a, a = await shop.member("13500000001", openid="o_a")
    token_b, b = await shop.member("13500000002", openid="o_b")
    await accept(shop, "o_a")
    await problem(await shop.call("POST", "/v1/mp/me/subscriptions", token_b, {"results": {"TPL_EARNED": "yes"}}),
                  422, "validation_error")
    reported = await shop.call("POST", "/v1/mp/me/subscriptions", token_b, {"results": {
        "errMsg": "requestSubscribeMessage:ok", "TPL_EARNED": "reject", "TPL_SOMEONE_ELSES": "accept"}})
    assert reported.status == 200, await reported.text()
    assert {i["template_id"] for i in (await reported.json())["items"]} == {"TPL_EARNED", "TPL_COUPON", "TPL_EXPIRY"}
    await buy(chain, clock, "M1", a["id"], 18800)
    await buy(chain, clock, "M2", b["id"], 5000)
    worker = relay(chain)
    await worker.run_once()

    [told] = sent_to(fake_wechat, "o_a")
    assert told["template_id"] == "TPL_EARNED" and told["page"] == "pages/points/index"
    assert told["miniprogram_state"] == "formal"
    assert {k: v["value"] for k, v in told["data"].items() if k != "time4"} == {
        "number1": "188", "thing2": "消费积分", "number3": "188"}
    assert told["data"]["time4"]["value"] == clock.now().astimezone(SHANGHAI).strftime("%Y年%m月%d日 %H:%M")
    assert sent_to(fake_wechat, "o_b") == []

    resent = await OutboxEvent.filter(chain_id=chain.chain_id, topic="balance.changed").order_by("id").all()
    for event in resent:  # the outbox delivers again (a worker died before marking): nothing is sent twice
        await worker.deliver(event)
    assert len(fake_wechat.messages) == 1 and fake_wechat.calls[SEND] == 1
    mine = {item["kind"]: item for item in (await (await shop.call("GET", "/v1/mp/me/subscriptions", token_a)).json())["items"]}
    assert mine["points_earned"] == {"kind": "points_earned", "template_id": "TPL_EARNED", "status": "accept",
                                     "remaining": 0}
    assert mine["coupon_received"]["status"] is None and set(mine) == set(TEMPLATES)
    not_joined = (await shop.login(openid="o_new"))["token"]  # the popup may come before joining
    fresh = await shop.call("GET", "/v1/mp/me/subscriptions", not_joined)
    assert fresh.status == 200 and {i["remaining"] for i in (await fresh.json())["items"]} == {0}
    theirs = (await (await shop.call("GET", "/v1/mp/me/subscriptions", token_b)).json())["items"]
    assert [i for i in theirs if i["kind"] == "points_earned"][0]["status"] == "reject"


async def test_each_accept_allows_one_message_and_a_third_sale_goes_untold(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    _, member = await shop.member("13500000011", openid="o_twice")
    await accept(shop, "o_twice", times=2)
    worker = relay(chain)
    for n, fen in enumerate((1000, 2000, 3000)):
        await buy(chain, clock, f"T{n}", member["id"], fen)
        await worker.run_once()
    told = sent_to(fake_wechat, "o_twice")
    assert [m["data"]["number1"]["value"] for m in told] == ["10", "20"]
    assert [m["data"]["number3"]["value"] for m in told] == ["10", "30"]  # the balance after each sale
    assert fake_wechat.calls[SEND] == 2  # the third was not even tried: no consent left
    statuses = sorted(await MessageSend.filter(chain_id=chain.chain_id).values_list("status", flat=True))
    assert statuses == ["no_consent", "sent", "sent"]


async def test_a_template_switched_off_in_settings_stops_messages(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    _, member = await shop.member("13500000021", openid="o_off")
    await accept(shop, "o_off", times=3)
    changed = popup("o_off", TPL_EARNED="reject").replace("subscribe_msg_popup_event", "subscribe_msg_change_event") \
        .replace("SubscribeMsgPopupEvent>", "SubscribeMsgChangeEvent>")
    assert (await push(shop, changed)).status == 200
    await buy(chain, clock, "OFF1", member["id"], 1000)
    await relay(chain).run_once()
    assert fake_wechat.messages == [] and fake_wechat.calls[SEND] == 0


async def test_wechat_refusing_leaves_no_consent_and_a_failure_is_sent_on_the_retry(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    token, refusing = await shop.member("13500000031", openid="o_refusing")
    _, failing = await shop.member("13500000032", openid="o_failing")
    # the mini-program reports an accept that WeChat does not know of: WeChat answers 43101
    await shop.call("POST", "/v1/mp/me/subscriptions", token, {"results": {"TPL_EARNED": "accept"}})
    await accept(shop, "o_failing")
    worker = relay(chain)
    await worker.run_once()  # the joins' events first
    await buy(chain, clock, "R1", refusing["id"], 1000)
    await worker.run_once()
    assert fake_wechat.messages == []
    mine = (await (await shop.call("GET", "/v1/mp/me/subscriptions", token)).json())["items"]
    assert [i["remaining"] for i in mine if i["kind"] == "points_earned"] == [0]
    assert await MessageSend.filter(chain_id=chain.chain_id, status="refused").count() == 1

    fake_wechat.fail(SEND, 45009)  # WeChat's daily quota: not the member's choice, tried again
    await buy(chain, clock, "F1", failing["id"], 4000)
    await worker.run_once()
    event = await OutboxEvent.filter(chain_id=chain.chain_id, topic="balance.changed").order_by("-id").first()
    assert event.status == "pending" and event.attempts == 1 and "45009" in event.last_error
    assert sent_to(fake_wechat, "o_failing") == []
    await worker.deliver(event)
    [told] = sent_to(fake_wechat, "o_failing")
    assert told["data"]["number1"]["value"] == "40"
    await worker.deliver(event)  # and once more: sent already
    assert len(sent_to(fake_wechat, "o_failing")) == 1


async def test_no_answer_after_wechat_may_have_sent_is_never_sent_again(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    _, member = await shop.member("13500000035", openid="o_timeout")
    await accept(shop, "o_timeout", times=2)
    await relay(chain).run_once()
    services = chain.client.server.app[SERVICES]
    impatient = WeChat(fake_wechat.base_url, services.cache, timeout=0.3)
    handler = SubscribeMessages(impatient, services.vault, services.clock)
    try:
        await buy(chain, clock, "TO1", member["id"], 1000)
        event = await OutboxEvent.filter(chain_id=chain.chain_id, topic="balance.changed").order_by("-id").first()
        fake_wechat.send_delay = 1.0  # WeChat sends it, and answers too late
        await handler(event)
        fake_wechat.send_delay = 0.0
        await handler(event)  # the outbox delivers the event again: WeChat may have sent it, so nothing
    finally:
        impatient.close()
    assert len(sent_to(fake_wechat, "o_timeout")) == 1
    assert await MessageSend.filter(chain_id=chain.chain_id, status="unknown").count() == 1


async def test_a_refund_that_gives_redeemed_points_back_is_no_points_earned(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    _, member = await shop.member("13500000036", openid="o_refund")
    await chain.admin("POST", f"/v1/members/{member['id']}/adjustments",
                      {"account": "points", "amount": 500, "reason": "gift"}, idempotency_key=uuid.uuid4().hex)
    sale = await chain.sale(order("RF1", [line("BEANS", "coffee", 10000)], 9800, member_id=member["id"],
                                  redeem_points=200, at=clock.now().isoformat()))
    assert sale["points_redeemed"] == 200 and sale["points_earned"] == 98
    await relay(chain).run_once()
    await accept(shop, "o_refund", times=3)
    refunded = await chain.pos("POST", "/v1/pos/orders/RF1/refunds", {"refund_id": "RF1-R", "amount": 9800})
    assert refunded.status == 201, await refunded.text()
    assert (await chain.member(member["id"]))["balances"]["points"] == 500  # +200 back, -98 taken
    await relay(chain).run_once()
    assert fake_wechat.messages == []


async def test_a_coupon_from_the_mall_is_told_with_its_name_cut_to_what_wechat_takes(chain, fake_wechat, clock):
    await chain.set_program(PLAIN)
    shop = await shop_with_templates(chain, fake_wechat)
    token, member = await shop.member("13500000041", openid="o_coupon")
    await chain.admin("POST", f"/v1/members/{member['id']}/adjustments",
                      {"account": "points", "amount": 500, "reason": "gift"}, idempotency_key=uuid.uuid4().hex)
    name = "双十二全场满一百元减二十元优惠券限时领取专享"  # 22 characters: a thing keyword holds 20
    template = await (await chain.admin("POST", "/v1/coupon-templates", {
        "name": name, "kind": "cash", "amount_off": 2000, "min_spend": 10000, "valid_days": 30})).json()
    reward = await (await chain.admin("POST", "/v1/rewards", {
        "name": "voucher", "points": 200, "template_id": template["id"]})).json()
    await accept(shop, "o_coupon", "TPL_COUPON")
    redeemed = await shop.call("POST", f"/v1/mp/rewards/{reward['id']}/redeem", token, idempotency_key=uuid.uuid4().hex)
    assert redeemed.status == 201, await redeemed.text()
    await relay(chain).run_once()
    [told] = sent_to(fake_wechat, "o_coupon")
    assert told["template_id"] == "TPL_COUPON" and told["data"]["thing1"]["value"] == name[:20]
    valid_to = (clock.now() + timedelta(days=30)).astimezone(SHANGHAI)
    assert told["data"]["time2"]["value"] == valid_to.strftime("%Y年%m月%d日 %H:%M")
    assert "page" not in told


async def test_points_about_to_expire_are_warned_of_once_per_lot_in_each_chain(chain, client, fake_wechat, clock):
    other = await make_chain(client, clock, "Other Chain", store="S01", terminal="POS1")
    expiring = program(campaigns=[], expiry={"mode": "rolling_months", "months": 1, "warn_days": 7})
    shops = []
    for kit in (chain, other):
        await kit.set_program(expiring)
        shops.append(await shop_with_templates(kit, fake_wechat))
    _, soon = await shops[0].member("13500000051", openid="o_soon")
    _, elsewhere = await shops[1].member("13500000051", openid="o_elsewhere")
    await buy(chain, clock, "E1", soon["id"], 3000)
    await buy(chain, clock, "E2", soon["id"], 2000)
    await buy(other, clock, "E1", elsewhere["id"], 7000)
    clock.advance(days=10)
    _, later = await shops[0].member("13500000052", openid="o_later")
    await buy(chain, clock, "E3", later["id"], 9000)  # expires a month after this: beyond the warning
    for openid, shop in (("o_soon", shops[0]), ("o_later", shops[0]), ("o_elsewhere", shops[1])):
        await accept(shop, openid, "TPL_EXPIRY")

    # three days before E1's and E2's lots expire (the end of their last local day, a month on)
    expires_at = (await PointsLot.filter(chain_id=chain.chain_id, member_id=soon["id"]).first()).expires_at
    clock.at = expires_at - timedelta(days=3)
    job = await (await chain.admin("POST", "/v1/jobs/warn_expiring_points")).json()
    assert (job["processed"], job["points"]) == (1, 50)
    again = await (await chain.admin("POST", "/v1/jobs/warn_expiring_points")).json()
    assert (again["processed"], again["points"]) == (0, 0)
    await relay(chain).run_once()
    [warned] = sent_to(fake_wechat, "o_soon")
    assert warned["data"]["number1"]["value"] == "50" and warned["data"]["thing3"]["value"] == "积分即将过期"
    last_day = (expires_at.astimezone(SHANGHAI) - timedelta(microseconds=1)).strftime("%Y年%m月%d日")
    assert warned["data"]["date2"]["value"] == last_day
    assert sent_to(fake_wechat, "o_later") == [] and sent_to(fake_wechat, "o_elsewhere") == []

    # the other chain warns its own member when its own job runs, and only then
    job = await (await other.admin("POST", "/v1/jobs/warn_expiring_points")).json()
    assert (job["processed"], job["points"]) == (1, 70)
    await relay(other).run_once()
    assert [m["data"]["number1"]["value"] for m in sent_to(fake_wechat, "o_elsewhere")] == ["70"]
    assert len(fake_wechat.messages) == 2


async def test_templates_that_name_unknown_figures_or_keywords_are_refused_and_nothing_is_kept(chain, fake_wechat):
    shop = await connect(chain, fake_wechat)
    bad_figure = {"points_earned": {"template_id": "T1", "data": {"thing1": "{points} {nope}"}}}
    bad_keyword = {"coupon_received": {"template_id": "T2", "data": {"Thing1": "{coupon}"}}}
    def text(value: str) -> dict:
        return {"points_expiring": {"template_id": "T3", "data": {"thing1": value}}}
    for templates, field in ((bad_figure, "nope"), (bad_keyword, "Thing1"), (text("{points"), "thing1"),
                             (text("{points:d}"), "thing1"), (text("{points!r}"), "thing1"),
                             (text("{points.__class__}"), "thing1"), (text("{points:>999999999}"), "thing1"),
                             (text("{points:{balance}}"), "thing1"), (text("{0}"), "thing1")):
        response = await chain.admin("POST", "/v1/channels", {"platform": "wechat", "app_id": shop.app_id,
                                                              "app_secret": shop.secret, "subscribe_templates": templates})
        body = await problem(response, 422, "validation_error")
        assert field in str(body["errors"])
    listed = (await (await chain.admin("GET", "/v1/channels")).json())["items"]
    assert [c["subscribe_templates"] for c in listed] == [None]
    braces = text("{{VIP}} {points} 积分")
    kept = await chain.admin("POST", "/v1/channels", {"platform": "wechat", "app_id": shop.app_id,
                                                      "app_secret": shop.secret, "subscribe_templates": braces})
    assert kept.status == 200 and (await kept.json())["subscribe_templates"]["points_expiring"]["data"] == {
        "thing1": "{{VIP}} {points} 积分"}
    assert render("{{VIP}} {points} 积分", {"points": "50"}) == "{VIP} 50 积分"
