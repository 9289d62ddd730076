"""TOP's ``/router/rest`` as the TMC API answers it: one queue of messages per app, handed out by
``taobao.tmc.messages.consume`` until ``taobao.tmc.messages.confirm`` names them (an unconfirmed
message comes again at the next consume, with the same id), every call's ``sign`` checked as TOP
checks it (adapters/marketplaces/taobao.py cites the docs)."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
from dataclasses import dataclass, field

import orjson
from aiohttp import web

FIRST_ID = 7104300007405429232  # TMC message ids are 64-bit


def top_sign(form: dict[str, str], secret: str) -> str:
    """TOP's own check, written here apart from the adapter's: the parameters but ``sign``, sorted
    by name, each name then value; md5 wraps them in the secret, hmac-sha256 keys with it."""
    text = "".join(name + form[name] for name in sorted(form) if name != "sign" and form[name])
    if form.get("sign_method") == "hmac-sha256":
        return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(f"{secret}{text}{secret}".encode()).hexdigest().upper()


@dataclass
class Seller:
    """A Taobao/Tmall seller (our shop) whose trades make TMC messages."""

    user_id: str
    nick: str = "官方旗舰店"

    def message(self, topic: str, content: dict, message_id: int) -> dict:
        return {"id": message_id, "topic": topic, "user_id": int(self.user_id), "user_nick": self.nick,
                "pub_app_key": "12497914", "pub_time": "2026-12-07 10:00:00",
                "content": orjson.dumps({"seller_nick": self.nick, **content}).decode()}


@dataclass
class FakeTop:
    """TOP for the apps it knows (``apps``: app_key → app_secret)."""

    apps: dict[str, str] = field(default_factory=dict)
    queues: dict[str, list[dict]] = field(default_factory=dict)   # app_key → unconfirmed messages, in order
    confirmed: list[int] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)       # method → TOP error code to answer once
    hold_confirm: asyncio.Event | None = None                     # while set, a confirm waits for it and is lost
    confirm_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(FIRST_ID))

    def app(self, app_key: str, app_secret: str) -> None:
        self.apps[app_key] = app_secret
        self.queues.setdefault(app_key, [])

    def publish(self, app_key: str, seller: Seller, topic: str, **content) -> int:
        message_id = next(self._ids)
        self.queues[app_key].append(seller.message(topic, content, message_id))
        return message_id

    def paid(self, app_key: str, seller: Seller, tid: str, yuan: str, open_uid: str | None = None,
             post_fee: str = "0.00") -> int:
        return self.publish(app_key, seller, "taobao_trade_TradeBuyerPay", tid=int(tid), oid=int(tid) + 1,
                            payment=yuan, post_fee=post_fee, buyer_nick="t**1", buyer_open_uid=open_uid or "",
                            status="WAIT_SELLER_SEND_GOODS", type="guarantee_trade")

    def success(self, app_key: str, seller: Seller, tid: str) -> int:
        return self.publish(app_key, seller, "taobao_trade_TradeSuccess", tid=int(tid), oid=int(tid) + 1,
                            buyer_nick="t**1", status="TRADE_FINISHED", type="guarantee_trade")

    def refund(self, app_key: str, seller: Seller, tid: str, refund_id: str, yuan: str) -> int:
        return self.publish(app_key, seller, "taobao_refund_RefundSuccess", tid=int(tid), oid=int(tid) + 1,
                            refund_id=int(refund_id), refund_fee=yuan, refund_phase="onsale", bill_type="refund_bill",
                            buyer_nick="t**1", modified="2026-12-08 10:00:00")

    def unconfirmed(self, app_key: str) -> list[int]:
        return [m["id"] for m in self.queues.get(app_key, [])]

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/router/rest", self.rest)
        return app

    async def rest(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items()}
        self.calls.append(form)
        method, app_key = form.get("method"), form.get("app_key", "")
        if app_key not in self.apps:
            return self._error(29, "Invalid app Key")
        if form.get("sign") != top_sign(form, self.apps[app_key]):
            return self._error(25, "Invalid signature")
        if code := self.fail_next.pop(method or "", None):
            return self._error(code, "Remote service error" if code == 15 else "App Call Limited")
        if method == "taobao.tmc.messages.consume":
            return self._consume(app_key, int(form.get("quantity") or 100))
        if method == "taobao.tmc.messages.confirm":
            return await self._confirm(app_key, form.get("s_message_ids", ""))
        return self._error(22, "Invalid method")

    def _consume(self, app_key: str, quantity: int) -> web.Response:
        batch = self.queues[app_key][:min(max(quantity, 10), 200)]
        body: dict = {"request_id": "fake"}
        if batch:
            body["messages"] = {"tmc_message": batch}
        return web.json_response({"tmc_messages_consume_response": body}, dumps=lambda o: orjson.dumps(o).decode())

    async def _confirm(self, app_key: str, ids: str) -> web.Response:
        self.confirm_arrived.set()
        if self.hold_confirm is not None:  # as if its sender died before it reached TMC: never applied
            await self.hold_confirm.wait()
            return web.Response(status=503)
        done = {int(i) for i in ids.split(",") if i.strip().isdigit()}
        self.confirmed += sorted(done)
        self.queues[app_key] = [m for m in self.queues[app_key] if m["id"] not in done]
        return web.json_response({"tmc_messages_confirm_response": {"is_success": True}})

    @staticmethod
    def _error(code: int, msg: str) -> web.Response:
        return web.json_response({"error_response": {"code": code, "msg": msg, "request_id": "fake"}})
