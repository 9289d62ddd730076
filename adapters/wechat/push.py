"""WeChat's server push for a connected app: verification, signatures, plain and AES safe mode.

- **Server verification** (``GET``): ``signature`` is SHA-1 of the sorted ``token``, ``timestamp``
  and ``nonce``; a match answers ``echostr`` as it came.
- **Plain mode** (``POST``): the same ``signature`` over the query, the body is the event's XML.
- **Safe mode** (``encrypt_type=aes``): the body's ``<Encrypt>`` is AES-256-CBC with the app's
  43-character EncodingAESKey, and ``msg_signature`` is SHA-1 of the sorted token, timestamp, nonce
  and ciphertext; wechatpy's ``WeChatCrypto`` checks it and decrypts (and checks the app id
  inside). Either mode is chosen per push by ``encrypt_type``.

A wrong or missing signature, an app without a push ``token`` (or, in safe mode, without an
``aes_key``), or a safe-mode body without a ciphertext that decrypts to this app is
``InvalidSignature`` (401): nothing is kept. A signed plain body that is not WeChat's XML is
``BadRequest``. Events become the core's
calls: ``user_get_card``, ``user_del_card`` and ``update_member_card`` (a card's figures
changed: our own write, or a change made elsewhere that has the card written again;
``loyalty_core.cards``); ``subscribe_msg_popup_event``
(what the user chose in a subscribe popup) and ``subscribe_msg_change_event`` (a template switched
off in the settings) record consent (``loyalty_core.messages``); ``subscribe_msg_sent_event``
(a message's delivery result) and any other event are only logged.

Sources: wechatpy 1.8.18 (``wechatpy.utils.WeChatSigner``, ``wechatpy.crypto.WeChatCrypto``,
``wechatpy.parse_message``, ``wechatpy.events.UserGetCardEvent`` / ``UserDeleteCardEvent`` /
``UpdateMemberCard``); WeChat's docs "接入概述" (server verification) and "消息加解密说明" (safe mode),
the member-card event pushes (user_get_card: CardId, UserCardCode, FromUserName, UnionId), and
"小程序订阅消息开发指南 · 订阅消息事件推送" (``SubscribeMsgPopupEvent``/``SubscribeMsgChangeEvent``/
``SubscribeMsgSentEvent``, each a ``List`` of ``TemplateId`` and ``SubscribeStatusString``; one
``List`` when one template, several when more).
"""
from __future__ import annotations

import hmac
import re
from datetime import datetime
from typing import Mapping

import structlog
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner

from loyalty_core import cards, messages, sessions
from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, InvalidSignature

log = structlog.get_logger("wechat")


def _token(channel: Connected) -> str:
    token = channel.secret("token")
    if not token:
        raise InvalidSignature("This app has no push token: connect it with token (and aes_key for safe mode)")
    return token


def _signed(token: str, query: Mapping[str, str]) -> None:
    signer = WeChatSigner()
    signer.add_data(token, query.get("timestamp", ""), query.get("nonce", ""))
    if not hmac.compare_digest(signer.signature, query.get("signature", "")):
        raise InvalidSignature("signature does not match this app's push token")


def echo(channel: Connected, query: Mapping[str, str]) -> str:
    """Server verification: the ``echostr`` to answer."""
    _signed(_token(channel), query)
    return query.get("echostr", "")


def message(channel: Connected, query: Mapping[str, str], body: bytes):
    """The pushed event, verified (and decrypted in safe mode), as wechatpy parses it."""
    token = _token(channel)
    if query.get("encrypt_type") == "aes":
        aes_key = channel.secret("aes_key")
        if not aes_key:
            raise InvalidSignature("A safe-mode push, but this app has no aes_key")
        try:
            body = WeChatCrypto(token, aes_key, channel.external_id).decrypt_message(
                body, query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        except (InvalidSignatureException, InvalidAppIdException):
            raise InvalidSignature("msg_signature does not match, or the message is not for this app") from None
        except Exception:  # not WeChat's XML, or no <Encrypt> in it: nothing that could be verified
            raise InvalidSignature("The body is not a safe-mode WeChat message signed for this app") from None
    else:
        _signed(token, query)
    try:
        return parse_message(body)
    except Exception:
        raise BadRequest("The body is not a WeChat message (XML)") from None


CONSENT_EVENTS = {"subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
                  "subscribe_msg_change_event": "SubscribeMsgChangeEvent"}


def _raw(pushed) -> dict:
    """The pushed XML as a dict: wechatpy has no class for subscribe-message events."""
    return getattr(pushed, "_data", None) or {}


def _listed(section) -> list[dict]:
    """A section's ``List`` entries: one is a dict, several a list."""
    entries = (section or {}).get("List") if isinstance(section, dict) else None
    entries = entries if isinstance(entries, list) else [entries] if entries else []
    return [entry for entry in entries if isinstance(entry, dict)]


WHOLE = re.compile(r"-?[0-9]{1,12}")


def _change(pushed, name: str) -> int:
    """A figure's change in an ``update_member_card`` push (absent: 0); not a whole number: 400."""
    value = str(_raw(pushed).get(name) or "0").strip()
    if not WHOLE.fullmatch(value):
        raise BadRequest(f"{name} is not a whole number")
    return int(value)


async def apply(channel: Connected, pushed, now: datetime) -> None:
    """What an event means to the core."""
    event = getattr(pushed, "event", None)
    if event == "user_get_card":
        account = sessions.WeChatAccount(channel.external_id, pushed.source, pushed.union_id or None)
        await cards.received(channel.chain_id, channel.id, account, pushed.card_id, pushed.code, now)
    elif event == "user_del_card":
        await cards.deleted(channel.chain_id, pushed.card_id, pushed.code, now)
    elif event == "update_member_card":
        account = sessions.WeChatAccount(channel.external_id, pushed.source, None)
        bonus, balance = _change(pushed, "ModifyBonus"), _change(pushed, "ModifyBalance")
        seen = await cards.changed(channel.chain_id, channel.id, account, pushed.card_id, pushed.code,
                                   bonus, balance, now)
        log.info("wechat.card_changed", app_id=channel.external_id, card_id=pushed.card_id, seen=seen,
                 bonus_change=bonus, balance_change=balance)
    elif (event := _raw(pushed).get("Event")) in CONSENT_EVENTS:
        choices = {item.get("TemplateId"): item.get("SubscribeStatusString")
                   for item in _listed(_raw(pushed).get(CONSENT_EVENTS[event]))}
        await messages.consent(channel.chain_id, channel.id, pushed.source,
                               {str(k): str(v) for k, v in choices.items() if k and v}, now)
    elif event == "subscribe_msg_sent_event":
        for item in _listed(_raw(pushed).get("SubscribeMsgSentEvent")):
            log.info("wechat.message_delivery", app_id=channel.external_id, template_id=item.get("TemplateId"),
                     msg_id=item.get("MsgID"), errcode=item.get("ErrorCode"), status=item.get("ErrorStatus"))
    else:
        log.info("wechat.push_ignored", app_id=channel.external_id, type=pushed.type, wechat_event=event,
                 card_id=getattr(pushed, "card_id", None))
