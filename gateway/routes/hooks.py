"""Platform webhooks: WeChat's server push for a connected app, WeChat Pay's notifications and the
marketplaces' pushes (Youzan, Douyin shop, Eleme retail), each with its own signature scheme."""
from __future__ import annotations

from aiohttp import web

from adapters.marketplaces import PLATFORMS
from adapters.wechat import pay, push
from loyalty_core import channels, inbox
from loyalty_core.errors import NotFound
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


@API.route("POST", "/v1/hooks/douyin", auth=None, summary="Douyin shop message push", tag="webhooks",
           errors=("not_found", "invalid_signature", "bad_request"),
           description="A JSON array of {tag, msg_id, data}; headers app-id and event-sign = md5 hex of app_key + "
                       "raw body + app_secret of the shop (shop_id in data); Douyin's check of the URL (tag 0 only) is "
                       "verified with a shop of the app-id and answered, kept nowhere. Each message is stored in the shop's "
                       "inbox (keyed by msg_id) and applied (docs/marketplaces.md). Answers {\"code\": 0, "
                       "\"msg\": \"success\"}. A wrong signature is 401 and nothing is kept.")
async def douyin_push(call: Call):
    return await _marketplace_push(call, "douyin")


@API.route("POST", "/v1/hooks/eleme", auth=None, summary="Eleme retail push", tag="webhooks",
           errors=("not_found", "invalid_signature", "bad_request"),
           description="Form fields cmd, body, source, ticket, timestamp, sign: sign = uppercase md5 of the key-sorted "
                       "k=v pairs (with the source's secret, without sign) joined by &. Stored in the inbox (keyed by "
                       "cmd, order id and status or refund id: a resend with a new ticket changes nothing) and "
                       "applied (docs/marketplaces.md); answers the signed resp.<cmd> Eleme expects. A wrong "
                       "signature is 401 and nothing is kept.")
async def eleme_push(call: Call):
    return await _marketplace_push(call, "eleme")


async def _marketplace_push(call: Call, platform_name: str) -> web.Response:
    platform, body, headers = PLATFORMS[platform_name], await call.request.read(), call.request.headers
    if (app := platform.url_check(body, headers)) is not None:
        return await _url_check(call, platform_name, app, body)
    channel = await call.connected(platform_name, platform.shop_of(body, headers))
    platform.verify(channel, body, headers)
    now = call.services.clock.now()
    events = platform.events(body, now)
    await inbox.receive(Shop.of(channel), events, body.decode("utf-8", "replace"), await call.program_of(channel.chain_id),
                        call.services.vault, now, call.services.marketplaces)
    ack, content_type = platform.ack(channel, body, headers, now)
    return web.Response(body=ack, content_type=content_type)


async def _url_check(call: Call, platform_name: str, app: str, body: bytes) -> web.Response:
    """The platform checking a push URL: verified with a shop of that app, acked, kept nowhere."""
    platform = PLATFORMS[platform_name]
    channel = await channels.of_app(platform_name, app, call.services.vault)
    if channel is None:
        raise NotFound(f"No {platform_name} shop of app {app[:64]!r} is connected")
    platform.verify(channel, body, call.request.headers)
    ack, content_type = platform.ack(channel, body, call.request.headers, call.services.clock.now())
    return web.Response(body=ack, content_type=content_type)
