"""The chain's own webhooks: its systems subscribe to topics of its events, and get each one signed.

**Subscribing** (``subscribe``) keeps the URL, the topics (``TOPICS``, or ``"*"`` for all of them)
and a new secret, encrypted; the secret is shown once, in the answer.

**Fan-out.** Events are the outbox's (written in the transaction of the change they announce).
When the worker delivers one, ``fan_out`` writes one more outbox row per active subscription that
wants its topic: topic ``webhook.delivery``, payload the subscription and the event, its own
``event_id`` derived from both (``uuid5``), so that the event delivered twice fans out once. The
relay then sends each delivery like any outbox row, with the outbox's lease, backoff (2 s, 4 s, …
capped at an hour) and, for deliveries, a window of ``RETRY_WINDOW`` (24 h) from the delivery's
creation (or its replay), after which it is ``dead``. An admin lists deliveries by status and
replays one (``replay``: due now, a new window).

Receivers dedupe on the event's id (``X-Loyalty-Event-Id``, the body's ``id``): a delivery is sent
at least once, and again when a worker died between sending and marking it.
"""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from .crypto import Vault
from .errors import DeliveryPending, NotFound
from .models import OutboxEvent, WebhookSubscription
from .outbox import RETRY_WINDOWS, emit_once
from .unit import Seal, seal_with

DELIVERY = "webhook.delivery"
RETRY_WINDOW = RETRY_WINDOWS[DELIVERY]  # the outbox gives a delivery up 24 h after it was written or replayed
ALL = "*"
# What a chain's systems may subscribe to: every public topic of the outbox (not the worker's own:
# member_card.sync, webhook.delivery).
TOPICS = ("member.created", "member.merged", "member.erased", "balance.changed", "order.created", "order.refunded",
          "stored_value.topped_up", "behavior.rewarded", "tier.changed", "coupon.issued", "coupon.redeemed",
          "coupon.voided", "reward.redeemed", "points.expiring", "review.opened", "review.decided")
NAMESPACE = uuid.UUID("5b1d8c5e-1f0a-4c41-9f6e-6f7574626f78")
STATUSES = ("pending", "delivered", "dead")


@dataclass(frozen=True)
class Subscribed:
    view: dict
    secret: str


def view(row: WebhookSubscription) -> dict:
    return {"id": row.id, "url": row.url, "events": list(row.events), "active": row.active,
            "created_at": row.created_at.isoformat()}


async def subscribe(chain_id: int, url: str, events: list[str], vault: Vault, now: datetime,
                    seal: Seal | None = None) -> Subscribed:
    """A new subscription; its secret is in the answer only (and in the Idempotency-Key's sealed
    answer, encrypted, for a retry)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    async with in_transaction():
        row = await WebhookSubscription.create(chain_id=chain_id, url=url, events=sorted(set(events)),
                                               secret_enc=vault.encrypt(secret), active=True, created_at=now)
        made = Subscribed(view(row), secret)
        await seal_with(seal, made)
    return made


async def unsubscribe(chain_id: int, webhook_id: int) -> None:
    """No more deliveries to it (those waiting are dropped when their turn comes)."""
    if not await WebhookSubscription.filter(chain_id=chain_id, id=webhook_id, active=True).update(active=False):
        raise NotFound(f"No webhook {webhook_id}")


def in_chain(chain_id: int):
    return WebhookSubscription.filter(chain_id=chain_id, active=True)


async def fan_out(event: OutboxEvent, now: datetime) -> int:
    """One delivery per active subscription of the event's chain that wants its topic; an event
    fanned out before adds nothing. Returns how many subscriptions want it."""
    if event.topic not in TOPICS:
        return 0
    wanted = [row for row in await in_chain(event.chain_id)
              if ALL in row.events or event.topic in row.events]
    if not wanted:
        return 0
    body = {"id": event.event_id, "type": event.topic, "created_at": event.created_at.isoformat(),
            "data": event.payload}
    await emit_once(event.chain_id, [(str(uuid.uuid5(NAMESPACE, f"{event.event_id}:{row.id}")), DELIVERY,
                                      {"webhook_id": row.id, "event": body}) for row in wanted], now)
    return len(wanted)


async def secret_of(chain_id: int, webhook_id: int, vault: Vault) -> tuple[str, str] | None:
    """The URL and the secret of an active subscription, or None (unsubscribed since)."""
    row = await WebhookSubscription.get_or_none(chain_id=chain_id, id=webhook_id, active=True)
    return (row.url, vault.decrypt(row.secret_enc)) if row is not None else None


def delivery_view(row: OutboxEvent) -> dict:
    payload = row.payload or {}
    event = payload.get("event") or {}
    return {"id": row.id, "webhook_id": payload.get("webhook_id"), "event_id": event.get("id"),
            "type": event.get("type"), "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
            "created_at": row.created_at.isoformat(),
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None}


def deliveries(chain_id: int, status: str | None):
    query = OutboxEvent.filter(chain_id=chain_id, topic=DELIVERY)
    return query.filter(status=status) if status else query


async def replay(chain_id: int, delivery_id: int, now: datetime) -> dict:
    """Send it again, now, with a new window: a dead one once its receiver is fixed, or a delivered
    one its receiver lost. One still being tried is 409 (a worker may be sending it right now);
    one whose webhook was removed is not found."""
    row = await OutboxEvent.get_or_none(chain_id=chain_id, id=delivery_id, topic=DELIVERY)
    if row is None or not await in_chain(chain_id).filter(id=(row.payload or {}).get("webhook_id")).exists():
        raise NotFound(f"No webhook delivery {delivery_id}")
    if row.status == "pending" or not await OutboxEvent.filter(
            chain_id=chain_id, id=delivery_id, status__in=("dead", "delivered")).update(
            status="pending", attempts=0, next_attempt_at=now, created_at=now, locked_until=None, last_error=None,
            delivered_at=None):
        raise DeliveryPending(f"Delivery {delivery_id} is still being tried")
    return delivery_view(await OutboxEvent.get(chain_id=chain_id, id=delivery_id))
