"""Douyin shop (抖店) as the gateway meets it: a shop sending its message pushes, and a fake open API
on loopback (adapters/marketplaces/douyin.py cites the docs and SDKs both follow).

``DouyinShop`` builds messages ``{"tag", "msg_id", "data": "<JSON text>"}`` and signs a push as
Douyin does: headers ``app-id`` (the app_key) and ``event-sign``, md5 hex of app_key + raw body +
app_secret.

``FakeDouyinOpenApi`` serves, with Douyin's paths, query signing and answers
``{code, msg, sub_code, sub_msg, log_id, data}`` (10000 success):

- ``POST /token/create`` ``{code, grant_type: "authorization_self", shop_id}`` →
  ``data {access_token, expires_in, refresh_token, scope, shop_id, shop_name}``; 50001
  ``dop.token-generate-failed:no-authorization`` for a shop the app may not act for, 50001
  ``…:grant-type-invalid`` for another grant type.
- ``POST /order/orderDetail?access_token=`` ``{shop_order_id}`` → ``data {shop_order_detail}``;
  40001 ``isv.access-token-missing``, 40003 ``isv.access-token-no-existed`` (a token it never gave),
  ``isv.access-token-expired`` (``expire_tokens``), ``isv.access-token-invalid`` (another app's);
  50002 for an order it does not hold.

Every call must carry ``app_key``, ``method`` (the path with ``.`` for ``/``), ``v=2``,
``timestamp``, ``sign_method`` (``md5`` or ``hmac-sha256``) and ``sign`` over the raw body, checked
exactly as Douyin checks it: 40001 ``isv.signature-missing`` / ``isv.app-id-missing``, 40003
``isv.signature-invalid``, ``isv.app-id-invalid`` for an unknown app. (The timestamp's age is not
checked: the gateway's clock is the test's.) ``calls`` records each call's method and params in
order; ``fail(method, code, sub_code, times)`` makes the next calls answer an error and
``hang(method, seconds, times)`` makes them answer late.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field

import orjson
from aiohttp import web

SUCCESS = 10000


def push_sign(app_key: str, body: bytes, app_secret: str) -> str:
    return hashlib.md5(app_key.encode() + body + app_secret.encode()).hexdigest()


def request_sign(app_key: str, app_secret: str, method: str, body: str, timestamp: str, version: str,
                 sign_method: str) -> str | None:
    plain = (f"{app_secret}app_key{app_key}method{method}param_json{body}timestamp{timestamp}"
             f"v{version}{app_secret}").encode()
    if sign_method == "md5":
        return hashlib.md5(plain).hexdigest()
    if sign_method == "hmac-sha256":
        return hmac.new(app_secret.encode(), plain, hashlib.sha256).hexdigest()
    return None


class DouyinShop:
    """One Douyin shop and its self-use open platform app, sending the shop's pushes."""

    def __init__(self, shop_id: str, app_key: str, app_secret: str) -> None:
        self.shop_id, self.app_key, self.app_secret = shop_id, app_key, app_secret
        self.channel_id: int | None = None

    def connection(self) -> dict:
        return {"platform": "douyin", "shop_id": self.shop_id, "app_key": self.app_key, "app_secret": self.app_secret}

    def message(self, tag: int | str, data: dict, msg_id: str | None = None) -> dict:
        return {"tag": str(tag), "msg_id": msg_id or f"{uuid.uuid4().int % 10**19}::{tag}:{secrets.randbelow(10**9)}",
                "data": orjson.dumps(data).decode()}

    def paid(self, order_id: str, pay_amount: int, pay_time: int, **more) -> dict:
        """``doudian_trade_TradePaid`` (tag 101): the order, not its buyer."""
        return self.message(101, {"p_id": order_id, "s_ids": [f"{order_id}1"], "shop_id": int(self.shop_id),
                                  "order_status": 2, "order_type": 0, "pay_type": 1, "biz": 2,
                                  "pay_time": pay_time, "pay_amount": pay_amount}, **more)

    def success(self, order_id: str, complete_time: int = 1_800_000_000, **more) -> dict:
        """``doudian_trade_TradeSuccess`` (tag 103): the buyer confirmed receipt."""
        return self.message(103, {"p_id": order_id, "s_ids": [f"{order_id}1"], "shop_id": int(self.shop_id),
                                  "order_status": 5, "order_type": 0, "complete_time": complete_time, "biz": 2},
                            **more)

    def canceled(self, order_id: str, **more) -> dict:
        """``doudian_trade_TradeCanceled`` (tag 106)."""
        return self.message(106, {"p_id": order_id, "s_ids": [f"{order_id}1"], "shop_id": int(self.shop_id),
                                  "order_status": 4, "order_type": 0, "biz": 2, "cancel_time": 1_800_000_000,
                                  "cancel_reason": "买家取消"}, **more)

    def refund(self, order_id: str, aftersale_id: str, refund_amount: int, refund_post_amount: int = 0,
               **more) -> dict:
        """``doudian_refund_RefundSuccess`` (tag 206): ``refund_amount`` includes ``refund_post_amount``."""
        return self.message(206, {"p_id": order_id, "s_id": f"{order_id}1", "shop_id": int(self.shop_id),
                                  "aftersale_id": aftersale_id, "aftersale_status": 12, "aftersale_type": 1,
                                  "refund_amount": refund_amount, "refund_post_amount": refund_post_amount,
                                  "refund_voucher_num": 0, "reason_code": 15, "success_time": 1_800_000_000},
                            **more)

    def check(self) -> dict:
        """The message Douyin sends to a push URL being configured (tag 0, no shop)."""
        return self.message(0, {}, msg_id="0")

    def push(self, messages: list[dict] | dict, secret: str | None = None, app_key: str | None = None,
             raw: bytes | None = None) -> tuple[dict, bytes]:
        """Headers and body of one push (``secret``: signed with another secret, as a forger would;
        ``app_key``: named and signed as another app; ``raw``: this body, signed)."""
        body = raw if raw is not None else orjson.dumps(messages if isinstance(messages, list) else [messages])
        key = app_key or self.app_key
        return {"app-id": key, "event-sign": push_sign(key, body, secret or self.app_secret),
                "Content-Type": "application/json"}, body


