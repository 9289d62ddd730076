"""Taobao/Tmall (淘宝/天猫) through TMC, the platform's message queue, pulled by the worker.

There is no push to answer: the worker calls the TOP API ``taobao.tmc.messages.consume`` for each
app (``app_key``) of the connected shops, keeps every message in its shop's inbox (applied), and
only then calls ``taobao.tmc.messages.confirm`` with the ids it kept. TMC hands out again what was
not confirmed, with the same message ``id``: a batch delivered twice, or a worker killed between
keeping a batch and confirming it, finds those ids in the inbox and changes nothing.

A TOP call is a form POST to ``/router/rest`` with ``method``, ``app_key``, ``timestamp``
(``yyyy-MM-dd HH:mm:ss``, Beijing time), ``format=json``, ``v=2.0``, ``sign_method`` and the
call's own parameters; ``sign`` is, over the parameters sorted by name and joined as
name+value: ``md5`` → MD5(secret + joined + secret), ``hmac-sha256`` → HMAC-SHA256(secret, joined),
upper-case hex. Errors come as ``{"error_response": {"code", "msg", "sub_code", "sub_msg"}}``.

A message is ``{id, topic, user_id (the seller: our shop), user_nick, pub_time, pub_app_key,
content}`` with ``content`` the topic's JSON:

| topic | core event | from ``content`` |
|---|---|---|
| ``taobao_trade_TradeBuyerPay`` | paid | ``tid``, ``payment`` (yuan), ``post_fee`` (postage: earns nothing), ``buyer_open_uid`` |
| ``taobao_trade_TradeSuccess`` | confirmed | ``tid`` |
| ``taobao_trade_TradeClose`` | closed | ``tid`` (a paid order closed by its refunds is clawed back by those) |
| ``taobao_refund_RefundSuccess`` | refunded | ``tid``, ``refund_id``, ``refund_fee`` (yuan), ``modified`` |

The buyer is ``buyer_open_uid`` (the buyer's id as the app sees it; ``buyer_nick`` is masked and
no identity): Taobao gives no phone, so a buyer earns once they bind that id in the mini-program.

Sources: the TOP API docs as the SDKs cite them (``taobao.tmc.messages.consume``, docId 21986:
``group_name``, ``quantity`` 10-200; ``taobao.tmc.messages.confirm``, docId 21985:
``s_message_ids``, ``f_message_ids``); bububa/opentaobao's ``TaobaoTmcMessagesConsumeAPIResponse``
(``tmc_messages_consume_response.messages.tmc_message[]``); the TOP message declarations of
``Taobao.Trade.TradeBuyerPay`` and ``Taobao.Refund.RefundSuccess`` (``buyer_open_uid``,
``payment``, ``post_fee``, ``refund_id``, ``refund_fee``, ``refund_phase``); TOP request signing
as the official SDKs implement it (``TopClient.generateSign``, ``sign_method`` md5/hmac/hmac-sha256).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import aiohttp
import orjson
import structlog

from loyalty_core import channels, inbox
from loyalty_core.channels import Connected
from loyalty_core.chains import get_program
from loyalty_core.crypto import Vault
from loyalty_core.errors import BadRequest, PlatformUnavailable
from loyalty_core.marketplace import MarketEvent, MarketLine, Shop

from .base import BEIJING, OpenApi, beijing_time, digits, text_id, yuan

BASE_URL = "https://eco.taobao.com/router/rest"
TOPICS = {"taobao_trade_TradeBuyerPay": "paid", "taobao_trade_TradeSuccess": "confirmed",
          "taobao_trade_TradeClose": "closed", "taobao_refund_RefundSuccess": "refunded"}
BATCH = 100  # messages per consume (TOP allows 10-200)
INVALID_SIGNATURE = "25"  # TOP's code for a request signed with another secret
log = structlog.get_logger("taobao")


def sign(params: dict[str, str], secret: str, method: str = "md5") -> str:
    joined = "".join(f"{name}{params[name]}" for name in sorted(params) if name != "sign" and params[name] != "")
    if method == "md5":
        return hashlib.md5((secret + joined + secret).encode()).hexdigest().upper()
    if method == "hmac-sha256":
        return hmac.new(secret.encode(), joined.encode(), hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unknown sign_method {method!r}")


@dataclass(frozen=True)
class Top:
    """One TOP app (``app_key``/``app_secret``) calling the API."""

    api: OpenApi
    app_key: str
    app_secret: str

    async def call(self, method: str, **params: str) -> dict:
        now = self.api.clock.now().astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        form = {"method": method, "app_key": self.app_key, "timestamp": now, "format": "json", "v": "2.0",
                "sign_method": "md5", **params}
        form["sign"] = sign(form, self.app_secret)
        try:
            async with self.api.http.post(self.api.base_url, data=form) as response:
                answer = await response.json(content_type=None, loads=orjson.loads)
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as error:
            raise PlatformUnavailable(f"TOP {method}: {type(error).__name__}") from None
        if not isinstance(answer, dict) or "error_response" in answer:
            error = answer.get("error_response", {}) if isinstance(answer, dict) else {}
            raise TopRefused(error.get("code"), f"TOP {method}: {error.get('code')} {error.get('msg')} "
                                                f"{error.get('sub_code') or ''}".strip()[:300])
        return answer


class TopRefused(PlatformUnavailable):
    def __init__(self, code, detail: str) -> None:
        super().__init__(detail)
        self.top_code = code


def event_of(message: dict, now: datetime) -> MarketEvent:
    """One TMC message as the core's event; BadRequest when it cannot be read."""
    try:
        content = orjson.loads(message.get("content") or "{}")
    except (orjson.JSONDecodeError, TypeError):
        raise BadRequest("the message's content is not JSON") from None
    if not isinstance(content, dict):
        raise BadRequest("the message's content is no object")
    event_id = text_id(message.get("id"), 32)
    order_id = text_id(content.get("tid"), 32)
    if not digits(event_id) or not digits(order_id):
        raise BadRequest("a TMC message without its id or the order's tid")
    kind = TOPICS.get(str(message.get("topic")), "other")
    at = beijing_time(content.get("modified") or message.get("pub_time"), now)
    if kind == "paid":
        paid = yuan(content.get("payment") or "0")
        goods = max(paid - yuan(content.get("post_fee") or "0"), 0)
        return MarketEvent(event_id, kind, order_id, at, buyer_id=text_id(content.get("buyer_open_uid"), 128) or None,
                           lines=(MarketLine("TAOBAO", 1, goods),), paid=paid)
    if kind == "refunded":
        return MarketEvent(event_id, kind, order_id, at, refund_id=text_id(content.get("refund_id") or event_id, 64),
                           refunded=yuan(content.get("refund_fee") or "0"))
    return MarketEvent(event_id, kind, order_id, at)


