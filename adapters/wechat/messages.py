"""The worker's WeChat subscribe messages (订阅消息): points earned, a coupon received, points about to
expire, sent with ``subscribeMessage.send`` to each WeChat account of the member whose app has a
template for that kind and whose consent allows one more (``loyalty_core.messages``).

An app's templates are in its channel settings (``subscribe_templates``, docs/mini-program.md):
per kind a ``template_id``, an optional ``page`` and ``data``, the template's keywords with the
text each shows, naming the kind's figures as ``{points}``. WeChat limits what each keyword type
holds (``thing`` 20 characters, ``name`` 10, ``phrase`` 5, ``character_string``, ``number`` and
``letter`` 32, ``symbol`` 5): longer text is cut to fit, so one long coupon name never costs the
whole message.

WeChat's answers: ``43101`` (the user allows no message of this template) is final, and leaves
the account no consent; ``40003``/``40037``/``41030``/``47003`` (wrong openid, template, page or
data: the app's settings, not the moment) are final too and logged, the consent given back. No
answer after the request may have reached WeChat (a read timeout, a reset connection) is final
as ``unknown``: WeChat may have sent it, and a second send could tell the member twice. Any other
error (WeChat answered an errcode, or no connection was made) is raised, so that the outbox tries
the event again (the accounts already sent to are not sent to again).

Sources: WeChat's docs for ``subscribeMessage.send`` (``POST cgi-bin/message/subscribe/send?access_token=``
with ``touser``, ``template_id``, ``page``, ``data: {keyword: {value}}``, ``miniprogram_state``
``formal|trial|developer``, ``lang``; errcodes 40003, 40037, 43101, 47003, 41030; the keyword types'
limits) and "小程序订阅消息开发指南" (one-time subscriptions, the event pushes).
"""
from __future__ import annotations

import structlog

from loyalty_core import channels, messages
from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault
from loyalty_core.errors import ChannelUnavailable

from .client import App, WeChat

REFUSED = 43101
INVALID = frozenset({40003, 40037, 41030, 47003})
LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32, "symbol": 5}
log = structlog.get_logger("wechat")


def keyword_type(keyword: str) -> str:
    """``thing3`` → ``thing``, ``character_string12`` → ``character_string``."""
    return keyword.rstrip("0123456789")


def message_body(openid: str, template: dict, notice: messages.Notice, settings: dict) -> dict:
    data = {}
    for keyword, text in template["data"].items():
        value = messages.render(text, notice.figures)
        limit = LIMITS.get(keyword_type(keyword))
        data[keyword] = {"value": value[:limit] if limit else value}
    body = {"touser": openid, "template_id": template["template_id"], "data": data,
            "miniprogram_state": settings.get("miniprogram_state") or "formal", "lang": "zh_CN"}
    if template.get("page"):
        body["page"] = template["page"]
    return body


class SubscribeMessages:
    topics = tuple(messages.TOPICS)

    def __init__(self, wechat: WeChat, vault: Vault, clock: Clock) -> None:
        self.wechat, self.vault, self.clock = wechat, vault, clock

    async def __call__(self, event) -> None:
        notice = await messages.notice_of(event.chain_id, event.topic, event.payload or {}, event.created_at)
        if notice is None:
            return
        for app_id, openid in await messages.wechat_accounts(event.chain_id, notice.member_id):
            channel = await channels.connected("wechat", app_id, self.vault)
            if channel is None or channel.chain_id != event.chain_id:
                continue
            template = (channel.settings.get("subscribe_templates") or {}).get(notice.kind)
            if template:
                await self._send(event, channel, openid, template, notice)

    async def _send(self, event, channel: channels.Connected, openid: str, template: dict,
                    notice: messages.Notice) -> None:
        chain_id = event.chain_id
        try:
            body = message_body(openid, template, notice, channel.settings)
        except (KeyError, ValueError) as error:  # settings stored before today's checks: skip, say so
            log.warning("wechat.template_invalid", app_id=channel.external_id, kind=notice.kind, error=str(error))
            return
        send_id = await messages.take(chain_id, channel.id, openid, event.event_id, notice.kind,
                                      template["template_id"], self.clock.now())
        if send_id is None:
            return
        try:
            await self.wechat.send_subscribe_message(App.of(channel), body)
        except ChannelUnavailable as error:
            errcode = error.extra.get("errcode")
            status = (messages.REFUSED if errcode == REFUSED else messages.INVALID if errcode in INVALID
                      else messages.UNKNOWN if error.maybe_done else messages.FAILED)
            await messages.not_sent(chain_id, send_id, status, errcode, self.clock.now())
            if status == messages.FAILED:
                raise
            log.warning("wechat.message_not_sent", app_id=channel.external_id, kind=notice.kind, errcode=errcode,
                        reason=status, event_id=event.event_id)
            return
        await messages.sent(chain_id, send_id, self.clock.now())
