"""Sales and refunds from any channel, applied to the ledger all or nothing.

An order's figures come from the pure pricing rules; this module only reads what they need,
commits the order, its journal entry, lots, pending points and outbox events in one
transaction, and answers a retry of the same business key with the first result.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import orjson
from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from . import coupons, ledger, outbox, points, risk, sql, tiers
from .errors import (AmountMismatch, CodeUsed, CouponNotUsable, DuplicateEntry, InsufficientPoints,
                     InsufficientStoredValue, InvalidRedeemPoints, LoyaltyError, MemberFrozen,
                     OccurredAtOutOfRange, OrderNotFound, RiskLimitExceeded)
from .codes import MEMBER_BY_ID
from .members import balance_changed, shown_balances
from .models import Member, Order, PendingPoints, Refund
from .program import Level, Program
from .rules import coupons as coupon_rules
from .rules import pricing
from .unit import Seal, confirm, sealing

# How far a sale's occurred_at may lie from the server's clock (API.md, POS API).
SALE_MAX_AGE = timedelta(days=7)
SALE_MAX_AHEAD = timedelta(minutes=5)


def check_sale_time(occurred_at: datetime, received_at: datetime) -> None:
    """A sale happened at most 7 days before it reached us and at most 5 minutes after (clock skew)."""
    if not received_at - SALE_MAX_AGE <= occurred_at <= received_at + SALE_MAX_AHEAD:
        raise OccurredAtOutOfRange(
            f"occurred_at must lie between 7 days before and 5 minutes after the server's clock "
            f"({received_at.isoformat()})", errors=[{"field": "occurred_at", "message": "out of range"}])


@dataclass(frozen=True)
class Payment:
    method: str
    amount: int


@dataclass
class OrderInput:
    """A sale in the core's own words; adapters build it from their channel's payload."""

    source: str                      # where the business key lives: store:<id>, youzan:<shop> ...
    txn_id: str
    occurred_at: datetime
    lines: list[pricing.Line]
    member: Member | None = None
    member_code: str | None = None   # the dynamic code that named the member (with its issue time), used once
    coupons: list[str] = field(default_factory=list)
    redeem_points: int = 0
    payments: list[Payment] = field(default_factory=list)
    store_id: int | None = None
    channel: str = "pos"
    received_at: datetime | None = None
    hold_until: datetime | None = None  # the points stay pending until then, or a confirmation (marketplaces)
    priced: bool = False  # the channel set what was paid (marketplaces, WeChat Pay): no tier discount here


@dataclass(frozen=True)
class Placed:
    result: dict
    duplicate: bool


def _level(program: Program, member: Member | None) -> Level:
    return program.level(member.tier_code) if member else program.tiers.levels[0]


async def quote(chain_id: int, order: OrderInput, program: Program, read_points: bool = True) -> pricing.Quote:
    """The figures an order would commit; raises what the order would refuse. Changes nothing.
    ``read_points=False``: the caller's ledger entry refuses a redemption beyond the balance itself."""
    member = order.member
    if member is not None and member.frozen:
        raise MemberFrozen("This member is frozen: no earning or spending")
    if order.redeem_points and member is None:
        raise InvalidRedeemPoints("A guest sale cannot redeem points")
    if member is None and any(p.method == "stored_value" for p in order.payments):
        raise InsufficientStoredValue("A guest has no stored value: name the member or take another payment")
    figures = pricing.price_order(order.lines, program, _level(program, member),
                                  await _coupon_discount(chain_id, order, program), order.redeem_points,
                                  order.occurred_at, priced=order.priced)
    if member is None:
        figures = _guest(figures)
    elif figures.points_discount and read_points:
        balance = await points.points_balance(chain_id, member.id)
        if balance < order.redeem_points:
            raise InsufficientPoints(f"{order.redeem_points} points asked, {max(balance, 0)} available")
    return figures