class TmcPull:
    """The worker's pull of every connected app's TMC messages, at most every ``every``; safe beside
    other workers (TMC hands a message to one consumer; one handed twice is found in the inbox)."""

    def __init__(self, api: Callable[[str], OpenApi], vault: Vault, every: timedelta = timedelta(seconds=5)) -> None:
        self.api, self.vault, self.every = api, vault, every
        self.next_run: datetime | None = None

    async def run_due(self, now: datetime) -> int:
        if self.next_run is not None and now < self.next_run:
            return 0
        self.next_run = now + self.every
        kept = 0
        for app_key, shops in _by_app(await channels.all_of("taobao", self.vault)).items():
            try:
                kept += await self.pull(app_key, shops, now)
            except PlatformUnavailable as error:
                log.warning("taobao.tmc_unavailable", app_key=app_key, error=error.detail)
        return kept

    async def pull(self, app_key: str, shops: dict[str, Connected], now: datetime) -> int:
        """One batch of one app: consumed, each message kept in its shop's inbox, then confirmed."""
        top, answer = await self._consume(app_key, shops)
        shops = {seller: shop for seller, shop in shops.items() if shop.secret("app_secret") == top.app_secret}
        messages = (((answer.get("tmc_messages_consume_response") or {}).get("messages") or {})
                    .get("tmc_message") or [])
        done = [await self.keep(message, shops, now) for message in messages if isinstance(message, dict)]
        confirmed = [str(message_id) for message_id in done if message_id is not None]
        if confirmed:
            await top.call("taobao.tmc.messages.confirm", s_message_ids=",".join(confirmed))
        return len(confirmed)

    async def _consume(self, app_key: str, shops: dict[str, Connected]) -> tuple[Top, dict]:
        """A batch, consumed with the app's secret: the shops of an app may hold different ones (one
        chain's stale or wrong secret must not stop another chain's pull), so each is tried until
        TOP takes one (25: invalid signature)."""
        secrets = list(dict.fromkeys(shop.secret("app_secret") or "" for shop in shops.values()))
        for secret in secrets:
            top = Top(self.api("taobao"), app_key, secret)
            try:
                return top, await top.call("taobao.tmc.messages.consume", quantity=str(BATCH))
            except TopRefused as refused:
                if str(refused.top_code) != INVALID_SIGNATURE or secret == secrets[-1]:
                    raise
        raise PlatformUnavailable(f"no secret for app {app_key}")

    async def keep(self, message: dict, shops: dict[str, Connected], now: datetime) -> object:
        """The message stored and applied in its shop's inbox; its id, to confirm (also for a
        message of a seller no chain connected, or one that cannot be read: logged, not kept)."""
        channel = shops.get(str(message.get("user_id")))
        try:
            event = event_of(message, now)
        except BadRequest as unreadable:
            log.warning("taobao.unreadable_message", message_id=message.get("id"), error=unreadable.detail)
            return message.get("id")
        if channel is None:
            log.info("taobao.message_of_no_shop", seller=message.get("user_id"), topic=message.get("topic"))
            return message.get("id")
        await inbox.receive(Shop.of(channel), [event], orjson.dumps(message).decode(),
                            await get_program(channel.chain_id), self.vault, now)
        return message.get("id")


def _by_app(shops: list[Connected]) -> dict[str, dict[str, Connected]]:
    """The connected Taobao shops (of every chain) by the app that pulls their messages, each by its
    seller id. A message goes to its seller's shop only if that shop holds the secret that consumed
    it: a shop connected with a wrong secret receives nothing until it is mended."""
    apps: dict[str, dict[str, Connected]] = {}
    for shop in shops:
        apps.setdefault(shop.settings.get("app_key") or "", {})[shop.external_id] = shop
    apps.pop("", None)
    return apps
