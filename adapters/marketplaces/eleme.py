"""Eleme retail (饿了么零售 / 饿百开放平台) pushes: ``POST /v1/hooks/eleme``; its open API at ``api-be.ele.me``.

A push is an ``application/x-www-form-urlencoded`` POST of ``cmd``, ``body`` (the business fields, a
JSON object as text), ``source`` (the partner account: our channel's ``shop_id``), ``ticket``,
``timestamp`` (Unix seconds), ``version`` (``3``), ``encrypt`` (empty) and ``sign``. ``sign`` is the
uppercase md5 hex of ``body``, ``cmd``, ``encrypt``, ``secret`` (the source's secret), ``source``,
``ticket``, ``timestamp`` and ``version`` as ``k=v`` pairs sorted by key and joined by ``&`` (the raw
values, ``body`` as the JSON text that was sent). The answer Eleme expects is the same envelope with
``cmd`` ``resp.<cmd>``, the push's ``ticket`` and ``source``, a ``body`` of ``{"errno": 0, "error":
"success", "data": ""}``, signed the same way over ``body``'s JSON text. An open API call is a POST
of the same envelope (a fresh ticket) to ``https://api-be.ele.me/``; its answer's ``body.errno`` 0
means success and ``body.data`` holds the result.

Commands read here (others are kept in the inbox and have nothing to do):

| cmd | when | core event |
|---|---|---|
| ``order.create`` | a new order: ``body`` names ``order_id`` only | paid, completed from ``order.get`` (one not paid online, ``pay_status`` ≠ 2: other, nothing earned) |
| ``order.status.push`` ``status`` 9 | 订单完成 (completed) | confirmed |
| ``order.status.push`` ``status`` 10 | 订单取消 (cancelled, refused) | from ``order.get``: refunded of what the user paid (``user_fee``, the rest of the order at most) when ``pay_status`` is 2 (已支付), else closed |
| ``order.user.cancel`` ``type`` 40 / 60 | 客服同意 / 商户同意 the user's cancellation | as status 10 |
| ``order.partrefund.push`` ``status`` 20 | a partial refund agreed | refunded: ``refund_id``, ``refund_price`` (fen); other statuses (10 applied for, 50 refused) nothing |
| ``order.reverse.push`` | the newer reverse-order message | kept, nothing applied (see below) |

``order.get`` gives ``order`` (``order_id``, ``user_fee`` = what the user paid in fen, ``pay_status``,
``is_private``, ``create_time`` Unix seconds), ``user`` (``user_id``, ``phone``: a privacy number
(隐私小号) on anonymous orders, ``privacy_phone`` masked) and ``products``, a list of baskets of
``{custom_sku_id, baidu_product_id, product_amount, product_fee (fen), product_subsidy.discount}``.
The buyer's phone is used only when the order is not anonymous and it is a mainland mobile
(``1[3-9]`` + 9 digits); the user's ``user_id`` is the buyer id a member binds.

Sources: the official Java push SDK ``me.ele.sdk.down`` (``SignUtil.getSign``: the eight signed
fields and uppercase md5; ``PushForm``; ``Response`` ``errno``/``error``/``data``; the ``resp.*`` cmds
such as ``OrderPartRefundResponse``) and ``me.ele.sdk.up.EleClient`` (open API envelope, ``wrapDownResponse``);
the generated retail SDK ``me.ele.retail.param`` (``MeEleNopDoaApiDtoOrderGetOrder``: ``user_fee``
用户实付金额 (分), ``pay_status`` 1 未支付 2 已支付, ``is_private`` 匿名订单; ``MeEleNopDoaApiDtoOrderGetUser``:
``user_id``, ``phone`` 匿名订单会返回隐私小号; ``MeEleNopDoaApiDtoOrderGetProduct``), as vendored in
public integrations; Phantom0103/elem-open-sdk ``src/main/java/com/elem/retail/api/client/DefaultElemClient.java``
(``SIGN_TEMPLATE`` body&cmd&encrypt&secret&source&ticket&timestamp&version, base ``https://api-be.ele.me``);
brucehe3/ebaipy ``ebaipy/client/base.py`` (sorted ``k=v`` with secret, uppercase md5, ``body.errno``);
order statuses 1/5/7/8/9 订单完成/10 订单取消 and ``order.user.cancel`` ``type`` 40/60 (agreed) and
part-refund statuses 10/20/50 as the integrations that consume them read them (open-retail.ele.me
msgdoc ``order.status.push``, ``order.partrefund.push``, ``order.reverse.push``).

Where the docs are silent, as the SDKs do: the SDKs make a new ``ticket`` for every message they
send and nothing says a resend keeps it, so an event is keyed on what stays the same (cmd, order
id, status, refund id), and five resends have one effect. ``order.reverse.push`` names the reverse
order and its status only (``cur_reverse_event.refund_status`` 50 成功); how much it refunded, and
whether all of the order, needs ``order.reverse.query``, which is not called here (its answer's
shape was not found in the sources): a full cancellation is applied from ``order.status.push`` 10
or ``order.user.cancel``, a part refund from ``order.partrefund.push``; a shop that only receives
``order.reverse.push`` keeps the points of refunded orders until an operator acts. The SDKs do not check the open API
answer's own sign; neither does this.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import parse_qsl

import aiohttp
import orjson

from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, PlatformUnavailable
from loyalty_core.marketplace import MarketEvent, MarketLine

from .base import OpenApi, Pushing, check_signature, digits, section, text_id, whole

SIGNED = ("body", "cmd", "encrypt", "source", "ticket", "timestamp", "version")  # with secret
VERSION = "3"
COMPLETED, CANCELLED = 9, 10           # order.status.push status: 订单完成, 订单取消
AGREED_CANCEL = (40, 60)               # order.user.cancel type: 客服同意, 商户同意
REFUND_AGREED = 20                     # order.partrefund.push status: 同意 (10 申请, 50 拒绝)
PAID = 2                               # order.get order.pay_status: 已支付
MOBILE = re.compile(r"1[3-9][0-9]{9}")
LARGEST_FEN = 10**12


def sign(fields: Mapping[str, str], secret: str) -> str:
    """Eleme's sign: uppercase md5 of the signed fields and ``secret``, ``k=v`` sorted, joined by ``&``."""
    pairs = {**{k: str(fields.get(k) or "") for k in SIGNED}, "secret": secret}
    text = "&".join(f"{k}={pairs[k]}" for k in sorted(pairs))
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def fen(value) -> int:
    return whole(value, 0, LARGEST_FEN, "an amount in fen")