async def _coupon_discount(chain_id: int, order: OrderInput, program: Program) -> int:
    """What the order's coupons take off (one read of them with their templates), or the refusal."""
    if not order.coupons:
        return 0
    held = await coupons.held_for_order(chain_id, order.coupons)
    subtotal = sum(line.amount for line in order.lines)
    after_tier = subtotal - pricing.tier_discount(subtotal, _level(program, order.member))
    return coupon_rules.discount(held, order.lines, after_tier, order.member.id if order.member else None,
                                 order.occurred_at)


def _guest(figures: pricing.Quote) -> pricing.Quote:
    """A guest sale is recorded at its price and earns nothing."""
    return replace(figures, points_to_earn=0, growth_to_earn=0)


ORDER_BY_KEY = "SELECT orders.* FROM orders WHERE chain_id = $1 AND source = $2 AND txn_id = $3"


async def find_order(chain_id: int, source: str, txn_id: str) -> Order | None:
    return await sql.one(Order, ORDER_BY_KEY, chain_id, source, txn_id)


async def placed_before(chain_id: int, source: str, txn_id: str) -> Placed | None:
    """The first result of an order already committed under this business key, marked duplicate."""
    first = await find_order(chain_id, source, txn_id)
    return Placed({**first.result, "duplicate": True}, True) if first is not None else None


async def place_order(chain_id: int, order: OrderInput, program: Program, now: datetime,
                      seal: Seal | None = None) -> Placed:
    """Commit a sale once per (source, txn_id); a repeat answers the first result.

    The order row is the transaction's first write: a twin committing meanwhile waits on its
    unique key and then answers as the first. A resend refused before the transaction (its
    member's tier, or its code, has changed since) still answers the first result."""
    try:
        figures = await quote(chain_id, order, program, read_points=False)
        paid = sum(p.amount for p in order.payments)
        if paid != figures.payable:
            raise AmountMismatch(f"Payments add up to {paid} fen; the payable amount is {figures.payable} fen",
                                 payable=figures.payable)
    except LoyaltyError:
        if (first := await placed_before(chain_id, order.source, order.txn_id)) is not None:
            return first
        raise
    try:
        async with in_transaction():
            row = await _record(chain_id, order, figures, program, now)
            placed = await _apply(chain_id, order, figures, program, row, now, seal)
    except (IntegrityError, DuplicateEntry) as error:
        twin = await _twin(chain_id, order, error)
        if isinstance(twin, Placed):
            return twin
        raise twin from None
    except RiskLimitExceeded as refused:
        await risk.flag(chain_id, order.member.id, refused, now)
        raise
    return placed


async def _twin(chain_id: int, order: OrderInput, error: Exception) -> Placed | Exception:
    """What committed first under one of the order's unique keys: the same txn_id (its result is
    the answer) or the same dynamic member code (409). Any other conflict is a bug, not a refusal."""
    if (first := await placed_before(chain_id, order.source, order.txn_id)) is not None:
        return first
    if order.member_code and await Order.exists(chain_id=chain_id, member_code=order.member_code):
        return CodeUsed("This member code was used for an order already: ask for a fresh one")
    return error


# The order row, the transaction's first write. A twin under the same (chain, source, txn_id) or
# the same dynamic member code waits here for the first to commit and then inserts nothing.
RECORD = """
INSERT INTO orders (chain_id, store_id, channel, source, txn_id, member_id, member_code, occurred_at, received_at,
  period, tier_before, subtotal, tier_discount, coupon_discount, points_discount, payable, points_redeemed,
  points_earned, stored_value_principal, stored_value_bonus, growth_earned, lines, payments, coupons, result,
  refunded_amount, refund_state, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, 0, $19, $20, $21, $22,
  '{}', 0, '{}', $23)
ON CONFLICT DO NOTHING RETURNING id
"""


@dataclass
class Recorded:
    """What the rest of an order's transaction needs of its row."""

    id: int
    source: str
    txn_id: str
    member_id: int | None
    occurred_at: datetime
    period: int
    points_redeemed: int
    unwritten: list | None = None  # PostgreSQL, a member's order: RECORD's parameters, for its last statement


