"""Platform webhooks: WeChat's server push for a connected app and WeChat Pay's notifications (each
with its own signature scheme)."""
from __future__ import annotations

from aiohttp import web

from adapters.wechat import pay, push

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
