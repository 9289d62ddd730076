"""The worker process: relays the outbox, runs the scheduled jobs, pulls Taobao's TMC messages
into the shops' inboxes, and prunes what is kept for a while only (delivered outbox rows,
idempotency records).

Several workers may run at once: a row is claimed by setting a lease inside a transaction that
locks it with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises writers anyway), so no
two workers deliver the same row at the same time. Rows are claimed one chain at a time, and
every statement that locks or changes a row names its chain, so that on Citus each one runs on
the chain's own shard (docs/scaling.md). Delivery is at least once; each event carries
its ``event_id`` for receivers to dedupe. A worker that dies between delivering a row and marking
it leaves the row leased; once the lease is over another worker delivers it again.
"""
from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from typing import Awaitable, Callable

import structlog
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from loyalty_core import inbox, jobs
from loyalty_core.clock import Clock
from loyalty_core.models import Chain, IdempotencyRecord, MessageSend, OutboxEvent
from loyalty_core.outbox import backoff, given_up

from adapters.marketplaces import OpenApis
from adapters.marketplaces.taobao import TmcPull
from adapters.marketplaces.youzan_points import YouzanPoints, YouzanPointsSync
from adapters.wechat.cards import CardSync
from adapters.wechat.client import WeChat
from adapters.wechat.messages import SubscribeMessages
from adapters.webhooks import FanOut, WebhookSender
from loyalty_core.crypto import Vault
from loyalty_core.marketplace import Details

from . import idempotency
from .redis import KeySpace, connect
from .metrics import OUTBOX
from .problems import unavailable
from .settings import Settings

log = structlog.get_logger("worker")
LEASE = timedelta(seconds=60)
LEASE_USE = 0.5  # of a batch's lease, spent on trying its rows; the rest stay leased until it is over
RETENTION = timedelta(days=7)
MESSAGE_RETENTION = timedelta(days=30)
MAX_ATTEMPTS = 20
PRUNE_BATCH = 500  # rows per DELETE: each statement stays short, whatever the backlog
EVALUATE_EVERY = timedelta(hours=1)
PRUNE_MAX_BATCHES = 20  # per table and schedule run, so one run never starves the relay
ANY_TOPIC = "*"

Deliver = Callable[[OutboxEvent], Awaitable[None]]


async def log_sink(event: OutboxEvent) -> None:
    """Until a channel subscribes to a topic, its events are recorded in the log and done."""
    log.info("outbox.event", event_id=event.event_id, topic=event.topic, chain_id=event.chain_id)


