"""Youzan's message push as Youzan sends it: the JSON body (``msg`` URL-encoded JSON) and the
``Event-Sign`` header, md5 hex of client_id + raw body + client_secret (adapters/marketplaces/youzan.py
cites the docs); and Youzan cloud's member-points API, which the worker pushes totals to."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

import orjson
from aiohttp import web


class YouzanShop:
    """One Youzan shop of a Youzan cloud app, sending its pushes."""

    def __init__(self, kdt_id: str, client_id: str, client_secret: str) -> None:
        self.kdt_id, self.client_id, self.client_secret = kdt_id, client_id, client_secret

    @classmethod
    def any(cls) -> "YouzanShop":
        """A shop of its own (a random kdt_id, client_id and secret)."""
        return cls(str(secrets.randbelow(10**8) + 10**7), secrets.token_hex(9), secrets.token_hex(16))

    def connection(self) -> dict:
        return {"platform": "youzan", "shop_id": self.kdt_id, "client_id": self.client_id,
                "client_secret": self.client_secret}

    def push(self, kind: str, order_id: str, msg: dict, msg_id: str | None = None, status: str = "",
             secret: str | None = None) -> tuple[dict, bytes]:
        """The headers and body of one push (``secret``: sign with another secret, as a forger would)."""
        body = orjson.dumps({
            "client_id": self.client_id, "kdt_id": int(self.kdt_id), "kdt_name": "有赞的店", "id": order_id,
            "type": kind, "status": status, "msg": quote(orjson.dumps(msg).decode()), "msg_id": msg_id or str(uuid.uuid4()),
            "version": int(time.time() * 1000), "sendCount": 0, "mode": 1, "test": False,
            "sign": hashlib.md5((self.client_id + "msg" + self.client_secret).encode()).hexdigest()})
        signature = hashlib.md5(self.client_id.encode() + body + (secret or self.client_secret).encode()).hexdigest()
        return {"Event-Sign": signature, "Event-Type": kind, "Content-Type": "application/json"}, body

    def paid(self, order_id: str, yuan: str, phone: str | None = None, open_id: str | None = None,
             items: list[tuple[str, int, str]] | None = None, pay_time: str = "2026-12-07 10:00:00", **more):
        items = items or [("SKU-1", 1, yuan)]
        msg = {"full_order_info": {
            "order_info": {"tid": order_id, "status": "WAIT_SELLER_SEND_GOODS", "pay_time": pay_time,
                           "created": pay_time},
            "buyer_info": {"buyer_phone": phone or "", "yz_open_id": open_id or "", "fans_id": 0},
            "pay_info": {"payment": yuan, "total_fee": yuan, "post_fee": "0.00"},
            "orders": [{"oid": f"{order_id}-{i}", "outer_item_id": sku, "title": sku, "num": num, "payment": paid}
                       for i, (sku, num, paid) in enumerate(items)]}}
        return self.push("trade_TradeBuyerPay", order_id, msg, status="WAIT_SELLER_SEND_GOODS", **more)

    def success(self, order_id: str, **more):
        return self.push("trade_TradeSuccess", order_id, {"tid": order_id, "update_time": "2026-12-09 10:00:00"},
                         status="TRADE_SUCCESS", **more)

    def refund(self, order_id: str, refund_id: str, yuan: str, **more):
        return self.push("trade_refund_RefundSuccess", order_id, {
            "tid": order_id, "oids": "", "refund_id": refund_id, "refunded_fee": yuan, "refund_type": "REFUND_ONLY",
            "update_time": "2026-12-08 10:00:00"}, **more)

    def close(self, order_id: str, **more):
        return self.push("trade_TradeClose", order_id, {"tid": order_id, "update_time": "2026-12-07 10:30:00"},
                         status="TRADE_CLOSED", **more)


@dataclass
class FakeYouzanCloud:
    """Youzan cloud's open API for member points: ``POST /auth/token`` (silent grant per shop) and
    ``POST /api/youzan.crm.customer.points.sync/4.0.0?access_token=`` (sets an account's total; a
    ``biz_value`` seen before is the same operation again: answered, not applied) (the adapter,
    adapters/marketplaces/youzan_points.py, cites the docs)."""

    apps: dict[str, tuple[str, str]] = field(default_factory=dict)  # client_id → (client_secret, kdt_id)
    tokens: dict[str, str] = field(default_factory=dict)            # access_token → kdt_id
    points: dict[tuple[str, str], int] = field(default_factory=dict)  # (kdt_id, yz_open_id) → points
    syncs: list[dict] = field(default_factory=list)                 # every sync applied
    duplicates: int = 0
    token_fetches: int = 0
    expire_tokens: bool = False   # the next sync finds its token expired (4203), as after a revocation
    down: bool = False            # every call answers 503
    base_url: str = ""
    _seen: set = field(default_factory=set)

    def shop(self, shop: YouzanShop) -> None:
        self.apps[shop.client_id] = (shop.client_secret, shop.kdt_id)

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/auth/token", self.token)
        app.router.add_post("/api/youzan.crm.customer.points.sync/4.0.0", self.sync)
        return app

    async def token(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        body = orjson.loads(await request.read())
        secret, kdt_id = self.apps.get(body.get("client_id"), (None, None))
        if secret is None or body.get("client_secret") != secret or str(body.get("grant_id")) != kdt_id \
                or body.get("authorize_type") != "silent":
            return web.json_response({"success": False, "code": 40001, "message": "client_id or secret invalid"})
        self.token_fetches += 1
        token = uuid.uuid4().hex
        self.tokens[token] = kdt_id
        return web.json_response({"success": True, "code": 200, "message": None, "data": {
            "access_token": token, "expires": int((time.time() + 7 * 86400) * 1000), "scope": "points"}})

    async def sync(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        kdt_id = self.tokens.get(request.query.get("access_token", ""))
        if self.expire_tokens:
            self.expire_tokens, self.tokens = False, {}
            kdt_id = None
        if kdt_id is None:
            return web.json_response({"gw_err_resp": {"err_code": 4203, "err_msg": "access_token已过期"}})
        body = orjson.loads(await request.read())
        user, points, biz = body.get("user") or {}, body.get("points"), body.get("biz_value")
        if user.get("account_type") != 4 or not user.get("account_id") or not isinstance(points, int) or points < 0:
            return web.json_response({"success": False, "code": 141500101, "message": "参数错误"})
        if biz and (kdt_id, user["account_id"], biz) in self._seen:
            self.duplicates += 1
        else:
            self._seen.add((kdt_id, user["account_id"], biz))
            self.points[(kdt_id, user["account_id"])] = points
            self.syncs.append({"kdt_id": kdt_id, **body})
        return web.json_response({"success": True, "code": 200, "message": "successful", "data": {"is_success": True}})


def main() -> None:
    """``make run``'s Youzan cloud: the demo shop's token and points syncs, on loopback."""
    import argparse

    from gateway.demo import DEMO_SHOP

    parser = argparse.ArgumentParser(description="a fake Youzan cloud on loopback (the demo shop's points)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    cloud = FakeYouzanCloud()
    cloud.shop(YouzanShop(DEMO_SHOP["shop_id"], DEMO_SHOP["client_id"], DEMO_SHOP["client_secret"]))
    web.run_app(cloud.application(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
