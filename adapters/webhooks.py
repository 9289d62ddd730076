"""Sending the chain's webhook deliveries (outbox rows of topic ``webhook.delivery``, written by
``loyalty_core.webhooks.fan_out``) to its systems.

Each is one ``POST`` of the event as JSON (``{id, type, created_at, data}``) with
``X-Loyalty-Event-Id`` (the event's id, to dedupe on), ``X-Loyalty-Event`` (its topic) and
``X-Loyalty-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>``. A 2xx answer is
delivered; any other answer, or none within ``TIMEOUT``, raises, and the outbox tries again with
backoff until the delivery's window is over (then it is dead, for an admin to replay). A
delivery whose subscription was removed is dropped.
"""
from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
import orjson

from loyalty_core import webhooks
from loyalty_core.crypto import Vault

TIMEOUT = aiohttp.ClientTimeout(total=10)


class DeliveryFailed(Exception):
    pass


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class FanOut:
    """Every public event, once more per subscription that wants it (a delivery row)."""

    def __init__(self, clock) -> None:
        self.clock = clock

    async def __call__(self, event) -> None:
        await webhooks.fan_out(event, self.clock.now())


class WebhookSender:
    topics = (webhooks.DELIVERY,)

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __call__(self, event) -> None:
        payload = event.payload or {}
        target = await webhooks.secret_of(event.chain_id, int(payload.get("webhook_id") or 0), self.vault)
        if target is None:
            return
        url, secret = target
        body = orjson.dumps(payload["event"])
        headers = {"Content-Type": "application/json", "X-Loyalty-Event-Id": payload["event"]["id"],
                   "X-Loyalty-Event": payload["event"]["type"],
                   "X-Loyalty-Signature": signature(secret, int(time.time()), body)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
                if not 200 <= answer.status < 300:
                    raise DeliveryFailed(f"{url} answered {answer.status}")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryFailed(f"{url}: {type(error).__name__} {error}"[:300]) from None
