"""The inbox: every marketplace event is stored as it came, keyed by the platform's own message id,
before it is applied, so that

- **a resend is recognised**: the same message id again changes nothing (one stored but never
  applied, because the first attempt failed or crashed, is tried again);
- **an event that comes early waits**: a confirmation or a refund whose payment has not come yet
  is ``waiting`` (``no_payment``) and is applied right after its payment; an order of a buyer who
  is no member yet is ``waiting`` (``no_member``) and is applied when a member binds that buyer's
  account (``release_buyer``), or when the worker next looks and finds a member with the
  order's phone (backoff up to six hours, ``MAX_ATTEMPTS`` times);
- **thin pushes are completed**: an event whose push only names its order (``needs_detail``:
  Douyin, Eleme) is completed from the platform's API before it is applied (``details``, the
  adapters'), and kept completed; when the platform does not answer, it is ``failed``;
- **failures are retried**: an event the core refused for now (a frozen member, say) is
  ``failed`` and tried again by the worker with backoff (``retry_due``), at most ``MAX_ATTEMPTS``
  times, as is one waiting (should what it waits for have come at the very same moment) and one
  left ``received`` by a request that never finished; an operator lists events by status and
  replays one (``replay``).

Statuses: ``received`` (stored, being applied), ``applied`` (done; ``reason`` says when it had
nothing to do), ``waiting``, ``failed``. Each event's effect happens once however often it is
applied: the core keys orders by (source, order id), refunds by refund id, and a vest once.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from . import channels
from .crypto import Vault
from .errors import LoyaltyError, NotFound, PlatformUnavailable
from .marketplace import Details, MarketEvent, NoPaymentYet, Shop, Waiting, apply, binds_by_phone
from .models import Channel as ChannelRow
from .models import InboxEvent
from .outbox import backoff
from .program import Program

MAX_ATTEMPTS = 12
STALLED = timedelta(minutes=5)
STATUSES = ("received", "applied", "waiting", "failed")
log = structlog.get_logger("inbox")


async def receive(shop: Shop, events: list[MarketEvent], body: str, program: Program, vault: Vault,
                  now: datetime, details: Details | None = None) -> list[InboxEvent]:
    """Store each event (a resend is found, not stored again) and apply what is new or unfinished."""
    rows = []
    for event in events:
        row = await _stored(shop, event, body, now)
        if row.status in ("received", "failed"):
            await attempt(shop, row, program, vault, now, details)
        rows.append(row)
    return rows


async def _stored(shop: Shop, event: MarketEvent, body: str, now: datetime) -> InboxEvent:
    chain_id = shop.chain_id
    found = await InboxEvent.get_or_none(chain_id=chain_id, channel_id=shop.channel_id, event_id=event.event_id)
    if found is not None:
        return found
    try:
        return await InboxEvent.create(chain_id=chain_id, channel_id=shop.channel_id, event_id=event.event_id,
                                       kind=event.kind, order_key=event.order_id, buyer_key=event.buyer_id,
                                       status="received", event=event.as_json(), body=body, received_at=now)
    except IntegrityError:  # the same push twice at once: the other one stored it
        return await InboxEvent.get(chain_id=chain_id, channel_id=shop.channel_id, event_id=event.event_id)


async def attempt(shop: Shop, row: InboxEvent, program: Program, vault: Vault, now: datetime,
                  details: Details | None = None) -> None:
    """Apply a stored event (first completing one whose push only named its order, with ``details``)
    and record how it went; a payment applied releases what waited for it."""
    status, reason, next_at = "applied", None, None
    try:
        event = await _completed(shop, row, details)
        if await apply(shop, event, program, vault, now) == "ignored":
            reason = "nothing to do"
    except Waiting as waiting:
        status, reason = "waiting", waiting.reason
        if row.attempts + 1 < MAX_ATTEMPTS:
            # released when its payment is applied, or its buyer's account bound; looked at again
            # later too: the payment or the binding may have been committed at this very moment,
            # and a buyer named by phone only is found once they join with that phone
            next_at = now + (backoff(row.attempts + 1, base=4.0, cap=3600.0) if isinstance(waiting, NoPaymentYet)
                             else backoff(row.attempts + 1, base=3.0, cap=6 * 3600.0))
    except LoyaltyError as refused:
        if refused.status >= 500 and not isinstance(refused, PlatformUnavailable):
            raise
        status, reason = "failed", f"{refused.code}: {refused.detail}"[:300]
        if row.attempts + 1 < MAX_ATTEMPTS:
            next_at = now + backoff(row.attempts + 1)
    row.status, row.reason, row.attempts, row.next_attempt_at = status, reason, row.attempts + 1, next_at
    row.applied_at = now if status == "applied" else None
    await InboxEvent.filter(chain_id=row.chain_id, id=row.id).update(
        status=status, reason=reason, attempts=row.attempts, next_attempt_at=next_at, applied_at=row.applied_at)
    log.info("inbox.attempted", chain_id=row.chain_id, channel_id=row.channel_id, event_id=row.event_id,
             kind=row.kind, status=status, reason=reason)
    if status == "applied" and row.kind == "paid":
        await _release(shop, InboxEvent.filter(chain_id=row.chain_id, channel_id=shop.channel_id,
                                                  order_key=row.order_key, status="waiting"), program, vault, now,
                       details)
        if binds_by_phone(event):  # the buyer's account is bound now: their other orders that waited
            await release_bound(shop.chain_id, shop.platform, event.buyer_id, program, vault, now, details)


async def _completed(shop: Shop, row: InboxEvent, details: Details | None) -> MarketEvent:
    """The stored event, completed from the platform's API once when its push only named the order
    (kept completed: its buyer is then known to ``release_buyer``)."""
    event = MarketEvent.of_json(row.event)
    if not event.needs_detail:
        return event
    if details is None:
        raise PlatformUnavailable("the order's details are fetched by the gateway or the worker, not here")
    try:
        event = await details(shop, event)
    except (ValueError, TypeError, KeyError, AttributeError) as broken:  # an answer no adapter check caught
        log.exception("inbox.detail_unreadable", chain_id=row.chain_id, event_id=row.event_id)
        raise PlatformUnavailable(f"the platform's answer cannot be read ({type(broken).__name__})") from None
    row.event, row.buyer_key, row.kind = event.as_json(), event.buyer_id, event.kind
    await InboxEvent.filter(chain_id=row.chain_id, id=row.id).update(event=row.event, buyer_key=row.buyer_key,
                                                                      kind=row.kind)
    return event


async def _release(shop: Shop, waiting, program: Program, vault: Vault, now: datetime,
                   details: Details | None = None) -> None:
    for row in await waiting.order_by("id"):
        await attempt(shop, row, program, vault, now, details)


async def release_buyer(shop: Shop, buyer_id: str, program: Program, vault: Vault, now: datetime,
                        details: Details | None = None) -> None:
    """A member bound this buyer's account: the buyer's waiting orders are applied now."""
    await _release(shop, InboxEvent.filter(chain_id=shop.chain_id, channel_id=shop.channel_id,
                                              buyer_key=buyer_id, status="waiting"), program, vault, now, details)


async def release_bound(chain_id: int, platform: str, buyer_id: str, program: Program, vault: Vault,
                        now: datetime, details: Details | None = None) -> None:
    """A member bound ``buyer_id`` on ``platform``: the buyer's waiting orders in every shop of the
    chain on that platform are applied now."""
    for channel_id, shop_id in await ChannelRow.filter(chain_id=chain_id, platform=platform).values_list(
            "id", "external_id"):
        await release_buyer(Shop(chain_id, platform, shop_id, channel_id), buyer_id, program, vault, now, details)


async def retry_due(shop: Shop, program: Program, vault: Vault, now: datetime, details: Details | None = None) -> int:
    """The channel's failed and waiting events whose next attempt is due, and those stored but
    left unapplied for ``STALLED`` (a crash, a database outage mid-request); how many were tried."""
    stalled = now - STALLED  # stored, but the request that was applying it never finished
    due = await InboxEvent.filter(
        Q(status__in=("failed", "waiting"), next_attempt_at__lte=now) | Q(status="received", received_at__lte=stalled),
        chain_id=shop.chain_id, channel_id=shop.channel_id).order_by("id").limit(100)
    for row in due:
        await attempt(shop, row, program, vault, now, details)
    return len(due)


async def retry_chain(chain_id: int, vault: Vault, now: datetime, details: Details | None = None) -> int:
    """The worker's pass over a chain: the failed events of every shop that are due again."""
    from .chains import get_program

    shops = await ChannelRow.filter(chain_id=chain_id, platform__in=channels.MARKETPLACES).values_list("id", "platform",
                                                                                                "external_id")
    if not shops:
        return 0
    program, tried = await get_program(chain_id), 0
    for channel_id, platform, shop_id in shops:
        tried += await retry_due(Shop(chain_id, platform, shop_id, channel_id), program, vault, now, details)
    return tried


async def replay(shop: Shop, event_id: str, program: Program, vault: Vault, now: datetime,
                 details: Details | None = None) -> InboxEvent:
    row = await InboxEvent.get_or_none(chain_id=shop.chain_id, channel_id=shop.channel_id, event_id=event_id)
    if row is None:
        raise NotFound(f"No event {event_id[:80]!r} in this channel's inbox")
    await attempt(shop, row, program, vault, now, details)
    return row


def of_channel(chain_id: int, channel_id: int, status: str | None):
    query = InboxEvent.filter(chain_id=chain_id, channel_id=channel_id)
    return query.filter(status=status) if status else query


def view(row: InboxEvent) -> dict:
    return {"id": row.id, "event_id": row.event_id, "kind": row.kind, "order_id": row.order_key,
            "buyer_id": row.buyer_key, "status": row.status, "reason": row.reason, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "received_at": row.received_at.isoformat(),
            "applied_at": row.applied_at.isoformat() if row.applied_at else None}
