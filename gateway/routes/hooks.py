"""Platform webhooks: WeChat's server push for a connected app and WeChat Pay's notifications (each
with its own signature scheme)."""
from __future__ import annotations

from aiohttp import web

import structlog

from adapters.wechat import pay, push
from loyalty_core import chains, channels, codes, orders, sessions
from loyalty_core.errors import LoyaltyError, NotFound, ValidationFailed

from ..api import Call
from . import API

TEXT = "text/plain"
log = structlog.get_logger("gateway")


async def _channel(call: Call) -> channels.Connected:
    app_id = call.path_code("app_id", 32)
    vault = call.services.vault
    found = await call.services.channels.get(("wechat", app_id), lambda: channels.connected("wechat", app_id, vault))
    if found is None:
        raise NotFound(f"No WeChat app {app_id} is connected")
    return found


@API.route("GET", "/v1/hooks/wechat/{app_id}", auth=None, summary="WeChat server verification", tag="webhooks",
           errors=("not_found", "invalid_signature"),
           description="signature = SHA-1 of the sorted token, timestamp and nonce: answers echostr as text.")
async def wechat_verify(call: Call):
    return web.Response(text=push.echo(await _channel(call), call.request.query), content_type=TEXT)


@API.route("POST", "/v1/hooks/wechat/{app_id}", auth=None, summary="WeChat event push", tag="webhooks",
           errors=("not_found", "invalid_signature", "bad_request"),
           description="Plain (signature) or safe mode (encrypt_type=aes, msg_signature; the app's aes_key). "
                       "user_get_card and user_del_card keep the member's WeChat card in step; other events are "
                       "logged. Answers success (text). A wrong signature is 401 and nothing is kept.")
async def wechat_push(call: Call):
    channel = await _channel(call)
    pushed = push.message(channel, call.request.query, await call.request.read())
    await push.apply(channel, pushed, call.services.clock.now())
    return web.Response(text="success", content_type=TEXT)


@API.route("POST", "/v1/hooks/wechatpay/{mch_id}", auth=None, summary="WeChat Pay v3 payment notification",
           tag="webhooks", status=204, errors=("not_found", "invalid_signature", "stale_request", "bad_request",
                                               "validation_error"),
           description="Verified (Wechatpay-Signature with the merchant's pay_public_key, Wechatpay-Serial its "
                       "pay_public_key_id, Wechatpay-Timestamp within 5 minutes) and decrypted (AES-256-GCM, "
                       "apiv3_key). A SUCCESS transaction whose payer openid is a member's earns as a sale of the "
                       "store whose code is attach (422 if there is none: WeChat Pay sends it again later), once "
                       "per transaction id. Answers 204 without a body, as WeChat Pay expects, also when there is "
                       "nothing to earn (not a member, not paid, a frozen member).")
async def wechatpay_notification(call: Call):
    mch_id, now = call.path_code("mch_id", 32), call.services.clock.now()
    vault = call.services.vault
    channel = await call.services.channels.get(("wechatpay", mch_id),
                                               lambda: channels.connected("wechatpay", mch_id, vault))
    if channel is None:
        raise NotFound(f"No WeChat Pay merchant {mch_id} is connected")
    paid = pay.verified(channel, call.request.headers, await call.request.read(), now)
    member_id = await sessions.member_of(channel.chain_id, sessions.WeChatAccount(paid.app_id, paid.openid)) \
        if paid.trade_state == "SUCCESS" else None
    if member_id is None:
        log.info("wechatpay.nothing_to_earn", mch_id=mch_id, transaction_id=paid.transaction_id,
                 trade_state=paid.trade_state)
        return web.Response(status=204)
    try:
        store = await chains.store_by_code(channel.chain_id, paid.attach)
    except NotFound:
        raise ValidationFailed([{"field": "attach", "message": f"no store {paid.attach[:32]!r} in this chain"}]) from None
    member = await codes.member_by_id(channel.chain_id, member_id)
    try:
        await orders.place_order(channel.chain_id, pay.as_sale(paid, mch_id, member, store.id, now),
                                 await call.program_of(channel.chain_id), now)
    except LoyaltyError as refused:  # frozen, say: the payment stands, there is nothing to retry
        if refused.status >= 500:
            raise
        log.info("wechatpay.not_earned", mch_id=mch_id, transaction_id=paid.transaction_id, code=refused.code)
    return web.Response(status=204)
