"""Youzan's message push as Youzan sends it: the JSON body (``msg`` URL-encoded JSON) and the
``Event-Sign`` header, md5 hex of client_id + raw body + client_secret (adapters/marketplaces/youzan.py
cites the docs)."""
from __future__ import annotations

import hashlib
import time
import uuid
from urllib.parse import quote

import orjson


class YouzanShop:
    """One Youzan shop of a Youzan cloud app, sending its pushes."""

    def __init__(self, kdt_id: str, client_id: str, client_secret: str) -> None:
        self.kdt_id, self.client_id, self.client_secret = kdt_id, client_id, client_secret

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
