"""Platform webhooks: WeChat's server push for a connected app (its own signature scheme)."""
from __future__ import annotations

from aiohttp import web

from adapters.wechat import push
from loyalty_core import channels
from loyalty_core.errors import NotFound

from ..api import Call
from . import API

TEXT = "text/plain"


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
