"""Eleme retail as the gateway meets it (adapters/marketplaces/eleme.py cites the docs and SDKs):

- ``ElemeShop``: a partner source sending its pushes, form-encoded and signed as Eleme signs them
  (uppercase md5 of the sorted ``k=v`` of body, cmd, encrypt, secret, source, ticket, timestamp,
  version); every push gets a fresh ticket, as the SDKs make one per message;
- ``FakeEleme``: the open API (``POST /`` with the same signed envelope) answering ``order.get`` with
  the envelope Eleme answers (``body.errno`` 0, ``body.data``), refusing a wrong sign, recording the
  calls it took, and failing on request.

The errno values of a refusal here are this fake's own (the docs at hand give no list): a test only
needs "not 0".
"""
from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qsl, urlencode

import orjson
from aiohttp import web

from adapters.marketplaces.eleme import sign

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class ElemeShop:
    """One partner source (our channel's shop_id) and its secret."""

    def __init__(self, source: str, secret: str) -> None:
        self.source, self.secret = source, secret
        self.channel_id: int | None = None

    def connection(self) -> dict:
        return {"platform": "eleme", "shop_id": self.source, "secret": self.secret}

    def push(self, cmd: str, body: dict | str, secret: str | None = None, ticket: str | None = None,
             timestamp: int | None = None) -> tuple[dict, bytes]:
        """Headers and form body of one push (``secret``: sign with another one, as a forger would;
        ``body`` as text: sent as it is)."""
        fields = {"cmd": cmd, "body": body if isinstance(body, str) else orjson.dumps(body).decode(),
                  "source": self.source, "ticket": ticket or str(uuid.uuid4()).upper(),
                  "timestamp": str(timestamp or int(time.time())), "version": "3", "encrypt": ""}
        fields["sign"] = sign(fields, secret or self.secret)
        return dict(FORM), urlencode(fields).encode()

    def created(self, order_id: str, **more):
        return self.push("order.create", {"order_id": order_id, "platform_shop_id": "5" + self.source[:8]}, **more)

    def status(self, order_id: str, status: int, **more):
        return self.push("order.status.push", {"order_id": order_id, "status": status,
                                               "platform_shop_id": "5" + self.source[:8]}, **more)

    def completed(self, order_id: str, **more):
        return self.status(order_id, 9, **more)

    def cancelled(self, order_id: str, **more):
        return self.status(order_id, 10, **more)

    def user_cancel(self, order_id: str, kind: int, refund_order_id: str = "", **more):
        return self.push("order.user.cancel", {"order_id": order_id, "type": kind, "cancel_type": 2,
                                               "cancel_reason": "不想要了", "refund_order_id": refund_order_id}, **more)

    def part_refund(self, order_id: str, refund_id: str, fen: int | str, status: int = 20, **more):
        return self.push("order.partrefund.push", {
            "order_id": order_id, "refund_id": refund_id, "refund_price": fen, "status": status, "type": 2,
            "reason": "商户同意退单", "reason_type": "1202",
            "refund_products": [{"custom_sku_id": "SKU-1", "number": 1, "total_refund": fen, "shop_ele_refund": 0}]},
            **more)


def order_data(order_id: str, user_fee: int, phone: str = "", user_id: str = "", products=None,
               is_private: int = 0, pay_status: int = 2, create_time: int | None = None, source: str = "") -> dict:
    """``order.get``'s data for one order, in Eleme's shape (products: a list of baskets)."""
    products = products or [("SKU-1", 1, user_fee)]
    return {
        "source": source,
        "shop": {"id": "S01", "baidu_shop_id": "2233" + order_id[-4:], "name": "门店"},
        "order": {"order_id": order_id, "eleme_order_id": order_id, "status": 5, "pay_type": 2,
                  "pay_status": pay_status, "is_private": is_private, "user_fee": user_fee, "total_fee": user_fee,
                  "shop_fee": user_fee, "send_fee": 0, "package_fee": 0, "discount_fee": 0,
                  "create_time": str(create_time or int(time.time())), "order_flag": 0},
        "user": {"user_id": user_id, "name": "顾客", "phone": phone, "privacy_phone": (phone[:3] + "****" + phone[7:11])
                 if phone else "", "gender": 1, "address": "上地 彩虹大厦"},
        "products": [[{"custom_sku_id": sku, "baidu_product_id": f"9{index}{order_id[-6:]}", "product_name": sku,
                       "product_amount": qty, "product_price": fen // max(qty, 1), "product_fee": fen,
                       "product_subsidy": {"discount": 0}, "total_fee": fen, "upc": ""}
                      for index, (sku, qty, fen) in enumerate(products)]],
    }


class FakeEleme:
    """The open API of Eleme retail, for the sources it knows."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.orders: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []  # (cmd, body) of each signed call taken
        self.failures: list[str] = []           # what the next calls do instead: "errno" or "http"
        self.base_url = ""

    def add_shop(self, shop: ElemeShop) -> None:
        self.secrets[shop.source] = shop.secret

    def add_order(self, order_id: str, user_fee: int, **fields) -> None:
        self.orders[order_id] = order_data(order_id, user_fee, **fields)

    def fail(self, times: int = 1, how: str = "errno") -> None:
        self.failures += [how] * times

    def called(self, cmd: str, order_id: str | None = None) -> int:
        return sum(1 for c, body in self.calls if c == cmd and (order_id is None or body.get("order_id") == order_id))

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._api)
        return app

    async def _api(self, request: web.Request) -> web.Response:
        fields = dict(parse_qsl((await request.read()).decode(), keep_blank_values=True))
        source, cmd = fields.get("source", ""), fields.get("cmd", "")
        secret = self.secrets.get(source)
        if secret is None or fields.get("sign") != sign(fields, secret):
            return self._answer(fields, 1, "sign error", "")
        body = orjson.loads(fields.get("body") or "{}")
        self.calls.append((cmd, body))
        if self.failures:
            if self.failures.pop(0) == "http":
                return web.Response(status=503, text="busy")
            return self._answer(fields, 20253, "系统繁忙", "")
        if cmd != "order.get":
            return self._answer(fields, 1, f"unknown cmd {cmd}", "")
        found = self.orders.get(str(body.get("order_id")))
        if found is None:
            return self._answer(fields, 1, "订单不存在", "")
        return self._answer(fields, 0, "success", found)

    def _answer(self, fields: dict, errno: int, error: str, data) -> web.Response:
        source, secret = fields.get("source", ""), self.secrets.get(fields.get("source", ""), "")
        body = {"errno": errno, "error": error, "data": data}
        envelope = {"body": orjson.dumps(body).decode(), "cmd": f"resp.{fields.get('cmd', '')}", "encrypt": "",
                    "source": source, "ticket": fields.get("ticket", ""), "timestamp": str(int(time.time())),
                    "version": "3"}
        answer = {**envelope, "body": body, "sign": sign(envelope, secret), "timestamp": int(envelope["timestamp"])}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
