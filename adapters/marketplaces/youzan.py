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
import hmac
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Mapping
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import orjson

from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, InvalidSignature
from loyalty_core.marketplace import MarketEvent, MarketLine

BEIJING = ZoneInfo("Asia/Shanghai")
KINDS = {"trade_TradeBuyerPay": "paid", "trade_TradePaid": "paid", "trade_TradeSuccess": "confirmed",
         "trade_TradeClose": "closed", "trade_refund_RefundSuccess": "refunded"}
ACK = orjson.dumps({"code": 0, "msg": "success"})


def fen(yuan) -> int:
    """``"188.00"`` → 18800; BadRequest for anything that is no amount."""
    try:
        amount = (Decimal(str(yuan)) * 100).quantize(Decimal(1))
    except (InvalidOperation, ValueError):
        raise BadRequest(f"not an amount: {str(yuan)[:20]!r}") from None
    if amount < 0 or amount > 10**12:
        raise BadRequest(f"amount out of range: {str(yuan)[:20]!r}")
    return int(amount)


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


def _when(text, default: datetime) -> datetime:
    try:
        return datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except (TypeError, ValueError):
        return default


class Youzan:
    name = "youzan"

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        shop = _push(body).get("kdt_id")
        if not isinstance(shop, (int, str)) or not str(shop).isdigit():
            raise BadRequest("The push names no shop (kdt_id)")
        return str(shop)

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        client_id, secret = channel.settings.get("client_id") or "", channel.secret("client_secret") or ""
        expected = sign(client_id, body, secret)
        if not secret or not hmac.compare_digest(expected, headers.get("Event-Sign", "").lower()):
            raise InvalidSignature("Event-Sign does not match this shop's client_id and client_secret")
        if str(_push(body).get("client_id")) != client_id:
            raise InvalidSignature("The push is for another Youzan app (client_id)")

    def events(self, body: bytes) -> list[MarketEvent]:
        push = _push(body)
        kind = KINDS.get(push["type"], "other")
        try:
            msg = orjson.loads(unquote(str(push.get("msg") or "{}"))) if push.get("msg") else {}
        except orjson.JSONDecodeError:
            raise BadRequest("msg is not URL-encoded JSON") from None
        msg = msg if isinstance(msg, dict) else {}
        event_id = str(push.get("msg_id") or f"{push['type']}:{push.get('id')}:{push.get('version')}")[:128]
        now = datetime.now(BEIJING)
        if kind == "paid":
            return [self._paid(event_id, push, msg, now)]
        order_id = str(msg.get("tid") or push.get("id") or "")[:64]
        if not order_id:
            raise BadRequest("The push names no order (tid)")
        if kind == "refunded":
            return [MarketEvent(event_id, kind, order_id, _when(msg.get("update_time"), now),
                                refund_id=str(msg.get("refund_id") or event_id)[:64],
                                refunded=fen(msg.get("refunded_fee", "0")))]
        return [MarketEvent(event_id, kind, order_id, _when(msg.get("update_time"), now))]

    def _paid(self, event_id: str, push: dict, msg: dict, now: datetime) -> MarketEvent:
        full = msg.get("full_order_info") if isinstance(msg.get("full_order_info"), dict) else {}
        info, buyer = full.get("order_info") or {}, full.get("buyer_info") or {}
        order_id = str(info.get("tid") or push.get("id") or "")[:64]
        if not order_id:
            raise BadRequest("The paid push names no order (full_order_info.order_info.tid)")
        lines = tuple(MarketLine(str(item.get("outer_item_id") or item.get("item_id") or "ITEM")[:64],
                                 max(1, int(item.get("num") or 1)), fen(item.get("payment", "0")))
                      for item in full.get("orders") or () if isinstance(item, dict))
        paid = fen((full.get("pay_info") or {}).get("payment", "0"))
        if sum(line.amount for line in lines) != paid:  # postage, say: the order earns as one line of what was paid
            lines = ()
        phone = str(buyer.get("buyer_phone") or "") or None
        return MarketEvent(event_id, "paid", order_id, _when(info.get("pay_time") or info.get("created"), now),
                           buyer_phone=phone if phone and phone.isdigit() and len(phone) == 11 else None,
                           buyer_id=str(buyer.get("yz_open_id") or buyer.get("fans_id") or "")[:128] or None,
                           lines=lines, paid=paid)

    def ack(self) -> tuple[bytes, str]:
        return ACK, "application/json"