async def _record(chain_id: int, order: OrderInput, figures: pricing.Quote, program: Program,
                  now: datetime) -> Recorded:
    """The order's row: written now, or (PostgreSQL, a member's order) kept for the order's last
    statement, its id drawn by the ledger entry's statement (``Entry.ref_sequence``), so that the
    row is written once, with its result; a twin of the sale then collides on the entry's key, one
    of another sale with the same dynamic code on the row's."""
    member = order.member
    row = Recorded(0, order.source, order.txn_id, member.id if member else None, order.occurred_at,
                   tiers.period_of(order.occurred_at, program), order.redeem_points if figures.points_discount else 0)
    params = [chain_id, order.store_id, order.channel, order.source, order.txn_id, row.member_id, order.member_code,
              order.occurred_at, order.received_at or now, row.period, member.tier_code if member else None,
              figures.subtotal, figures.tier_discount, figures.coupon_discount, figures.points_discount,
              figures.payable, row.points_redeemed, figures.points_to_earn, figures.growth_to_earn,
              _json([_line_json(line) for line in figures.lines]),
              _json([{"method": p.method, "amount": p.amount} for p in order.payments]), _json(order.coupons),
              timezone.now()]
    if member is not None and sql.dialect() == "postgres":
        row.unwritten = params
        return row
    inserted = await sql.rows(RECORD, *params)
    if not inserted:
        raise DuplicateEntry(f"order:{order.source}:{order.txn_id}")
    row.id = int(inserted[0]["id"])
    return row


def _json(value) -> str:
    return orjson.dumps(value).decode()


def _line_json(line: pricing.PricedLine) -> dict:
    return {"sku": line.sku, "category": line.category, "qty": line.qty, "amount": line.amount,
            "tier_share": line.tier_share, "coupon_share": line.coupon_share, "points_share": line.points_share,
            "eligible": line.eligible, "factor": str(line.factor), "refunded_qty": 0}


async def _apply(chain_id: int, order: OrderInput, figures: pricing.Quote, program: Program, row: Recorded,
                 now: datetime, seal: Seal | None) -> Placed:
    member = order.member
    pending_until, principal, bonus, tier_after, kept = None, 0, 0, None, ("", [])
    created = ("order.created", {"order_id": row.id, "source": row.source, "txn_id": row.txn_id,
                                 "member_id": member.id if member else None, "payable": figures.payable})
    tier = {"code": _level(program, member).code, "name": _level(program, member).name, "changed": False}
    balances = None
    if member is not None:
        principal, bonus = await _split_stored_value(chain_id, member.id, order.payments)
        pending_until = order.hold_until or _pending_until(program, order.occurred_at)
        legs = _order_legs(member.id, row.points_redeemed, figures, principal, bonus, pending_until is not None)
        entry = await _post_order(chain_id, order, row, legs, tiers.tally(program, row.period, tiers.Figures(
            growth=figures.growth_to_earn, points_earned=figures.points_to_earn, spend=figures.payable, orders=1,
            last_order_at=order.occurred_at), now), program.timezone)
        if row.unwritten is not None:
            row.id = entry.ref_id
            created = ("order.created", {**created[1], "order_id": row.id})
        await risk.check_order(chain_id, member.id, order.occurred_at, program,
                               unwritten=row.points_redeemed if row.unwritten is not None else None)
        kept = await _move_points(chain_id, member.id, entry, row, figures.points_to_earn, pending_until, program)
        tier = await tiers.raise_tier(member, program, now, entry.standing)
        tier_after = member.tier_code if tier["changed"] else None
        balances = shown_balances(entry.accounts)
        events = [balance_changed(member.id, entry.id, balances), created]
    else:
        events = [created]
    result = {
        "order_id": row.id, "txn_id": row.txn_id, "member_id": member.id if member else None,
        "subtotal": figures.subtotal, "tier_discount": figures.tier_discount,
        "coupon_discount": figures.coupon_discount, "points_discount": figures.points_discount,
        "payable": figures.payable, "points_redeemed": row.points_redeemed, "points_earned": figures.points_to_earn,
        "points_pending_until": pending_until.isoformat() if pending_until else None,
        "campaign": figures.campaign,
        "balances": balances,
        "tier": tier, "duplicate": False,
    }
    placed = Placed(result, False)
    sealed = await sealing(seal, placed)
    used = coupons.redeeming(chain_id, order.coupons, member.id, row.id, now) if member and order.coupons else ("", [])
    await _keep_result(chain_id, row, result, principal, bonus, tier_after, events, now, kept, used, sealed, seal,
                       len(order.coupons))
    return placed