def shop_order(order_id: str, shop_id: str, open_id: str, lines: list[tuple[str, int, int]], pay_time: int,
               post_amount: int = 0) -> dict:
    """``shop_order_detail`` as order.orderDetail answers it: ``lines`` are (sku code, qty, fen paid)."""
    goods = sum(paid for _, _, paid in lines)
    return {"order_id": order_id, "order_level": 2, "shop_id": int(shop_id), "shop_name": "抖店的店",
            "order_status": 2, "order_status_desc": "备货中", "order_type": 0, "biz": 2, "pay_type": 1,
            "create_time": pay_time - 60, "pay_time": pay_time, "update_time": pay_time,
            "order_amount": goods, "pay_amount": goods + post_amount, "post_amount": post_amount,
            "doudian_open_id": open_id, "open_id": "", "buyer_words": "",
            "sku_order_list": [{"order_id": f"{order_id}{i + 1}", "parent_order_id": order_id, "code": code,
                                "product_id": 3_600_000_000 + i, "product_name": code, "sku_id": 1_700_000_000 + i,
                                "out_sku_id": 0, "item_num": qty, "order_amount": paid, "pay_amount": paid,
                                "post_amount": 0, "origin_amount": paid}
                               for i, (code, qty, paid) in enumerate(lines)]}


@dataclass
class FakeApp:
    app_key: str
    app_secret: str
    shop_id: str
    tokens: dict[str, bool] = field(default_factory=dict)  # token -> still valid


