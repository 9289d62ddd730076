"""Douyin shop (抖店) message push, ``POST /v1/hooks/douyin``, and the open API calls that complete a
paid order.

**The push.** A JSON array of messages ``{"tag": "101", "msg_id": "…", "data": "<JSON text>"}``
(``data`` a JSON string; read as an object too, as the .NET SDK's samples have it). The shop is
``shop_id`` in each message's data: one push names one shop. The header ``event-sign`` is the md5
hex of app_key + the raw body + app_secret (compared case-insensitively); ``app-id`` is the app's
app_key and must be the shop's. The answer Douyin expects once the push is kept:
``{"code": 0, "msg": "success"}``.

| tag | message | core event | from ``data`` |
|---|---|---|---|
| 101 | ``doudian_trade_TradePaid`` | paid (``needs_detail``) | ``p_id`` (the shop order id), ``pay_time`` (unix s), ``pay_amount`` (fen) |
| 103 | ``doudian_trade_TradeSuccess`` | confirmed | ``p_id``, ``complete_time`` |
| 106 | ``doudian_trade_TradeCanceled`` | closed | ``p_id``, ``cancel_time`` |
| 206 | ``doudian_refund_RefundSuccess`` | refunded | ``p_id``, ``aftersale_id`` (the refund id), ``refund_amount`` less ``refund_post_amount`` (fen: the amount includes the postage refunded, which never earned), ``success_time`` |
| 0 | the check Douyin sends when the push URL is configured | none | answered with the ack, nothing kept |
| other | | other | kept, nothing to do |

**The open API.** A paid message names the order, not the buyer: ``detail`` calls
``order.orderDetail`` (``POST /order/orderDetail``, param ``shop_order_id``) and reads
``data.shop_order_detail``: ``doudian_open_id`` (the buyer, bound by a member in the mini-program),
``pay_amount``, ``pay_time``, ``sku_order_list[]`` (``code``: the merchant's sku code, else
``product_id``; ``item_num``; ``pay_amount``). Every call is ``POST <base>/<method with / for .>``
with the query ``app_key``, ``method``, ``v=2``, ``timestamp`` (unix s), ``sign_method``
(hmac-sha256), ``sign`` and ``access_token``; the body is ``param_json`` (keys sorted, no spaces);
``sign`` = lower hex HMAC-SHA256(app_secret, app_secret + "app_key" + app_key + "method" + method +
"param_json" + param_json + "timestamp" + timestamp + "v" + v + app_secret) (md5 of the same text
for ``sign_method=md5``). The access token comes from ``token.create`` (``grant_type``
``authorization_self``, ``shop_id``; answer ``data.access_token``, ``expires_in``) and is shared by
every process in Redis until shortly before it expires; an answer saying it expired, is unknown or
is another app's gets one fresh token and one retry. An answer whose ``code`` is not 10000, an
unreadable one, or none within ``timeout`` is ``PlatformUnavailable`` (the inbox marks the event
failed and the worker retries it).

Sources: fudiwei/DotNetCore.SKIT.FlurlHttpClient.ByteDance, under
``src/SKIT.FlurlHttpClient.ByteDance.DouyinShop/``: ``Extensions/DouyinShopClientEventExtensions.cs``
(push signature, op.jinritemai.com/docs/guide-docs/153/99), ``DouyinShopEvent.cs`` (tag, message
id, data), ``Events/Trade/TradePaidEvent.cs`` (message-docs/30/110), ``Events/Trade/TradeSuccessEvent.cs``
(30/112), ``Events/Trade/TradeCanceledEvent.cs`` (30/123), ``Events/Refund/RefundSuccessEvent.cs``
(31/121), ``Interceptors/DouyinShopRequestSignInterceptor.cs`` and ``Utilities/Internal/JsonUtility.cs``
(request signing, sorted param_json), ``DouyinShopResponse.cs`` (``code``, ``msg``, ``sub_code``,
``sub_msg``, ``log_id``), ``Models/Order/OrderDetailRequest.cs``, ``OrderDetailResponse.cs`` and
``OrderSearchListResponse.cs`` (api-docs/15/1144), ``Models/Token/TokenCreateRequest.cs`` and
``TokenCreateResponse.cs`` (guide-docs/9/21), ``DouyinShopEndpoints.cs`` (the base URL); its unit
tests' ``EventSamples/`` (tags 103, 106, 206). bububa/jinritemai-go ``message/model.go`` (the push as
``{tag, msg_id, data}`` with ``data`` a string, tags 101/103/106, the ack ``{"code": 0, "msg":
"success"}``), ``message/refund/refundSuccess.go`` (tag 206; ``refund_amount`` includes the postage).
The error codes (10000 success; 40003 ``isv.signature-invalid``, ``isv.access-token-expired``,
``isv.access-token-no-existed``, ``isv.access-token-invalid``) are those of op.jinritemai.com
guide-docs/212/1427 as the open SDKs list them; Douyin's own Python SDK refreshes the token on the
first two.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

import aiohttp
import orjson

from adapters import tokens
from loyalty_core.channels import Connected
from loyalty_core.errors import BadRequest, InvalidSignature, PlatformUnavailable
from loyalty_core.marketplace import MarketEvent, MarketLine

from .base import MOST_FEN, OpenApi, beijing_time, check_signature, digits, text_id, whole

KINDS = {"101": "paid", "103": "confirmed", "106": "closed", "206": "refunded"}
CHECK_TAG = "0"  # what Douyin sends when the push URL is configured
ACK = orjson.dumps({"code": 0, "msg": "success"})
SUCCESS = "10000"
TOKEN_REFUSED = {"isv.access-token-expired", "isv.access-token-no-existed", "isv.access-token-invalid"}
API_VERSION = "2"
SIGN_METHOD = "hmac-sha256"
MAX_MESSAGES = 100


@dataclass(frozen=True)
class Message:
    tag: str
    msg_id: str
    data: dict


# --- signatures --------------------------------------------------------------------------------
def push_sign(app_key: str, body: bytes, app_secret: str) -> str:
    return hashlib.md5(app_key.encode() + body + app_secret.encode()).hexdigest()


def param_json(params: dict) -> str:
    """The request body as Douyin signs it: keys sorted at every level, no spaces."""
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


def request_sign(app_key: str, app_secret: str, method: str, params: str, timestamp: str, version: str,
                 sign_method: str = SIGN_METHOD) -> str:
    plain = (f"{app_secret}app_key{app_key}method{method}param_json{params}timestamp{timestamp}"
             f"v{version}{app_secret}").encode()
    if sign_method == "md5":
        return hashlib.md5(plain).hexdigest()
    return hmac.new(app_secret.encode(), plain, hashlib.sha256).hexdigest()


# --- reading what Douyin sends ------------------------------------------------------------------
def _required(data: dict, name: str, longest: int = 64) -> str:
    text = text_id(data.get(name), longest)
    if not text:
        raise BadRequest(f"The message names no {name}")
    return text


def _fen(value) -> int:
    return whole(value, 0, MOST_FEN, "an amount in fen")


def _count(value) -> int:
    return whole(value, 1, 100_000, "a quantity")


def _when(value, default: datetime) -> datetime:
    """Unix seconds, or Beijing time ``yyyy-MM-dd HH:mm:ss``; ``default`` for anything else."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**11:
        return datetime.fromtimestamp(value, timezone.utc)
    return beijing_time(value, default)