async def _keep_result(chain_id: int, row: Recorded, result: dict, principal: int, bonus: int,
                       tier_after: str | None, events: list[tuple[str, dict]], now: datetime,
                       lot: tuple[str, list], used: tuple[str, list], sealed: tuple[str, list], seal: Seal | None,
                       coupon_count: int) -> None:
    """The order's points lot, its result and stored-value split, its outbox events, its coupons
    marked redeemed (all of them, or the order is refused: one was used meanwhile) and the
    caller's stored answer: one statement on PostgreSQL."""
    insert, params, _ = outbox.inserting(chain_id, events, now)
    if row.unwritten is not None:
        written = (RECORD_WITH_RESULT, [*row.unwritten, row.id, _json(result), principal, bonus, tier_after])
    else:
        written = (RESULT, [chain_id, row.id, _json(result), principal, bonus, tier_after])
    *_, redeemed, stored = await sql.together(lot, written, (insert, params), used, sealed)
    if redeemed != coupon_count:
        raise CouponNotUsable("A coupon of this order was used by another order meanwhile")
    confirm(seal, stored)


RESULT = ("UPDATE orders SET result = $3, stored_value_principal = $4, stored_value_bonus = $5, tier_after = $6 "
          "WHERE chain_id = $1 AND id = $2")
# The whole row at once (``RECORD``'s columns and parameters, then its id and what ``RESULT``
# sets): no ON CONFLICT, so that a twin under the same dynamic code fails its transaction.
RECORD_WITH_RESULT = """
INSERT INTO orders (chain_id, store_id, channel, source, txn_id, member_id, member_code, occurred_at, received_at,
  period, tier_before, subtotal, tier_discount, coupon_discount, points_discount, payable, points_redeemed,
  points_earned, stored_value_principal, stored_value_bonus, growth_earned, lines, payments, coupons, result,
  refunded_amount, refund_state, created_at, id, tier_after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $26, $27, $19, $20, $21, $22,
  $25, 0, '{}', $23, $24, $28)
"""


async def _post_order(chain_id: int, order: OrderInput, row: Recorded, legs: list[ledger.Leg],
                      tally: tiers.Tally, zone: str) -> ledger.Posted:
    try:
        return await ledger.post(chain_id, ledger.Entry(
            key=f"order:{order.source}:{order.txn_id}", kind="order", member_id=row.member_id, channel=order.channel,
            ref="order:" if row.unwritten is not None else f"order:{row.id}", occurred_at=order.occurred_at,
            legs=legs, tally=tally, zone=zone, ref_sequence="orders_id_seq" if row.unwritten is not None else None))
    except InsufficientPoints:
        available = await points.points_balance(chain_id, row.member_id)
        raise InsufficientPoints(f"{row.points_redeemed} points asked, {max(available, 0)} available") from None


def _pending_until(program: Program, occurred_at: datetime) -> datetime | None:
    days = program.points.pending_days
    return occurred_at + timedelta(days=days) if days > 0 else None


async def _split_stored_value(chain_id: int, member_id: int, payments: list[Payment]) -> tuple[int, int]:
    """Stored-value payments spend principal first, then bonus."""
    wanted = sum(p.amount for p in payments if p.method == "stored_value")
    if not wanted:
        return 0, 0
    balances = await ledger.balances(chain_id, member_id)
    principal = min(wanted, max(balances.get("sv_principal", 0), 0))
    bonus = wanted - principal
    if bonus > balances.get("sv_bonus", 0):
        raise InsufficientStoredValue(f"{wanted} fen asked, {principal + max(balances.get('sv_bonus', 0), 0)} available")
    return principal, bonus