class FakeDouyinOpenApi:
    def __init__(self) -> None:
        self.apps: dict[str, FakeApp] = {}
        self.orders: dict[tuple[str, str], dict] = {}  # (shop id, order id) -> shop_order_detail
        self.calls: list[tuple[str, dict]] = []  # (method, params) in the order they came
        self.failures: dict[str, list[tuple[int, str]]] = {}
        self.delays: dict[str, list[float]] = {}
        self.base_url = ""

    # --- what a test sets up --------------------------------------------------------------
    def add_shop(self, shop: DouyinShop) -> None:
        self.apps[shop.app_key] = FakeApp(shop.app_key, shop.app_secret, shop.shop_id)

    def add_order(self, shop: DouyinShop, order_id: str, open_id: str, lines: list[tuple[str, int, int]],
                  pay_time: int, post_amount: int = 0) -> dict:
        self.orders[(shop.shop_id, order_id)] = shop_order(order_id, shop.shop_id, open_id, lines, pay_time,
                                                           post_amount)
        return self.orders[(shop.shop_id, order_id)]

    def fail(self, method: str, code: int = 20000, sub_code: str = "dop.service-error", times: int = 1) -> None:
        self.failures.setdefault(method, []).extend([(code, sub_code)] * times)

    def hang(self, method: str, seconds: float, times: int = 1) -> None:
        self.delays.setdefault(method, []).extend([seconds] * times)

    def expire_tokens(self) -> None:
        for app in self.apps.values():
            app.tokens = dict.fromkeys(app.tokens, False)

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    # --- the server -------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token/create", self._token_create)
        app.router.add_post("/order/orderDetail", self._order_detail)
        return app

    async def _token_create(self, request: web.Request) -> web.Response:
        app, params, refused = await self._received(request, "token.create")
        if refused is not None:
            return refused
        if params.get("grant_type") != "authorization_self":
            return _error(50001, "dop.token-generate-failed:grant-type-invalid", "grant_type参数取值不正确")
        if str(params.get("shop_id")) != app.shop_id:
            return _error(50001, "dop.token-generate-failed:no-authorization", "店铺授权已失效，请重新引导商家完成店铺授权")
        token = secrets.token_hex(16)
        app.tokens[token] = True
        return _answer({"access_token": token, "expires_in": 604800, "refresh_token": secrets.token_hex(16),
                        "scope": "SCOPE", "shop_id": int(app.shop_id), "shop_name": "抖店的店",
                        "authority_id": "", "auth_subject_type": ""})

    async def _order_detail(self, request: web.Request) -> web.Response:
        app, params, refused = await self._received(request, "order.orderDetail")
        if refused is not None:
            return refused
        if (token_refused := self._token_refused(app, request.query.get("access_token"))) is not None:
            return token_refused
        order = self.orders.get((app.shop_id, str(params.get("shop_order_id"))))
        if order is None:
            return _error(50002, "isv.business-failed:1000", "订单不存在")
        return _answer({"shop_order_detail": order})

    async def _received(self, request: web.Request, method: str) -> tuple[FakeApp | None, dict, web.Response | None]:
        """The call's app and params, or the error Douyin answers (after any failure a test set)."""
        body, query = (await request.read()).decode(), request.query
        try:
            params = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            params = None
        self.calls.append((method, params if isinstance(params, dict) else {}))
        if delays := self.delays.get(method):
            await asyncio.sleep(delays.pop(0))
        if failures := self.failures.get(method):
            code, sub_code = failures.pop(0)
            return None, {}, _error(code, sub_code, "服务不可用")
        app = self.apps.get(query.get("app_key", ""))
        refused = self._unsigned(app, query, method, body)
        if refused is None and not isinstance(params, dict):
            refused = _error(40003, "isv.parameter-format-invalid", "业务参数json解析失败")
        return app, params or {}, refused

    @staticmethod
    def _unsigned(app: FakeApp | None, query, method: str, body: str) -> web.Response | None:
        if not query.get("app_key"):
            return _error(40001, "isv.app-id-missing", "认证失败，app_key不存在")
        if not query.get("sign"):
            return _error(40001, "isv.signature-missing", "获取签名失败，请根据文档确保参数拼装正确")
        if app is None:
            return _error(40003, "isv.app-id-invalid", "认证失败，app_key不正确")
        if query.get("method") != method or query.get("v") != "2":
            return _error(40003, "isv.parameter-invalid", "method或v不正确")
        expected = request_sign(app.app_key, app.app_secret, method, body, query.get("timestamp", ""),
                                query.get("v", ""), query.get("sign_method", "md5"))
        if expected is None or not hmac.compare_digest(expected, query["sign"]):
            return _error(40003, "isv.signature-invalid", "签名校验失败")
        return None

    def _token_refused(self, app: FakeApp, token: str | None) -> web.Response | None:
        if not token:
            return _error(40001, "isv.access-token-missing", "认证失败，access_token不能为空")
        if token not in app.tokens and any(token in other.tokens for other in self.apps.values()):
            return _error(40003, "isv.access-token-invalid", "app_key和access_token不匹配，请仔细检查")
        if token not in app.tokens:
            return _error(40003, "isv.access-token-no-existed", "access_token不存在，请使用最新的access_token访问")
        if not app.tokens[token]:
            return _error(40003, "isv.access-token-expired", "access_token已过期")
        return None


def _answer(data: dict) -> web.Response:
    return web.json_response({"code": SUCCESS, "msg": "success", "sub_code": "", "sub_msg": "",
                              "log_id": secrets.token_hex(12), "data": data}, dumps=lambda v: orjson.dumps(v).decode())


def _error(code: int, sub_code: str, sub_msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": _MESSAGES.get(code, "其他异常"), "sub_code": sub_code,
                              "sub_msg": sub_msg, "log_id": secrets.token_hex(12), "data": {}},
                             dumps=lambda v: orjson.dumps(v).decode())


_MESSAGES = {20000: "服务不可用", 40001: "缺少必选参数", 40003: "非法的参数", 50001: "平台处理失败", 50002: "业务处理失败"}