class Relay:
    """Delivers due outbox rows to the handlers of ``"*"`` (every topic) and then to those of their
    topic in ``routes``; a topic that has neither goes to the log. Rows claimed in one batch are
    tried only while most of their lease is left (``LEASE_USE``): a slow receiver leaves the rest
    leased, to be claimed again once the lease is over, never sent by two workers at once."""

    def __init__(self, clock: Clock, routes: dict[str, list[Deliver]] | None = None, batch: int = 50,
                 lease: timedelta = LEASE) -> None:
        self.clock = clock
        self.routes = routes or {}
        self.batch = batch
        self.lease = lease
        self._unmarked: dict[int, tuple[OutboxEvent, int]] = {}  # delivered, not yet marked (database down)

    async def claim(self, now: datetime) -> list[OutboxEvent]:
        """At most ``batch`` due rows: the chains that have some first (a read, no lock), then each
        chain's share of the batch, locked and leased in one short transaction per chain. The
        chains come in a random order, so that one chain's backlog never holds back the others."""
        free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
        due = OutboxEvent.filter(free, status="pending", next_attempt_at__lte=now)
        chains = list(await due.distinct().values_list("chain_id", flat=True))
        random.shuffle(chains)
        share = max(1, self.batch // max(1, len(chains)))
        rows: list[OutboxEvent] = []
        for chain_id in chains:
            if len(rows) >= self.batch:
                break
            async with in_transaction():
                claimed = await (due.filter(chain_id=chain_id).order_by("id").limit(min(share, self.batch - len(rows)))
                                 .select_for_update(skip_locked=True))
                if claimed:
                    await OutboxEvent.filter(chain_id=chain_id, id__in=[r.id for r in claimed]).update(
                        locked_until=now + self.lease)
            rows += claimed
        return rows

    async def deliver(self, event: OutboxEvent) -> None:
        # "*" first: the webhooks' fan-out is cheap and idempotent, and must not wait behind a
        # channel that keeps failing (its retries would hold the event back for hours)
        for handler in [*self.routes.get(ANY_TOPIC, []), *self.routes.get(event.topic, [])] or [log_sink]:
            await handler(event)

    async def run_once(self) -> int:
        """Deliver what is due; returns how many events were attempted."""
        await self._mark_unmarked()
        events = await self.claim(self.clock.now())
        started = time.monotonic()
        for event in events:
            if time.monotonic() - started > self.lease.total_seconds() * LEASE_USE:
                log.warning("outbox.lease_running_out", left=len(events) - events.index(event))
                break
            await self._attempt(event)
        return len(events)

    async def _attempt(self, event: OutboxEvent) -> None:
        attempts = event.attempts + 1
        try:
            await self.deliver(event)
        except Exception as error:  # any receiver failure is retried later, never lost
            dead = given_up(event.topic, attempts, event.created_at, self.clock.now(), MAX_ATTEMPTS)
            await OutboxEvent.filter(chain_id=event.chain_id, id=event.id).update(
                attempts=attempts, last_error=f"{type(error).__name__}: {error}"[:2000], locked_until=None,
                status="dead" if dead else "pending", next_attempt_at=self.clock.now() + backoff(attempts))
            OUTBOX.labels(event.topic, "dead" if dead else "retry").inc()
            log.warning("outbox.retry", event_id=event.event_id, topic=event.topic, attempts=attempts, error=str(error))
            return
        # Delivered: from here on, failing to record it must not make us deliver it again. If the
        # database is gone, the mark is kept in memory and written first in the next cycles.
        self._unmarked[event.id] = (event, attempts)
        await self._mark(event, attempts)

    async def _mark(self, event: OutboxEvent, attempts: int) -> None:
        await OutboxEvent.filter(chain_id=event.chain_id, id=event.id).update(
            attempts=attempts, status="delivered", locked_until=None, delivered_at=self.clock.now(), last_error=None)
        del self._unmarked[event.id]
        OUTBOX.labels(event.topic, "delivered").inc()

    async def _mark_unmarked(self) -> None:
        for event, attempts in list(self._unmarked.values()):
            await self._mark(event, attempts)


class Schedule:
    """Every ``every``: the points jobs for every chain (and, hourly, ``evaluate_tiers``, ``birthday`` and ``winback``), then the retention of delivered outbox
    rows (``retention``) and of idempotency records (``idempotency.KEEP``); safe beside other
    workers."""

    def __init__(self, clock: Clock, every: timedelta = timedelta(minutes=1), retention: timedelta = RETENTION,
                 batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES, vault: Vault | None = None,
                 details: Details | None = None) -> None:
        self.clock = clock
        self.vault = vault  # for the marketplaces' inbox retries (their channels' secrets)
        self.details = details  # the marketplaces' open APIs, to complete thin pushes
        self.every = every
        self.retention = retention
        self.batch = batch
        self.max_batches = max_batches
        self.next_run: datetime | None = None
        self.next_evaluation: datetime | None = None

    async def run_due(self) -> None:
        now = self.clock.now()
        if self.next_run is not None and now < self.next_run:
            return
        self.next_run = now + self.every
        names = ["vest_points", "expire_points", "warn_expiring_points"]
        if self.next_evaluation is None or now >= self.next_evaluation:  # tiers and coupon campaigns move by days: hourly is plenty
            self.next_evaluation = now + EVALUATE_EVERY
            names += ["evaluate_tiers", "birthday", "winback"]
        for chain_id in await Chain.all().values_list("id", flat=True):
            try:
                await self._run_chain(chain_id, names, now)
            except Exception as error:  # one chain's failure never stops the others' jobs
                if unavailable(error) is not None:
                    raise
                log.exception("job.chain_failed", chain_id=chain_id)
        await self.prune(now)

    async def _run_chain(self, chain_id: int, names: list[str], now: datetime) -> None:
        for name in names:
            report = await jobs.run_job(name, chain_id, now)
            if report.processed:
                log.info("job.ran", chain_id=chain_id, **report.as_dict(now))
        if self.vault is not None and (tried := await inbox.retry_chain(chain_id, self.vault, now, self.details)):
            log.info("inbox.retried", chain_id=chain_id, events=tried)

    async def prune(self, now: datetime) -> dict[str, int]:
        """Delete delivered outbox rows delivered before ``now - retention`` (pending and dead rows
        stay), idempotency records created before ``now - idempotency.KEEP`` and the record of
        subscribe messages sent before ``now - MESSAGE_RETENTION`` (what stops a resent event from
        sending again: kept longer than any retry of it lasts), in batches."""
        cutoff = now - self.retention
        # delivered_at >= next_attempt_at (a row is only delivered once due), so the second
        # condition only lets the (status, next_attempt_at) index find the candidates.
        delivered = OutboxEvent.filter(status="delivered", delivered_at__lt=cutoff, next_attempt_at__lt=cutoff)
        expired = IdempotencyRecord.filter(created_at__lt=now - idempotency.KEEP)
        sends = MessageSend.filter(created_at__lt=now - MESSAGE_RETENTION)
        pruned = {"outbox_events": await self._delete(delivered), "idempotency_records": await self._delete(expired),
                  "message_sends": await self._delete(sends)}
        if any(pruned.values()):
            log.info("retention.pruned", **pruned)
        return pruned

    async def _delete(self, candidates: QuerySet) -> int:
        """At most ``max_batches`` batches of at most ``batch`` rows each, until none is left; a
        batch is deleted by one DELETE per chain it holds rows of."""
        deleted = 0
        for _ in range(self.max_batches):
            found = await candidates.limit(self.batch).values_list("chain_id", "id")
            by_chain: dict[int, list[int]] = {}
            for chain_id, row_id in found:
                by_chain.setdefault(chain_id, []).append(row_id)
            for chain_id, ids in by_chain.items():
                deleted += await candidates.filter(chain_id=chain_id, id__in=ids).delete()
            if len(found) < self.batch:
                break
        return deleted


def channel_routes(settings: Settings, cache: KeySpace, clock: Clock,
                   apis: OpenApis | None = None) -> tuple[dict[str, list[Deliver]], "Closing"]:
    """Who receives which topic: WeChat member cards follow balance changes, subscribe messages
    tell of points earned, coupons received and points about to expire, every public event fans
    out to the chain's webhooks, and their deliveries are sent; Youzan shops are told members' points."""
    wechat, vault = WeChat(settings.wechat_api_base_url, cache), Vault(settings.require_secret())
    sender, own = WebhookSender(vault), apis is None  # the worker's one set of open APIs, or its own
    apis = apis or OpenApis(settings.platform_base_urls, vault, cache, clock)
    routes: dict[str, list[Deliver]] = {ANY_TOPIC: [FanOut(clock)]}
    for handler in (CardSync(wechat, vault, clock), SubscribeMessages(wechat, vault, clock), sender,
                    YouzanPoints(clock), YouzanPointsSync(apis, vault)):
        for topic in handler.topics:
            routes.setdefault(topic, []).append(handler)
    return routes, Closing(wechat, sender, apis if own else None)


class Closing:
    """What the channels' handlers hold open (WeChat's threads, the webhooks' and the marketplaces'
    HTTP sessions)."""

    def __init__(self, wechat: WeChat, sender: WebhookSender, apis: OpenApis | None) -> None:
        self.wechat, self.sender, self.apis = wechat, sender, apis

    async def close(self) -> None:
        self.wechat.close()
        await self.sender.close()
        if self.apis is not None:
            await self.apis.close()


async def run(clock: Clock, stop: asyncio.Event, interval: float = 1.0, settings: Settings | None = None,
              routes: dict[str, list[Deliver]] | None = None, cache: KeySpace | None = None) -> None:
    """The worker's loop until ``stop``; ``settings`` default to the environment's. Without
    ``routes``, the channels' (``channel_routes``), over ``cache`` or a Redis of its own."""
    settings = settings or Settings.from_env()
    own_redis = held = None
    if cache is None:
        own_redis = connect(settings.redis_url)
        cache = KeySpace(own_redis, settings.redis_prefix)
    vault = Vault(settings.require_secret())
    apis = OpenApis(settings.platform_base_urls, vault, cache, clock)
    if routes is None:
        routes, held = channel_routes(settings, cache, clock, apis)
    schedule = Schedule(clock, retention=timedelta(days=settings.outbox_retention_days), vault=vault, details=apis)
    try:
        await _loop(clock, stop, interval, settings, routes, schedule, TmcPull(apis.api, vault))
    finally:
        await apis.close()
        if held is not None:
            await held.close()
        if own_redis is not None:
            await own_redis.aclose()


async def _step(run: Callable[[], Awaitable]):
    """One step of the worker's cycle; a failure is logged (a service down: briefly, retried next
    cycle) and answered None."""
    try:
        return await run()
    except Exception as error:
        if (service := unavailable(error)) is not None:  # no traceback each second
            log.warning("worker.service_unavailable", service=service, error=f"{type(error).__name__}: {error}"[:300])
        else:
            log.exception("worker.step_failed")
        return None


async def _loop(clock: Clock, stop: asyncio.Event, interval: float, settings: Settings,
                routes: dict[str, list[Deliver]], schedule: "Schedule", pull: TmcPull) -> None:
    relay = Relay(clock, routes, lease=timedelta(seconds=settings.outbox_lease_seconds))
    while not stop.is_set():  # each step on its own: one failing does not hold up the others
        delivered = await _step(relay.run_once) or 0
        await _step(schedule.run_due)
        await _step(lambda: pull.run_due(clock.now()))
        if not delivered:
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