def _order_legs(member_id: int, redeemed: int, figures: pricing.Quote, principal: int, bonus: int,
                pending: bool) -> list[ledger.Leg]:
    earned = figures.points_to_earn
    return [
        ledger.Leg("points", -redeemed, member_id, guard=True), ledger.Leg("points_redeemed", redeemed),
        ledger.Leg("sv_principal", -principal, member_id, guard=True), ledger.Leg("sv_spent", principal),
        ledger.Leg("sv_bonus", -bonus, member_id, guard=True), ledger.Leg("bonus_spent", bonus),
        ledger.Leg("points_pending" if pending else "points", earned, member_id), ledger.Leg("points_issued", -earned),
        ledger.Leg("growth", figures.growth_to_earn, member_id), ledger.Leg("growth_issued", -figures.growth_to_earn),
    ]


async def _move_points(chain_id: int, member_id: int, entry: ledger.Posted, row: Recorded, earned: int,
                       pending_until: datetime | None, program: Program) -> tuple[str, list]:
    """Draws the redeemed points from the member's lots now; returns the write that keeps the
    earned points (a lot, or a pending row) for the order's last statement."""
    if row.points_redeemed:
        await points.take_from_lots(chain_id, member_id, row.points_redeemed)
    if not earned:
        return "", []
    if pending_until is not None:
        return PENDING, [chain_id, member_id, row.id, earned, pending_until]
    return points.new_lot(chain_id, member_id, entry.id, entry.balance(member_id, "points"), earned,
                          row.occurred_at, program, order_id=row.id)


PENDING = ("INSERT INTO pending_points (chain_id, member_id, order_id, amount, remaining, vest_at, vested) "
           "VALUES ($1, $2, $3, $4, $4, $5, false)")


# ---- refunds -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefundInput:
    source: str
    txn_id: str
    refund_id: str
    lines: list[tuple[str, int]] | None = None
    amount: int | None = None


async def refund_order(chain_id: int, refund: RefundInput, program: Program, now: datetime,
                       seal: Seal | None = None) -> Placed:
    """Take back, pro rata, what an order gave and return what it took; once per refund_id.

    The order row is locked first; a resend (its refund row, or its journal entry, already
    there) rolls back and answers the first result, as does one refused meanwhile (the first
    refund took what was left)."""
    try:
        async with in_transaction():
            order = await sql.one(Order, sql.locking(ORDER_BY_KEY, "FOR NO KEY UPDATE"),
                                  chain_id, refund.source, refund.txn_id)
            if order is None:
                raise OrderNotFound(f"No order {refund.txn_id!r} at this store")
            placed = await _apply_refund(chain_id, order, refund, program, now, seal)
    except (IntegrityError, DuplicateEntry, LoyaltyError):
        if (first := await refunded_before(chain_id, refund)) is None:
            raise
        return first
    return placed


# A refund reads its order by ORDER_BY_KEY, locked FOR NO KEY UPDATE for its transaction (NO KEY:
# a lot or pending row that names this order, a vest running now, may still take its foreign-key
# share lock, or the two would deadlock); then the refund's row, which a resend of the same
# refund_id cannot insert again; what the refund leaves on the order; the refund's answer.
REFUND = ("INSERT INTO refunds (chain_id, order_id, refund_id, amount, lines, result, created_at) "
          "VALUES ($1, $2, $3, $4, $5, '{}', $6) ON CONFLICT DO NOTHING RETURNING id")
REFUNDED = "UPDATE orders SET refunded_amount = $3, refund_state = $4, lines = $5 WHERE chain_id = $1 AND id = $2"
REFUND_RESULT = "UPDATE refunds SET result = $3 WHERE chain_id = $1 AND id = $2"