def _data(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            data = orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            raise BadRequest("A message's data is not JSON") from None
        if isinstance(data, dict):
            return data
    raise BadRequest("A message's data is no JSON object")


def _tag(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return str(int(value))
    raise BadRequest(f"not a message tag: {str(value)[:20]!r}")


def messages(body: bytes) -> list[Message]:
    """The push's messages; BadRequest when the body is no Douyin push."""
    try:
        push = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The body is not a Douyin push (JSON)") from None
    if not isinstance(push, list) or not 1 <= len(push) <= MAX_MESSAGES:
        raise BadRequest(f"The body is not a Douyin push (an array of 1 to {MAX_MESSAGES} messages)")
    if not all(isinstance(message, dict) for message in push):
        raise BadRequest("A Douyin push holds messages ({tag, msg_id, data})")
    return [Message(_tag(m.get("tag")), text_id(m.get("msg_id", m.get("msgId")), 128), _data(m.get("data")))
            for m in push]


def _shop(data: dict) -> str:
    shop = data.get("shop_id")
    if isinstance(shop, bool) or not isinstance(shop, (int, str)) or not str(shop).isascii() \
            or not digits(str(shop)) or len(str(shop)) > 20:
        raise BadRequest("A message names no shop (shop_id)")
    return str(shop)


class Douyin:
    name = "douyin"
    base_url = "https://openapi-fxg.jinritemai.com"
    timeout = aiohttp.ClientTimeout(total=5)

    def url_check(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """The app (``app-id``) whose push URL Douyin is checking when the push holds only tag-0
        messages (they name no shop), else None."""
        found = messages(body)
        return headers.get("app-id", "")[:64] if all(m.tag == CHECK_TAG for m in found) else None

    def shop_of(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The one shop the push's messages name (several, or none: BadRequest)."""
        shops = {_shop(m.data) for m in messages(body) if m.tag != CHECK_TAG}
        if len(shops) != 1:
            raise BadRequest("A Douyin push names one shop; this one names " + ("several" if shops else "none"))
        return shops.pop()

    def verify(self, channel: Connected, body: bytes, headers: Mapping[str, str]) -> None:
        app_key, secret = channel.settings.get("app_key") or "", channel.secret("app_secret") or ""
        check_signature(push_sign(app_key, body, secret), headers.get("event-sign", ""), secret,
                        "event-sign does not match this shop's app_key and app_secret")
        if not hmac.compare_digest(headers.get("app-id", "").encode("utf-8", "replace"), app_key.encode()):
            raise InvalidSignature("The push is for another Douyin app (app-id)")

    def events(self, body: bytes, now: datetime) -> list[MarketEvent]:
        return [_event(message, now) for message in messages(body) if message.tag != CHECK_TAG]

    def ack(self, channel: Connected, body: bytes, headers: Mapping[str, str], now: datetime) -> tuple[bytes, str]:
        return ACK, "application/json"

    async def detail(self, channel: Connected, event: MarketEvent, api: OpenApi) -> MarketEvent:
        """The paid order's buyer, lines, amount and time, from ``order.orderDetail``."""
        data = await self.call(channel, api, "order.orderDetail", {"shop_order_id": event.order_id})
        try:
            return _completed(event, data)
        except BadRequest as unreadable:
            raise PlatformUnavailable(
                f"Douyin's order.orderDetail answer cannot be read: {unreadable.detail}") from None

    # --- the open API ----------------------------------------------------------------------
    async def call(self, channel: Connected, api: OpenApi, method: str, params: dict) -> dict:
        """``data`` of a successful call; a refused token is replaced once."""
        token = await self.access_token(channel, api)
        answer = await self._post(channel, api, method, params, token)
        if answer.get("sub_code") in TOKEN_REFUSED:
            await tokens.forget(api.cache.redis, _token_key(channel, api), token)
            answer = await self._post(channel, api, method, params, await self.access_token(channel, api))
        return _data_of(answer, method)

    async def access_token(self, channel: Connected, api: OpenApi) -> str:
        """The shop's token, shared by every process (``adapters.tokens``: one ``token.create`` at a time)."""
        return await tokens.shared(api.cache.redis, _token_key(channel, api), lambda: self._new_token(channel, api),
                                   lambda why: PlatformUnavailable(f"Douyin: {why}"))

    async def _new_token(self, channel: Connected, api: OpenApi) -> tuple[str, int]:
        shop = int(channel.external_id) if digits(channel.external_id) else channel.external_id
        answer = await self._post(channel, api, "token.create",
                                  {"code": "", "grant_type": "authorization_self", "shop_id": shop}, None)
        data = _data_of(answer, "token.create")
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or isinstance(expires_in, bool) or not isinstance(expires_in, int):
            raise PlatformUnavailable("Douyin's token.create answered no access_token and expires_in")
        return token, expires_in

    async def _post(self, channel: Connected, api: OpenApi, method: str, params: dict, token: str | None) -> dict:
        app_key, secret = channel.settings.get("app_key") or "", channel.secret("app_secret") or ""
        body, timestamp = param_json(params), str(int(api.clock.now().timestamp()))
        sign = request_sign(app_key, secret, method, body, timestamp, API_VERSION)
        query = {"app_key": app_key, "method": method, "v": API_VERSION, "timestamp": timestamp,
                 "sign_method": SIGN_METHOD, "sign": sign}
        if token is not None:
            query["access_token"] = token
        url = f"{api.base_url}/{method.replace('.', '/')}"
        try:
            async with api.http.post(url, params=query, data=body.encode(), timeout=self.timeout,
                                     headers={"Content-Type": "application/json;charset=UTF-8"}) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise PlatformUnavailable(f"Douyin's {method} did not answer ({type(error).__name__})") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            raise PlatformUnavailable(f"Douyin's {method} answered HTTP {status} without its JSON")
        return answer


def _token_key(channel: Connected, api: OpenApi) -> str:
    return api.cache.key(f"{{chain:{channel.chain_id}}}", "douyin", "token", channel.external_id)


def _data_of(answer: dict, method: str) -> dict:
    if str(answer.get("code")) != SUCCESS:
        said = answer.get("sub_msg") or answer.get("msg") or ""
        refused = f"{answer.get('code')} {answer.get('sub_code') or ''} {said}"
        raise PlatformUnavailable(f"Douyin's {method}: {refused}"[:240])
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PlatformUnavailable(f"Douyin's {method} answered no data")
    return data


def _event(message: Message, now: datetime) -> MarketEvent:
    data, kind = message.data, KINDS.get(message.tag, "other")
    order_id = text_id(data.get("p_id"), 64) if kind == "other" else _required(data, "p_id")
    event_id = message.msg_id or f"{message.tag}:{order_id}:{text_id(data.get('aftersale_id'), 64)}"
    if kind == "paid":
        return MarketEvent(event_id, kind, order_id, _when(data.get("pay_time"), now),
                           paid=_fen(data.get("pay_amount", 0)), needs_detail=True)
    if kind == "refunded":
        refunded = _fen(data.get("refund_amount")) - _fen(data.get("refund_post_amount", 0))
        return MarketEvent(event_id, kind, order_id, _when(data.get("success_time"), now),
                           refund_id=_required(data, "aftersale_id"), refunded=max(refunded, 0))
    at = {"confirmed": "complete_time", "closed": "cancel_time"}.get(kind, "update_time")
    return MarketEvent(event_id, kind, order_id, _when(data.get(at), now))


def _completed(event: MarketEvent, data: dict) -> MarketEvent:
    order = data.get("shop_order_detail")
    if not isinstance(order, dict):
        raise BadRequest("no shop_order_detail")
    if text_id(order.get("order_id"), 64) != event.order_id:
        raise BadRequest(f"the answer is of order {str(order.get('order_id'))[:40]!r}")
    items = order.get("sku_order_list")
    lines = tuple(_line(item) for item in items if isinstance(item, dict)) if isinstance(items, list) else ()
    return dataclasses.replace(event, buyer_id=text_id(order.get("doudian_open_id"), 128) or None, lines=lines,
                               paid=_fen(order.get("pay_amount", event.paid)),
                               occurred_at=_when(order.get("pay_time"), event.occurred_at), needs_detail=False)


def _line(item: dict) -> MarketLine:
    sku = text_id(item.get("code"), 64) or text_id(item.get("product_id"), 64) or "ITEM"
    return MarketLine(sku, _count(item.get("item_num", 1)), _fen(item.get("pay_amount", 0)))
