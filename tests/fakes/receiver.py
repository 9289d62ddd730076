"""A chain's own system on loopback, receiving its webhooks as a careful receiver does: it checks
``X-Loyalty-Signature`` with the subscription's secret, dedupes on the event id, and can be told to
fail (``fail_next``: answer 500 that many times)."""
from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter

import orjson
from aiohttp import web

SKEW = 300  # seconds a signature's timestamp may be off


class Receiver:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.received: list[dict] = []        # every delivery that verified, duplicates included
        self.events: dict[str, dict] = {}     # by event id: what a deduping receiver keeps
        self.duplicates: Counter[str] = Counter()
        self.refused = 0
        self.fail_next = 0
        self.url = ""

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        return app

    def verified(self, header: str, body: bytes) -> bool:
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        stamp = parts.get("t", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > SKEW:
            return False
        for secret in self.secrets:
            mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(mac, parts.get("v1", "")):
                return True
        return False

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.verified(request.headers.get("X-Loyalty-Signature", ""), body):
            self.refused += 1
            return web.Response(status=401)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="down for maintenance")
        event = orjson.loads(body)
        assert request.headers["X-Loyalty-Event-Id"] == event["id"]
        assert request.headers["X-Loyalty-Event"] == event["type"]
        self.received.append(event)
        if event["id"] in self.events:
            self.duplicates[event["id"]] += 1
        self.events[event["id"]] = event
        return web.Response(status=204)

    def of_type(self, topic: str) -> list[dict]:
        return [event for event in self.events.values() if event["type"] == topic]