async def refunded_before(chain_id: int, refund: RefundInput) -> Placed | None:
    done = await Refund.get_or_none(chain_id=chain_id, order__chain_id=chain_id, order__source=refund.source,
                                    order__txn_id=refund.txn_id, refund_id=refund.refund_id)
    return Placed({**done.result, "duplicate": True}, True) if done is not None else None


def _figures(order: Order) -> pricing.OrderFigures:
    state = order.refund_state or {}
    lines = [pricing.PricedLine(sku=l["sku"], category=l["category"], qty=l["qty"], amount=l["amount"],
                                tier_share=l["tier_share"], coupon_share=l["coupon_share"],
                                points_share=l["points_share"], eligible=l["eligible"],
                                factor=Decimal(l["factor"])) for l in order.lines]
    return pricing.OrderFigures(
        payable=order.payable, subtotal=order.subtotal, points_earned=order.points_earned,
        points_redeemed=order.points_redeemed, sv_principal_paid=order.stored_value_principal,
        sv_bonus_paid=order.stored_value_bonus, growth_earned=order.growth_earned, lines=lines,
        refunded_qty=[l.get("refunded_qty", 0) for l in order.lines], refunded_amount=order.refunded_amount,
        refunded_ratio=Fraction(state.get("ratio", "0")), refunded_earn_ratio=Fraction(state.get("earn_ratio", "0")),
        points_reversed=state.get("points_reversed", 0), points_returned=state.get("points_returned", 0),
        sv_principal_returned=state.get("sv_principal_returned", 0), sv_bonus_returned=state.get("sv_bonus_returned", 0),
        growth_reversed=state.get("growth_reversed", 0),
    )


async def _apply_refund(chain_id: int, order: Order, refund: RefundInput, program: Program, now: datetime,
                        seal: Seal | None) -> Placed:
    figures = _figures(order)
    refunded_qty = figures.refunded_qty
    if refund.lines is not None:
        share, refunded_qty = pricing.refund_by_lines(figures, refund.lines)
    else:
        share = pricing.refund_by_amount(figures, refund.amount or 0)
    inserted = await sql.rows(REFUND, chain_id, order.id, refund.refund_id, share.amount,
                              _json([{"sku": s, "qty": q} for s, q in (refund.lines or [])]), timezone.now())
    if not inserted:
        raise DuplicateEntry(f"refund:{order.id}:{refund.refund_id}")
    balances, tier = None, None
    refunded = ("order.refunded", {"order_id": order.id, "refund_id": refund.refund_id, "amount": share.amount,
                                   "member_id": order.member_id})
    events = [refunded]
    if order.member_id is not None:
        from_pending = await _pending_of(order, share.points_reversed) if order.result.get("points_pending_until") else 0
        entry = await _post_refund(chain_id, order, refund, share, from_pending, program, now)
        await _refund_points(chain_id, order, entry, share, from_pending, program, now)
        tier = await _refund_tier(chain_id, order, entry, program, now)
        balances = shown_balances(entry.accounts)
        events.insert(0, balance_changed(order.member_id, entry.id, balances))
    _remember_refund(order, figures, share, refunded_qty)
    restored = await coupons.restore(chain_id, order.id, now) if share.ratio == 1 and order.coupons else []
    result = {"refund_id": refund.refund_id, "order_id": order.id, "txn_id": order.txn_id, "amount": share.amount,
              "points_reversed": share.points_reversed, "points_returned": share.points_returned,
              "stored_value_returned": share.sv_principal_returned + share.sv_bonus_returned,
              "coupons_restored": restored, "balances": balances, "tier": tier, "duplicate": False}
    placed = Placed(result, False)
    insert, params, _ = outbox.inserting(chain_id, events, now)
    *_, stored = await sql.together(
        (REFUNDED, [chain_id, order.id, order.refunded_amount, _json(order.refund_state), _json(order.lines)]),
        (REFUND_RESULT, [chain_id, int(inserted[0]["id"]), _json(result)]), (insert, params),
        await sealing(seal, placed))
    confirm(seal, stored)
    return placed


