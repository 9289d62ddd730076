"""The worker process: relays the outbox and (as later channels arrive) pulls and runs jobs.

Several workers may run at once: a row is claimed by setting a lease inside a transaction that
locks it with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises writers anyway), so no
two workers deliver the same row at the same time. Delivery is at least once; each event carries
its ``event_id`` for receivers to dedupe.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Awaitable, Callable

import structlog
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from loyalty_core import jobs
from loyalty_core.clock import Clock
from loyalty_core.models import Chain, OutboxEvent
from loyalty_core.outbox import backoff

from . import idempotency
from .metrics import OUTBOX

log = structlog.get_logger("worker")
LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 20

Deliver = Callable[[OutboxEvent], Awaitable[None]]


async def log_sink(event: OutboxEvent) -> None:
    """Until a channel subscribes to a topic, its events are recorded in the log and done."""
    log.info("outbox.event", event_id=event.event_id, topic=event.topic, chain_id=event.chain_id)


class Relay:
    def __init__(self, clock: Clock, routes: dict[str, list[Deliver]] | None = None, batch: int = 50) -> None:
        self.clock = clock
        self.routes = routes or {}
        self.batch = batch

    async def claim(self, now: datetime) -> list[OutboxEvent]:
        async with in_transaction():
            free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
            rows = await (OutboxEvent.filter(free, status="pending", next_attempt_at__lte=now)
                          .order_by("id").limit(self.batch).select_for_update(skip_locked=True))
            if rows:
                await OutboxEvent.filter(id__in=[r.id for r in rows]).update(locked_until=now + LEASE)
        return rows

    async def deliver(self, event: OutboxEvent) -> None:
        for handler in self.routes.get(event.topic, [log_sink]):
            await handler(event)

    async def run_once(self) -> int:
        """Deliver what is due; returns how many events were attempted."""
        events = await self.claim(self.clock.now())
        for event in events:
            await self._attempt(event)
        return len(events)

    async def _attempt(self, event: OutboxEvent) -> None:
        attempts = event.attempts + 1
        try:
            await self.deliver(event)
        except Exception as error:  # any receiver failure is retried later, never lost
            dead = attempts >= MAX_ATTEMPTS
            await OutboxEvent.filter(id=event.id).update(
                attempts=attempts, last_error=f"{type(error).__name__}: {error}"[:2000], locked_until=None,
                status="dead" if dead else "pending", next_attempt_at=self.clock.now() + backoff(attempts))
            OUTBOX.labels(event.topic, "dead" if dead else "retry").inc()
            log.warning("outbox.retry", event_id=event.event_id, topic=event.topic, attempts=attempts, error=str(error))
            return
        await OutboxEvent.filter(id=event.id).update(attempts=attempts, status="delivered", locked_until=None,
                                                     delivered_at=self.clock.now(), last_error=None)
        OUTBOX.labels(event.topic, "delivered").inc()


class Schedule:
    """Runs the points jobs for every chain every ``every``; safe beside other workers."""

    def __init__(self, clock: Clock, every: timedelta = timedelta(minutes=1)) -> None:
        self.clock = clock
        self.every = every
        self.next_run: datetime | None = None

    async def run_due(self) -> None:
        now = self.clock.now()
        if self.next_run is not None and now < self.next_run:
            return
        self.next_run = now + self.every
        for chain_id in await Chain.all().values_list("id", flat=True):
            for name in ("vest_points", "expire_points"):
                report = await jobs.run_job(name, chain_id, now)
                if report.processed:
                    log.info("job.ran", chain_id=chain_id, **report.as_dict(now))
        await idempotency.purge(now)


async def run(clock: Clock, stop: asyncio.Event, interval: float = 1.0) -> None:
    relay, schedule = Relay(clock), Schedule(clock)
    while not stop.is_set():
        try:
            delivered = await relay.run_once()
            await schedule.run_due()
        except Exception:
            log.exception("worker.cycle_failed")
            delivered = 0
        if not delivered:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
