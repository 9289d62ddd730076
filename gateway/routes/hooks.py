"""Platform webhooks: WeChat's server push for a connected app and WeChat Pay's notifications (each
with its own signature scheme)."""
from __future__ import annotations

from aiohttp import web

from adapters.marketplaces import PLATFORMS
from adapters.wechat import pay, push
from loyalty_core import inbox
from loyalty_core.marketplace import Shop

from ..api import Call
from . import API

TEXT = "text/plain"


@API.route("GET", "/v1/hooks/wechat/{app_id}", auth=None, summary="WeChat server verification", tag="webhooks",
           errors=("not_found", "invalid_signature"),
           description="signature = SHA-1 of the sorted token, timestamp and nonce: answers echostr as text.")
async def wechat_verify(call: Call):
    channel = await call.connected("wechat", call.path_code("app_id", 32))
    return web.Response(text=push.echo(channel, call.request.query), content_type=TEXT)


@API.route("POST", "/v1/hooks/wechat/{app_id}", auth=None, summary="WeChat event push", tag="webhooks",
           errors=("not_found", "invalid_signature", "bad_request"),
           description="Plain (signature) or safe mode (encrypt_type=aes, msg_signature; the app's aes_key). "
                       "user_get_card and user_del_card keep the member's WeChat card in step; other events are "
                       "logged. Answers success (text). A wrong signature is 401 and nothing is kept.")
async def wechat_push(call: Call):
    channel = await call.connected("wechat", call.path_code("app_id", 32))
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
    channel, now = await call.connected("wechatpay", call.path_code("mch_id", 32)), call.services.clock.now()
    paid = pay.verified(channel, call.request.headers, await call.request.read(), now)
    await pay.earn(channel, paid, await call.program_of(channel.chain_id), now)
    return web.Response(status=204)


@API.route("POST", "/v1/hooks/youzan", auth=None, summary="Youzan message push", tag="webhooks",
           errors=("not_found", "invalid_signature", "bad_request"),
           description="Event-Sign = md5 hex of client_id + raw body + client_secret of the shop (kdt_id). The "
                       "event is stored in the shop's inbox (keyed by msg_id: a resend changes nothing) and applied: "
                       "paid orders earn pending points, trade success vests them, refunds claw back pro rata; a "
                       "refund or confirmation before its payment, or an order of a buyer who is no member yet, "
                       "waits. Answers {\"code\": 0, \"msg\": \"success\"}. A wrong signature is 401 and "
                       "nothing is kept.")
async def youzan_push(call: Call):
    return await _marketplace_push(call, "youzan")


async def _marketplace_push(call: Call, platform_name: str) -> web.Response:
    platform, body = PLATFORMS[platform_name], await call.request.read()
    channel = await call.connected(platform_name, platform.shop_of(body, call.request.headers))
    platform.verify(channel, body, call.request.headers)
    now = call.services.clock.now()
    events = platform.events(body, now)
    await inbox.receive(Shop.of(channel), events, body.decode("utf-8", "replace"), await call.program_of(channel.chain_id),
                        call.services.vault, now)
    ack, content_type = platform.ack()
    return web.Response(body=ack, content_type=content_type)