def _number(value, name: str) -> int:
    return whole(value, 0, 10**13, f"a number ({name})")


def _form(body: bytes) -> dict[str, str]:
    """The push's form fields (BadRequest when it is no form, or names a field twice)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=40)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The body is not an Eleme push (a form)") from None
    form = dict(pairs)
    if len(form) != len(pairs) or not isinstance(form.get("cmd"), str) or not form["cmd"]:
        raise BadRequest("The body is not an Eleme push: no cmd (or a field twice)")
    text_id(form["cmd"], 64)
    return form


def _business(form: Mapping[str, str]) -> dict:
    try:
        body = orjson.loads(form.get("body") or "")
    except orjson.JSONDecodeError:
        raise BadRequest("The push's body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("The push's body is not a JSON object")
    return body


def _when(seconds, default: datetime) -> datetime:
    text = str(seconds or "")
    if not digits(text) or len(text) > 11:
        return default
    return datetime.fromtimestamp(int(text), tz=timezone.utc)


def _order_id(body: dict) -> str:
    order_id = text_id(body.get("order_id"), 64)
    if not order_id:
        raise BadRequest("The push names no order (order_id)")
    return order_id


class Eleme(Pushing):
    name = "eleme"
    base_url = "https://api-be.ele.me"

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        source = _form(body).get("source") or ""
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", source):
            raise BadRequest("The push names no source")
        return source

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        form, secret = _form(body), channel.secret("secret") or ""
        check_signature(sign(form, secret), form.get("sign") or "", secret, "sign does not match this source's secret")

    def events(self, body: bytes, now: datetime) -> list[MarketEvent]:
        form = _form(body)
        cmd, business = form["cmd"], _business(form)
        occurred = _when(form.get("timestamp"), now)
        reader = {"order.create": _created, "order.status.push": _status, "order.user.cancel": _user_cancel,
                  "order.partrefund.push": _part_refund, "order.reverse.push": _reverse}.get(cmd)
        if reader is not None:
            return [reader(business, occurred)]
        key = text_id(business.get("order_id") or "", 64)
        return [MarketEvent(f"{cmd}:{key or text_id(form.get('ticket'), 64)}"[:128], "other", key, occurred)]

    def ack(self, channel: Connected, body: bytes, headers: Mapping[str, str], now: datetime) -> tuple[bytes, str]:
        form = _form(body)
        return orjson.dumps(answer(f"resp.{form['cmd']}", form.get("source") or "", form.get("ticket") or "",
                                   channel.secret("secret") or "", int(now.timestamp()))), "application/json"

    async def detail(self, channel: Connected, event: MarketEvent, api: OpenApi) -> MarketEvent:
        data = await call(api, channel, "order.get", {"order_id": event.order_id})
        order = section(data.get("order"))
        if str(order.get("order_id")) != event.order_id:
            raise PlatformUnavailable(f"order.get answered no order {event.order_id}")
        if event.kind == "paid":
            return _paid(event, order, section(data.get("user")), data.get("products"))
        return _cancelled(event, order)


def answer(cmd: str, source: str, ticket: str, secret: str, timestamp: int, data="") -> dict:
    """The signed envelope Eleme expects back (``errno`` 0: the push was taken)."""
    body = {"errno": 0, "error": "success", "data": data}
    fields = {"body": orjson.dumps(body).decode(), "cmd": cmd, "encrypt": "", "source": source, "ticket": ticket,
              "timestamp": str(timestamp), "version": VERSION}
    return {"body": body, "cmd": cmd, "encrypt": "", "sign": sign(fields, secret), "source": source,
            "ticket": ticket, "timestamp": timestamp, "version": VERSION}


async def call(api: OpenApi, channel: Connected, cmd: str, body: dict) -> dict:
    """One open API call as the SDKs make it; its ``body.data``, or PlatformUnavailable."""
    fields = {"body": orjson.dumps(body).decode(), "cmd": cmd, "encrypt": "", "source": channel.external_id,
              "ticket": str(uuid.uuid4()).upper(), "timestamp": str(int(api.clock.now().timestamp())),
              "version": VERSION}
    fields["sign"] = sign(fields, channel.secret("secret") or "")
    try:
        async with api.http.post(api.base_url + "/", data=fields) as response:
            if response.status != 200:
                raise PlatformUnavailable(f"Eleme {cmd}: HTTP {response.status}")
            envelope = orjson.loads(await response.read())
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as failed:
        raise PlatformUnavailable(f"Eleme {cmd}: {type(failed).__name__}") from None
    result = section(section(envelope).get("body"))
    if str(result.get("errno")) != "0":
        raise PlatformUnavailable(f"Eleme {cmd}: errno {str(result.get('errno'))[:12]} {str(result.get('error'))[:80]}")
    return section(result.get("data"))


def _created(body: dict, occurred: datetime) -> MarketEvent:
    order_id = _order_id(body)
    return MarketEvent(f"order.create:{order_id}", "paid", order_id, occurred, needs_detail=True)


def _status(body: dict, occurred: datetime) -> MarketEvent:
    order_id, status = _order_id(body), _number(body.get("status"), "status")
    event_id = f"order.status.push:{order_id}:{status}"
    if status == COMPLETED:
        return MarketEvent(event_id, "confirmed", order_id, occurred)
    if status == CANCELLED:
        return _cancellation(event_id, order_id, occurred)
    return MarketEvent(event_id, "other", order_id, occurred)


def _user_cancel(body: dict, occurred: datetime) -> MarketEvent:
    order_id, kind = _order_id(body), _number(body.get("type"), "type")
    event_id = f"order.user.cancel:{order_id}:{text_id(body.get('refund_order_id') or '', 40)}:{kind}"
    if kind in AGREED_CANCEL:
        return _cancellation(event_id, order_id, occurred)
    return MarketEvent(event_id, "other", order_id, occurred)


def _cancellation(event_id: str, order_id: str, occurred: datetime) -> MarketEvent:
    """The whole order cancelled: what the money did is asked of ``order.get`` (``detail``); one refund
    id for all the messages that say so, so that the order is refunded once."""
    return MarketEvent(event_id, "refunded", order_id, occurred, refund_id=f"cancel:{order_id}"[:64],
                       needs_detail=True)


def _part_refund(body: dict, occurred: datetime) -> MarketEvent:
    order_id, status = _order_id(body), _number(body.get("status"), "status")
    refund_id = text_id(body.get("refund_id"), 40)
    if not refund_id:
        raise BadRequest("The partial refund names no refund_id")
    event_id = f"order.partrefund.push:{order_id}:{refund_id}:{status}"
    if status != REFUND_AGREED:
        return MarketEvent(event_id, "other", order_id, occurred)
    return MarketEvent(event_id, "refunded", order_id, occurred, refund_id=refund_id,
                       refunded=fen(body.get("refund_price")))


def _reverse(body: dict, occurred: datetime) -> MarketEvent:
    """Kept with nothing to do (the module's docstring says why), one row per reverse order and status."""
    order_id, event = _order_id(body), body.get("cur_reverse_event")
    if isinstance(event, str):
        try:
            event = orjson.loads(event)
        except orjson.JSONDecodeError:
            raise BadRequest("cur_reverse_event is not JSON") from None
    status = text_id(section(event).get("refund_status", ""), 8)
    refund = text_id(body.get("refund_order_id") or "", 40)
    return MarketEvent(f"order.reverse.push:{order_id}:{refund}:{status}", "other", order_id, occurred)


def _paid(event: MarketEvent, order: dict, user: dict, products) -> MarketEvent:
    """The goods lines earn what was paid for them (``product_fee`` less the discount); what else was
    paid (delivery, packing) does not: the core sees to that when the lines add up to less. An order
    not paid online (``pay_status`` other than 2) earns nothing."""
    if str(order.get("pay_status")) != str(PAID):
        return MarketEvent(event.event_id, "other", event.order_id, event.occurred_at)
    phone = str(user.get("phone") or "")
    private = str(order.get("is_private") or "0") == "1"
    return MarketEvent(event.event_id, "paid", event.order_id, _when(order.get("create_time"), event.occurred_at),
                       buyer_phone=phone if not private and MOBILE.fullmatch(phone) else None,
                       buyer_id=text_id(user.get("user_id") or "", 64) or None,
                       lines=_lines(products), paid=fen(order.get("user_fee", 0)))


def _lines(products) -> tuple[MarketLine, ...]:
    baskets = products if isinstance(products, list) else []
    items = [item for basket in baskets for item in (basket if isinstance(basket, list) else [basket])]
    return tuple(_line(item) for item in items if isinstance(item, dict))


def _line(item: dict) -> MarketLine:
    sku = text_id(item.get("custom_sku_id") or item.get("sku_id") or item.get("baidu_product_id") or "ITEM", 64)
    discount = fen(section(item.get("product_subsidy")).get("discount", 0))
    amount = max(fen(item.get("product_fee", 0)) - discount, 0)
    return MarketLine(sku or "ITEM", max(_number(item.get("product_amount", 1), "product_amount"), 1), amount)


def _cancelled(event: MarketEvent, order: dict) -> MarketEvent:
    """A cancellation of a paid order refunds what the user paid (the core takes back at most what is
    left of the order); one never paid is closed."""
    if str(order.get("pay_status")) != str(PAID):
        return MarketEvent(event.event_id, "closed", event.order_id, event.occurred_at)
    return MarketEvent(event.event_id, "refunded", event.order_id, event.occurred_at, refund_id=event.refund_id,
                       refunded=fen(order.get("user_fee", 0)))
