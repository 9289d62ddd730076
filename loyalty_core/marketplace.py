"""What a marketplace's order events mean to the ledger, whatever the platform (channel-neutral).

Each platform's adapter turns its pushes into ``MarketEvent`` s of four kinds:

- ``paid``: the order earns points as a sale of the shop (``source`` ``<platform>:<shop id>``, the
  platform's order id as ``txn_id``: once per order whatever the platform resends). The points
  wait (pending) for the order's confirmation, or at the latest the program's ``pending_days``
  (``CONFIRM_WAIT`` when the program has none): a marketplace order can still be returned.
- ``confirmed``: the buyer confirmed receipt, or the platform did for them: the order's pending
  points vest now.
- ``refunded``: part or all of the order's amount was refunded: its points are clawed back pro rata
  (``orders.refund_order``), once per refund id.
- ``closed``: closed before payment, nothing to do.

The buyer is the member with the order's phone when the platform gives one (the order's buyer id
is then bound to them when that phone is the account's own), else the member who bound the
platform's buyer id (``POST /v1/mp/me/bindings``). A buyer known only by their account earns on an
unclaimed holder of that account (``joining.holder``), merged into the member who binds it. A
buyer known by a phone no member has waits (``NoMemberYet``) for the member who joins with it or
binds the account, as does a confirmation or a refund whose payment has not come
(``NoPaymentYet``): the inbox keeps them and applies them when what they wait for comes
(``loyalty_core.inbox``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from . import codes, jobs, joining, merge, orders
from .channels import Connected
from .crypto import Vault
from .errors import AlreadyExists
from .models import Identity, Member
from .program import Program
from .rules.pricing import Line

KINDS = ("paid", "confirmed", "refunded", "closed", "other")
CONFIRM_WAIT = timedelta(days=30)
OLDEST = timedelta(days=30)  # an order said to be older earns as of then (a lot never born expired)
log = structlog.get_logger("marketplace")


@dataclass(frozen=True)
class MarketLine:
    sku: str
    qty: int
    amount: int  # fen paid for the line
    category: str = "online"


@dataclass(frozen=True)
class MarketEvent:
    """One event of one order, as the core needs it."""

    event_id: str           # the platform's message id: a resend has the same
    kind: str               # one of KINDS
    order_id: str           # the platform's order id
    occurred_at: datetime
    buyer_phone: str | None = None
    buyer_id: str | None = None
    lines: tuple[MarketLine, ...] = field(default_factory=tuple)
    paid: int = 0           # fen the buyer paid
    refund_id: str | None = None
    refunded: int = 0       # fen of this refund
    needs_detail: bool = False  # the push only names the order: its buyer and lines come from the platform's API
    phone_of_account: bool = False  # buyer_phone is the buyer's account's own (not a delivery contact)

    def as_json(self) -> dict:
        return {"event_id": self.event_id, "kind": self.kind, "order_id": self.order_id,
                "occurred_at": self.occurred_at.isoformat(), "buyer_phone": self.buyer_phone,
                "buyer_id": self.buyer_id, "paid": self.paid, "refund_id": self.refund_id,
                "refunded": self.refunded, "needs_detail": self.needs_detail,
                "phone_of_account": self.phone_of_account,
                "lines": [{"sku": l.sku, "qty": l.qty, "amount": l.amount, "category": l.category} for l in self.lines]}

    @classmethod
    def of_json(cls, data: dict) -> "MarketEvent":
        return cls(data["event_id"], data["kind"], data["order_id"], datetime.fromisoformat(data["occurred_at"]),
                   data.get("buyer_phone"), data.get("buyer_id"),
                   tuple(MarketLine(l["sku"], int(l["qty"]), int(l["amount"]), l.get("category", "online"))
                         for l in data.get("lines") or ()),
                   int(data.get("paid") or 0), data.get("refund_id"), int(data.get("refunded") or 0),
                   bool(data.get("needs_detail")), bool(data.get("phone_of_account")))


class Details(Protocol):
    """Completes an event whose push only names its order (``needs_detail``): the platform's open API
    is asked for the order's buyer, lines and amounts (the adapters' ``detail``); raises
    ``PlatformUnavailable`` when the platform refuses or does not answer (the inbox retries)."""

    async def __call__(self, shop: "Shop", event: MarketEvent) -> MarketEvent: ...


class Waiting(Exception):
    """The event cannot be applied yet; ``reason`` says for what it waits."""

    reason = "waiting"


class NoMemberYet(Waiting):
    reason = "no_member"


class NoPaymentYet(Waiting):
    reason = "no_payment"


@dataclass(frozen=True)
class Shop:
    """A connected marketplace shop: its chain, platform, the platform's shop id, and its channel."""

    chain_id: int
    platform: str
    shop_id: str
    channel_id: int

    @classmethod
    def of(cls, channel: Connected) -> "Shop":
        return cls(channel.chain_id, channel.platform, channel.external_id, channel.id)

    @property
    def source(self) -> str:
        return f"{self.platform}:{self.shop_id}"


