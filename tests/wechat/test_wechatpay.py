"""Pay-to-earn: WeChat Pay v3 notifications over HTTP, verified and decrypted with wechatpayv3 in
public-key mode: a member's payment earns once however often it is notified; a stale timestamp,
a bad signature, another key or an unknown merchant change nothing."""
from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from loyalty_core.models import Order
from loyalty_core.verify import verify

from ..e2e.programs import PROGRAM
from ..fakes.wechatpay import FakeWeChatPay
from ..helpers import problem
from .conftest import connect


@pytest.fixture
async def paying(chain, fake_wechat, clock):
    await chain.set_program({**copy.deepcopy(PROGRAM), "behaviors": {"register": {"points": 100}}})
    pay = FakeWeChatPay()
    shop = await connect(chain, fake_wechat, **pay.channel_fields())
    return shop, pay


async def notify(shop, pay: FakeWeChatPay, headers: dict, body: bytes, mch_id: str | None = None):
    return await shop.kit.client.post(f"/v1/hooks/wechatpay/{mch_id or pay.mch_id}", data=body, headers=headers)


async def test_a_members_payment_earns_once_however_often_it_is_notified(paying):
    shop, pay = paying
    token, member = await shop.member("13300000001", openid="o_payer")  # 100 welcome points
    headers, body = pay.notification(shop.app_id, "o_payer", 12345, attach="S01", transaction_id="4200000001")
    first = await notify(shop, pay, headers, body)
    assert first.status == 204 and await first.read() == b""
    again = await notify(shop, pay, headers, body)  # WeChat Pay sends it again
    assert again.status == 204
    headers, body = pay.notification(shop.app_id, "o_payer", 12345, attach="S01", transaction_id="4200000001")
    assert (await notify(shop, pay, headers, body)).status == 204  # a fresh signature, the same transaction
    # 12,345 fen = 123.45 yuan: 123 points, once
    assert (await shop.me(token))["balances"]["points"] == 100 + 123
    orders = await Order.filter(chain_id=shop.kit.chain_id, source=f"wechatpay:{pay.mch_id}")
    assert [(o.txn_id, o.payable, o.points_earned) for o in orders] == [("4200000001", 12345, 123)]
    stranger = pay.notification(shop.app_id, "o_not_a_member", 5000, attach="S01")
    assert (await notify(shop, pay, *stranger)).status == 204  # acknowledged: nothing to earn
    closed = pay.notification(shop.app_id, "o_payer", 5000, attach="S01", trade_state="CLOSED")
    assert (await notify(shop, pay, *closed)).status == 204
    unknown_store = pay.notification(shop.app_id, "o_payer", 5000, attach="NOPE")
    await problem(await notify(shop, pay, *unknown_store), 422, "validation_error")  # sent again later
    assert (await shop.me(token))["balances"]["points"] == 223
    assert await verify() == []


async def test_stale_forged_and_misdirected_notifications_change_nothing(paying, clock):
    shop, pay = paying
    token, _ = await shop.member("13300000002", openid="o_payer2")
    stale = pay.notification(shop.app_id, "o_payer2", 10000, attach="S01", timestamp=int(clock.now().timestamp()) - 301)
    await problem(await notify(shop, pay, *stale), 401, "stale_request")
    forged = pay.notification(shop.app_id, "o_payer2", 10000, attach="S01",
                              sign_with=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    await problem(await notify(shop, pay, *forged), 401, "invalid_signature")
    headers, body = pay.notification(shop.app_id, "o_payer2", 10000, attach="S01")
    await problem(await notify(shop, pay, headers, body.replace(b"encrypt-resource", b"encrypt-resourcE")),
                  401, "invalid_signature")  # a body that is not the one signed
    other_key = pay.notification(shop.app_id, "o_payer2", 10000, attach="S01", apiv3_key="0" * 32)
    await problem(await notify(shop, pay, *other_key), 401, "invalid_signature")  # does not decrypt
    await problem(await notify(shop, pay, {**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body),
                  401, "invalid_signature")
    await problem(await notify(shop, pay, headers, body, mch_id="1900000999"), 404, "not_found")
    assert (await shop.me(token))["balances"]["points"] == 100
    assert await Order.filter(chain_id=shop.kit.chain_id).count() == 0


async def test_a_merchant_belongs_to_one_chain(paying, other_chain):
    shop, pay = paying
    listed = (await (await shop.kit.admin("GET", "/v1/channels")).json())["items"]
    assert sorted((c["platform"], c["mch_id"]) for c in listed) == [("wechat", pay.mch_id), ("wechatpay", pay.mch_id)]
    assert pay.apiv3_key not in str(listed)
    await problem(await other_chain.admin("POST", "/v1/channels", {
        "platform": "wechat", "app_id": "wx00000000000000bb", "app_secret": "s" * 32, **pay.channel_fields()}),
        409, "already_exists")
    assert (await (await other_chain.admin("GET", "/v1/channels")).json())["items"] == []


async def test_a_member_on_a_discount_tier_earns_on_what_they_paid(chain, fake_wechat):
    discounted = copy.deepcopy(PROGRAM)
    discounted["tiers"]["levels"][0]["discount_percent"] = 5  # the till's discount, not WeChat Pay's
    await chain.set_program(discounted)
    pay = FakeWeChatPay()
    shop = await connect(chain, fake_wechat, **pay.channel_fields())
    token, _ = await shop.member("13300000051", openid="o_discounted")
    assert (await notify(shop, pay, *pay.notification(shop.app_id, "o_discounted", 20000, attach="S01"))).status == 204
    assert (await shop.me(token))["balances"]["points"] == 200  # 200 yuan paid, 200 points; no 5 % taken again
    [paid] = await Order.filter(chain_id=chain.chain_id, source=f"wechatpay:{pay.mch_id}")
    assert (paid.payable, paid.tier_discount) == (20000, 0)
