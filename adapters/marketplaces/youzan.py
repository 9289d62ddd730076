"""Youzan (有赞) message push: ``POST /v1/hooks/youzan``.

A push is JSON: ``client_id`` (the Youzan cloud app), ``kdt_id`` (the shop), ``id`` (the business
id: the order number ``E2026…``), ``type``, ``status``, ``msg`` (the business message, JSON,
URL-encoded as UTF-8), ``msg_id`` (the message's own id: a resend keeps it), ``version``,
``sendCount``, ``sign``. The header ``Event-Sign`` is the md5 hex of client_id + the raw body +
client_secret; the app's client_id in the body must be the shop's. The answer Youzan expects
once the push is kept: ``{"code": 0, "msg": "success"}`` (anything else, and it sends again:
immediately, then after about 4, 10 and 10 minutes and an hour).

Types read here (others are kept and have nothing to do):

| type | core event | from ``msg`` |
|---|---|---|
| ``trade_TradeBuyerPay``, ``trade_TradePaid`` | paid | ``full_order_info``: ``order_info.tid``, ``order_info.pay_time``; ``buyer_info.buyer_phone``, ``buyer_info.yz_open_id``; ``pay_info.payment`` (yuan); ``orders[]``: ``outer_item_id`` or ``item_id``, ``num``, ``payment`` |
| ``trade_TradeSuccess`` | confirmed | ``tid`` (else the push's ``id``) |
| ``trade_TradeClose`` | closed | ``tid`` |
| ``trade_refund_RefundSuccess`` | refunded | ``tid``, ``refund_id``, ``refunded_fee`` (yuan), ``update_time`` |

Times are Beijing time (``yyyy-MM-dd HH:mm:ss``). Sources: Youzan cloud's message docs
("消息推送": push fields, ``Event-Sign``, the retry schedule; doc.youzanyun.com/detail/MSG/302
``trade_TradeBuyerPay``, /199 ``trade_TradeSuccess``, /201 ``trade_refund_RefundSuccess``), as
the open SDK TsangJx/YouZanYunSDK models them (``Msg/TradeTradebuyerpayData.cs``,
``Msg/TradeRefundMsg.cs``: ``tid``, ``oids``, ``refund_id``, ``refunded_fee``, ``update_time``),
and ``youzan.trade.get``'s ``full_order_info``.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Mapping
from urllib.parse import unquote

import orjson

from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, InvalidSignature
from loyalty_core.marketplace import MarketEvent, MarketLine

from .base import Pushing, beijing_time, check_signature, digits, section, text_id, whole, yuan

KINDS = {"trade_TradeBuyerPay": "paid", "trade_TradePaid": "paid", "trade_TradeSuccess": "confirmed",
         "trade_TradeClose": "closed", "trade_refund_RefundSuccess": "refunded"}
ACK = orjson.dumps({"code": 0, "msg": "success"})


def sign(client_id: str, body: bytes, client_secret: str) -> str:
    return hashlib.md5(client_id.encode() + body + client_secret.encode()).hexdigest()


def _push(body: bytes) -> dict:
    try:
        push = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not a Youzan push (JSON)") from None
    if not isinstance(push, dict) or not isinstance(push.get("type"), str):
        raise BadRequest("The body is not a Youzan push: no type")
    return push


def _count(value) -> int:
    return whole(value, 1, 100_000, "a quantity")


class Youzan(Pushing):
    name = "youzan"
    base_url = "https://open.youzanyun.com"

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        shop = _push(body).get("kdt_id")
        if isinstance(shop, bool) or not isinstance(shop, (int, str)) or not digits(str(shop)) or len(str(shop)) > 20:
            raise BadRequest("The push names no shop (kdt_id)")
        return str(shop)

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        client_id, secret = channel.settings.get("client_id") or "", channel.secret("client_secret") or ""
        check_signature(sign(client_id, body, secret), headers.get("Event-Sign", ""), secret,
                        "Event-Sign does not match this shop's client_id and client_secret")
        if str(_push(body).get("client_id")) != client_id:
            raise InvalidSignature("The push is for another Youzan app (client_id)")

    def events(self, body: bytes, now: datetime) -> list[MarketEvent]:
        push = _push(body)
        kind = KINDS.get(push["type"], "other")
        try:
            msg = orjson.loads(unquote(str(push.get("msg") or "{}"))) if push.get("msg") else {}
        except orjson.JSONDecodeError:
            raise BadRequest("msg is not URL-encoded JSON") from None
        msg = section(msg)
        event_id = text_id(push.get("msg_id") or f"{push['type']}:{push.get('id')}:{push.get('version')}", 128)
        if kind == "paid":
            return [self._paid(event_id, push, msg, now)]
        order_id = text_id(msg.get("tid") or push.get("id") or "", 64)
        if not order_id:
            raise BadRequest("The push names no order (tid)")
        if kind == "refunded":
            return [MarketEvent(event_id, kind, order_id, beijing_time(msg.get("update_time"), now),
                                refund_id=text_id(msg.get("refund_id") or event_id, 128)[:64],
                                refunded=yuan(msg.get("refunded_fee", "0")))]
        return [MarketEvent(event_id, kind, order_id, beijing_time(msg.get("update_time"), now))]

    def _paid(self, event_id: str, push: dict, msg: dict, now: datetime) -> MarketEvent:
        """The goods lines earn (``orders[].payment``); what else was paid (postage) does not, the
        core sees to that when the lines add up to less than ``pay_info.payment``."""
        full = section(msg.get("full_order_info"))
        info, buyer = section(full.get("order_info")), section(full.get("buyer_info"))
        order_id = text_id(info.get("tid") or push.get("id") or "", 64)
        if not order_id:
            raise BadRequest("The paid push names no order (full_order_info.order_info.tid)")
        items = full.get("orders") if isinstance(full.get("orders"), list) else []
        lines = tuple(MarketLine(text_id(item.get("outer_item_id") or item.get("item_id") or "ITEM", 64) or "ITEM",
                                 _count(item.get("num", 1)), yuan(item.get("payment", "0")))
                      for item in items if isinstance(item, dict))
        paid = yuan(section(full.get("pay_info")).get("payment", "0"))
        phone = str(buyer.get("buyer_phone") or "") or None
        return MarketEvent(event_id, "paid", order_id, beijing_time(info.get("pay_time") or info.get("created"), now),
                           buyer_phone=phone if phone and digits(phone) and len(phone) == 11 else None,
                           buyer_id=text_id(buyer.get("yz_open_id") or "", 128) or None,
                           lines=lines, paid=paid, phone_of_account=True)

    def ack(self, channel: Connected, body: bytes, headers: Mapping[str, str], now: datetime) -> tuple[bytes, str]:
        return ACK, "application/json"