async def apply(shop: Shop, event: MarketEvent, program: Program, vault: Vault, now: datetime) -> str:
    """Apply one event; returns ``applied`` or ``ignored``; raises ``Waiting`` or a ``LoyaltyError``."""
    if event.kind == "paid":
        await _paid(shop, event, program, vault, now)
        return "applied"
    if event.kind in ("confirmed", "refunded"):
        placed = await orders.placed_before(shop.chain_id, shop.source, event.order_id)
        if placed is None:
            raise NoPaymentYet(f"order {event.order_id} has not been paid here yet")
        if placed.result.get("member_id") is None:
            return "ignored"
        if event.kind == "confirmed":
            await jobs.vest_order_now(shop.chain_id, int(placed.result["order_id"]), now)
            return "applied"
        return await _refunded(shop, event, program, now)
    return "ignored"  # closed before payment, or nothing the ledger follows


async def _refunded(shop: Shop, event: MarketEvent, program: Program, now: datetime) -> str:
    """At most what is left of the order is refunded here (a platform's refund may include postage,
    which never earned)."""
    order = await orders.find_order(shop.chain_id, shop.source, event.order_id)
    refund = orders.RefundInput(shop.source, event.order_id, (event.refund_id or event.event_id)[:64],
                                amount=min(event.refunded, int(order.payable) - int(order.refunded_amount or 0)))
    if await orders.refunded_before(shop.chain_id, refund) is not None:
        return "applied"  # this refund id was applied before (the platform sent it again)
    if not refund.amount or refund.amount <= 0:
        return "ignored"  # nothing of the order is left to refund
    await orders.refund_order(shop.chain_id, refund, program, now)
    return "applied"


async def _paid(shop: Shop, event: MarketEvent, program: Program, vault: Vault, now: datetime) -> None:
    member = await buyer(shop, event, vault)
    if member is None and event.buyer_id and not event.buyer_phone:
        member = await joining.holder(shop.chain_id, shop.platform, event.buyer_id[:128], program, now)
    if member is None:
        raise NoMemberYet("the buyer is no member yet: the order waits for a member with its phone, or until "
                          "a member binds the buyer's account")
    # the goods the buyer paid for earn; what else was paid (postage) does not
    goods = sum(l.amount for l in event.lines)
    lines = [Line(sku=l.sku[:64], category=l.category, qty=l.qty, unit_price=l.amount // max(l.qty, 1),
                  amount=l.amount) for l in event.lines if l.amount > 0] if event.lines and goods <= event.paid else [
        Line(sku=shop.platform.upper(), category="online", qty=1, unit_price=event.paid, amount=event.paid)]
    occurred = min(max(event.occurred_at, now - OLDEST), now)
    payable = sum(line.amount for line in lines)
    sale = orders.OrderInput(source=shop.source, txn_id=event.order_id[:64], occurred_at=occurred,
                             lines=lines, member=member, payments=[orders.Payment(shop.platform, payable)],
                             channel=shop.platform, received_at=now, hold_until=now + _confirm_wait(program),
                             priced=True)
    await orders.place_order(shop.chain_id, sale, program, now)
    if member.unclaimed:  # a bind merged the holder while this order waited for its row: on to the member
        await merge.follow(shop.chain_id, member.id, f"order:{event.order_id}", f"{shop.platform}:bind", now)
    if binds_by_phone(event):
        await _remember(shop, member, event.buyer_id, program, now)


def binds_by_phone(event: MarketEvent) -> bool:
    """A paid order found its member by the phone of the buyer's own account (Youzan's buyer_phone),
    which then binds that account: not a delivery contact's phone (a gift's receiver)."""
    return bool(event.kind == "paid" and event.buyer_id and event.buyer_phone and event.phone_of_account)


async def _remember(shop: Shop, member: Member, buyer_id: str, program: Program, now: datetime) -> None:
    """A buyer found by phone: their platform account is the member's from now on (their later
    orders without a phone find them, their points are pushed to it); one bound to another member
    stays so."""
    try:
        await joining.bind(shop.chain_id, member.id, shop.platform, buyer_id[:128], program, now)
    except AlreadyExists:
        log.info("marketplace.buyer_bound_elsewhere", chain_id=shop.chain_id, platform=shop.platform,
                 member_id=member.id)


def _confirm_wait(program: Program) -> timedelta:
    days = program.points.pending_days
    return timedelta(days=days) if days > 0 else CONFIRM_WAIT


async def buyer(shop: Shop, event: MarketEvent, vault: Vault) -> Member | None:
    """The member with the order's phone, else the member who bound the buyer's account."""
    if event.buyer_phone:
        found = await codes.member_with_phone(shop.chain_id, event.buyer_phone, vault)
        if found is not None and found.erased_at is None:
            return found
    if event.buyer_id:
        bound = await Identity.get_or_none(chain_id=shop.chain_id, channel=shop.platform, external_id=event.buyer_id)
        if bound is not None and bound.member_id is not None:
            return await codes.member_by_id(shop.chain_id, bound.member_id)
    return None