async def _post_refund(chain_id: int, order: Order, refund: RefundInput, share: pricing.RefundShare,
                       from_pending: int, program: Program, now: datetime) -> ledger.Posted:
    """The refund's entry; it takes the refunded part out of the figures of the order's month (a
    wholly refunded order no longer counts as a purchase)."""
    member_id = order.member_id
    from_available = share.points_reversed - from_pending
    legs = [
        ledger.Leg("points_pending", -from_pending, member_id), ledger.Leg("points", -from_available, member_id),
        ledger.Leg("points_issued", share.points_reversed),
        ledger.Leg("points", share.points_returned, member_id), ledger.Leg("points_redeemed", -share.points_returned),
        ledger.Leg("sv_principal", share.sv_principal_returned, member_id),
        ledger.Leg("sv_spent", -share.sv_principal_returned),
        ledger.Leg("sv_bonus", share.sv_bonus_returned, member_id), ledger.Leg("bonus_spent", -share.sv_bonus_returned),
        ledger.Leg("growth", -share.growth_reversed, member_id), ledger.Leg("growth_issued", share.growth_reversed),
    ]
    return await ledger.post(chain_id, ledger.Entry(
        key=f"refund:{order.id}:{refund.refund_id}", kind="refund", member_id=member_id, channel=order.channel,
        ref=f"order:{order.id}", occurred_at=now, legs=legs, zone=program.timezone,
        tally=tiers.tally(program, order.period, tiers.Figures(
            growth=-share.growth_reversed, points_earned=-share.points_reversed, spend=-share.amount,
            orders=-1 if share.ratio == 1 else 0), now)))


async def _refund_tier(chain_id: int, order: Order, entry: ledger.Posted, program: Program, now: datetime) -> dict:
    """Return the member to the tier they had before the order if the figures, as the refund's
    entry left them, no longer reach the level the order lifted them to."""
    member = await sql.one(Member, MEMBER_BY_ID.format(columns=""), order.member_id, chain_id)
    return await tiers.settle_after_refund(member, program, order.tier_after, order.tier_before, now, entry.standing)


async def _pending_of(order: Order, wanted: int) -> int:
    """Points of this order still pending are reversed there first. The pending row is locked
    before any account row, the same order ``vest_points`` takes them in: no deadlock."""
    pending = await PendingPoints.select_for_update().get_or_none(chain_id=order.chain_id, order_id=order.id,
                                                                  vested=False)
    return min(wanted, int(pending.remaining)) if pending else 0


async def _refund_points(chain_id: int, order: Order, entry: ledger.Posted, share: pricing.RefundShare,
                         from_pending: int, program: Program, now: datetime) -> None:
    if from_pending:
        await PendingPoints.filter(chain_id=chain_id, order_id=order.id, vested=False).update(
            remaining=F("remaining") - from_pending)
    if share.points_reversed - from_pending:
        await points.take_from_lots(chain_id, order.member_id, share.points_reversed - from_pending, order_first=order.id)
    if share.points_returned:
        await points.add_lot(chain_id, order.member_id, entry, share.points_returned, now, program)


def _remember_refund(order: Order, figures: pricing.OrderFigures, share: pricing.RefundShare,
                     refunded_qty: list[int]) -> None:
    order.refunded_amount = figures.refunded_amount + share.amount
    order.lines = [{**line, "refunded_qty": qty} for line, qty in zip(order.lines, refunded_qty)]
    order.refund_state = {
        "ratio": str(share.ratio), "earn_ratio": str(share.earn_ratio),
        "points_reversed": figures.points_reversed + share.points_reversed,
        "points_returned": figures.points_returned + share.points_returned,
        "sv_principal_returned": figures.sv_principal_returned + share.sv_principal_returned,
        "sv_bonus_returned": figures.sv_bonus_returned + share.sv_bonus_returned,
        "growth_reversed": figures.growth_reversed + share.growth_reversed,
    }
