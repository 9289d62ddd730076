"""Domain events, written in the same transaction as the change they announce.

The worker's relay delivers them after commit, at least once, each with a stable ``event_id``
that receivers dedupe on. No request handler talks to another system after committing.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from .models import OutboxEvent


def _event(chain_id: int, topic: str, payload: dict, now: datetime) -> OutboxEvent:
    return OutboxEvent(chain_id=chain_id, event_id=str(uuid.uuid4()), topic=topic, payload=payload,
                       status="pending", next_attempt_at=now, created_at=now)


async def emit(chain_id: int, topic: str, payload: dict, now: datetime) -> OutboxEvent:
    event = _event(chain_id, topic, payload, now)
    await event.save()
    return event


async def emit_all(chain_id: int, events: list[tuple[str, dict]], now: datetime) -> None:
    """Several events of one change in one insert."""
    await OutboxEvent.bulk_create([_event(chain_id, topic, payload, now) for topic, payload in events])


def backoff(attempts: int, base: float = 2.0, cap: float = 3600.0) -> timedelta:
    """Delay before the next try after ``attempts`` failures: 2 s, 4 s, 8 s ... capped at an hour."""
    return timedelta(seconds=min(cap, base ** max(1, attempts)))
