"""Pricing an order and sharing out its refunds: pure arithmetic, no I/O, no clock.

- Money is integer fen, points are integers; ratios and multipliers are exact (``Decimal`` read
  as ``Fraction``), and every figure is rounded down once, at the end.
- Tier, then coupon, then points discounts come off the subtotal. Each is shared among all lines
  (excluded categories too) pro rata to their amounts by largest remainder; a line's eligible
  amount is what is left of it, and earns at its category factor (0 when excluded).
- Earn: floor(sum(eligible x factor) x points/per_amount x tier multiplier x campaign factor).
- Refunds work on cumulative targets: each refund takes back floor(figure x cumulative ratio)
  less what earlier refunds took, so partial refunds add up exactly to a full one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from ..errors import InvalidRedeemPoints, RedeemOverLimit, RefundExceedsOrder, ValidationFailed
from ..program import Campaign, Level, Points, Program, Redeem


@dataclass(frozen=True)
class Line:
    """One order line as the till sent it."""

    sku: str
    category: str | None
    qty: int
    unit_price: int
    amount: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    category: str | None
    qty: int
    amount: int
    tier_share: int
    coupon_share: int
    points_share: int
    eligible: int
    factor: Decimal

    @property
    def payable(self) -> int:
        return self.eligible


@dataclass(frozen=True)
class Quote:
    subtotal: int
    tier_discount: int
    coupon_discount: int
    points_discount: int
    payable: int
    points_to_earn: int
    growth_to_earn: int
    campaign: str | None
    campaign_factor: Decimal
    lines: list[PricedLine]


# ---- sharing and discounts ---------------------------------------------------------------

def allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` pro rata to ``weights`` by largest remainder: the shares sum exactly to
    ``total``, and the fen that rounding leaves over go to the largest remainders, earlier first."""
    if any(weight < 0 for weight in weights):
        raise ValueError("weights must not be negative")
    whole = sum(weights)
    if whole == 0:
        if total:
            raise ValueError(f"cannot share {total} among zero weights")
        return [0] * len(weights)
    shares = [total * weight // whole for weight in weights]
    remainders = [total * weight % whole for weight in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def tier_discount(subtotal: int, level: Level) -> int:
    return math.floor(subtotal * Fraction(level.discount_percent) / 100)


def points_discount(redeem_points: int, base: int, subtotal: int, redeem: Redeem) -> int:
    """Fen taken off for ``redeem_points``: at most ``max_ratio`` of the subtotal and at most
    ``base``, what the tier and coupon discounts left to pay."""
    if redeem_points < 0 or redeem_points % redeem.points:
        raise InvalidRedeemPoints(f"redeem_points must be a multiple of {redeem.points}")
    discount = redeem_points // redeem.points * redeem.amount
    limit = min(math.floor(Fraction(redeem.max_ratio) * subtotal), base)
    if discount > limit:
        most = limit // redeem.amount * redeem.points
        raise RedeemOverLimit(f"At most {most} points can be redeemed on this order.", max_redeem_points=most)
    return discount


def _share_discounts(discounts: list[int], amounts: list[int]) -> list[list[int]]:
    """Each discount shared pro rata to the line amounts, on its own.

    Rounding each one up separately can push a nearly free line's shares past its amount (a
    negative eligible amount); the fen over then moves, later discounts first, to the line with
    the most room left. Shares are only ever moved, so every discount still sums exactly."""
    shares = [allocate(discount, amounts) for discount in discounts]

    def room(i: int) -> int:
        return amounts[i] - sum(share[i] for share in shares)

    for i in range(len(amounts)):
        for share in reversed(shares):
            while room(i) < 0 and share[i] > 0:
                target = max(range(len(amounts)), key=lambda j: (room(j), -j))
                share[i] -= 1
                share[target] += 1
    return shares


# ---- earning -----------------------------------------------------------------------------

def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _is_active(campaign: Campaign, local: datetime) -> bool:
    if campaign.days_of_month is not None and local.day not in campaign.days_of_month:
        return False
    if campaign.weekdays is not None and local.isoweekday() not in campaign.weekdays:
        return False
    if campaign.hours is not None:
        start, end = (_minutes(part) for part in campaign.hours.split("-"))
        return start <= local.hour * 60 + local.minute < end
    return True


def active_campaign(campaigns: list[Campaign], at: datetime, tz: ZoneInfo) -> tuple[str | None, Decimal]:
    """The active campaign with the largest factor (the first on ties), judged on the chain's
    local calendar; ``(None, 1)`` when none is active."""
    if at.tzinfo is None:
        raise ValueError("`at` must carry a timezone")
    local = at.astimezone(tz)
    best: Campaign | None = None
    for campaign in campaigns:
        if _is_active(campaign, local) and (best is None or campaign.factor > best.factor):
            best = campaign
    return (best.name, best.factor) if best else (None, Decimal(1))


def earn_points(lines: list[PricedLine], points: Points, earn_multiplier: Decimal, campaign_factor: Decimal) -> int:
    weight = sum((line.eligible * Fraction(line.factor) for line in lines), Fraction(0))
    rate = Fraction(points.earn.points, points.earn.per_amount)
    return math.floor(weight * rate * Fraction(earn_multiplier) * Fraction(campaign_factor))


def _factor(category: str | None, points: Points) -> Decimal:
    if category in points.exclude_categories:
        return Decimal(0)
    return points.category_multipliers.get(category, Decimal(1))


# ---- the order ---------------------------------------------------------------------------

def _check_order(lines: list[Line], coupon_discount: int) -> None:
    errors = [] if lines else [{"field": "lines", "message": "at least one line is needed"}]
    for i, line in enumerate(lines):
        if line.qty < 1:
            errors.append({"field": f"lines[{i}].qty", "message": "must be at least 1"})
        for name in ("unit_price", "amount"):
            if getattr(line, name) < 0:
                errors.append({"field": f"lines[{i}].{name}", "message": "must not be negative"})
    if coupon_discount < 0:
        errors.append({"field": "coupon_discount", "message": "must not be negative"})
    if errors:
        raise ValidationFailed(errors)


def price_order(lines: list[Line], program: Program, level: Level, coupon_discount: int,
                redeem_points: int, at: datetime, priced: bool = False) -> Quote:
    """``priced``: the channel set what the buyer paid (a marketplace, WeChat Pay): no tier
    discount is taken here, the tier's earning multiplier still counts."""
    _check_order(lines, coupon_discount)
    subtotal = sum(line.amount for line in lines)
    tier = 0 if priced else tier_discount(subtotal, level)
    coupon = min(coupon_discount, subtotal - tier)
    points = points_discount(redeem_points, subtotal - tier - coupon, subtotal, program.points.redeem)
    tiers, coupons, redeems = _share_discounts([tier, coupon, points], [line.amount for line in lines])
    priced = [
        PricedLine(line.sku, line.category, line.qty, line.amount, t, c, p, line.amount - t - c - p,
                   _factor(line.category, program.points))
        for line, t, c, p in zip(lines, tiers, coupons, redeems)
    ]
    campaign, factor = active_campaign(program.points.campaigns, at, ZoneInfo(program.timezone))
    payable = subtotal - tier - coupon - points
    return Quote(subtotal, tier, coupon, points, payable,
                 earn_points(priced, program.points, level.earn_multiplier, factor),
                 payable // 100, campaign, factor, priced)


# ---- refunds -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RefundShare:
    ratio: Fraction
    earn_ratio: Fraction
    amount: int
    points_reversed: int
    points_returned: int
    sv_principal_returned: int
    sv_bonus_returned: int
    growth_reversed: int


@dataclass(frozen=True)
class OrderFigures:
    """What the order committed, and what earlier refunds already took back (cumulative)."""

    payable: int
    subtotal: int
    points_earned: int
    points_redeemed: int
    sv_principal_paid: int
    sv_bonus_paid: int
    growth_earned: int
    lines: list[PricedLine]
    refunded_qty: list[int]
    refunded_amount: int
    refunded_ratio: Fraction
    refunded_earn_ratio: Fraction
    points_reversed: int
    points_returned: int
    sv_principal_returned: int
    sv_bonus_returned: int
    growth_reversed: int


def _weighted(parts: list[Fraction], weights: list[Fraction]) -> Fraction | None:
    whole = sum(weights)
    return sum((w * p for w, p in zip(weights, parts)), Fraction(0)) / whole if whole else None


def _line_shares(order: OrderFigures, qty: list[int]) -> tuple[Fraction, Fraction]:
    """Shares of the order's value and of its earning weight that ``qty`` refunded per line covers."""
    parts = [Fraction(done, line.qty) for done, line in zip(qty, order.lines)]
    value = _weighted(parts, [Fraction(line.amount) for line in order.lines])
    if value is None:
        value = _weighted(parts, [Fraction(line.qty) for line in order.lines]) or Fraction(0)
    earn = _weighted(parts, [line.eligible * Fraction(line.factor) for line in order.lines])
    return value, value if earn is None else earn


def _advance(done: Fraction, before: Fraction, after: Fraction) -> Fraction:
    """The cumulative ratio after a refund that moves a measure from ``before`` to ``after``: the
    same share of what was still unrefunded. It is ``after`` itself when every earlier refund used
    this measure, and exactly 1 when ``after`` is; it only differs when line and amount refunds mix."""
    if before == 1:
        return done
    return done + (1 - done) * (after - before) / (1 - before)


def _targets(order: OrderFigures, ratio: Fraction, earn_ratio: Fraction, amount: int) -> RefundShare:
    """This refund's part of each figure: floor(figure x cumulative ratio) less what was done."""

    def part(total: int, share: Fraction, done: int) -> int:
        return math.floor(total * share) - done

    return RefundShare(
        ratio=ratio,
        earn_ratio=earn_ratio,
        amount=amount,
        points_reversed=part(order.points_earned, earn_ratio, order.points_reversed),
        points_returned=part(order.points_redeemed, ratio, order.points_returned),
        sv_principal_returned=part(order.sv_principal_paid, ratio, order.sv_principal_returned),
        sv_bonus_returned=part(order.sv_bonus_paid, ratio, order.sv_bonus_returned),
        growth_reversed=part(order.growth_earned, ratio, order.growth_reversed),
    )


def _refund_qty(order: OrderFigures, lines: list[tuple[str, int]]) -> list[int]:
    """The cumulative refunded qty per order line once ``lines`` are taken back, a sku filling its
    order lines in order."""
    skus = {line.sku for line in order.lines}
    errors = [] if lines else [{"field": "lines", "message": "at least one line is needed"}]
    for i, (sku, qty) in enumerate(lines):
        if sku not in skus:
            errors.append({"field": f"lines[{i}].sku", "message": "not on this order"})
        if qty <= 0:
            errors.append({"field": f"lines[{i}].qty", "message": "must be at least 1"})
    if errors:
        raise ValidationFailed(errors)
    done = list(order.refunded_qty)
    for sku, qty in lines:
        rows = [j for j, line in enumerate(order.lines) if line.sku == sku]
        left = sum(order.lines[j].qty - done[j] for j in rows)
        if qty > left:
            raise RefundExceedsOrder(f"Only {left} of {sku} left to refund.")
        for j in rows:
            take = min(qty, order.lines[j].qty - done[j])
            done[j] += take
            qty -= take
    return done


def refund_by_lines(order: OrderFigures, lines: list[tuple[str, int]]) -> tuple[RefundShare, list[int]]:
    """Refund whole units: the ratio is the refunded share of the line amounts, the earn ratio the
    refunded share of the earning weight (eligible x factor)."""
    if order.refunded_ratio >= 1:
        raise RefundExceedsOrder("This order was refunded in full already.")
    refunded_qty = _refund_qty(order, lines)
    value_before, earn_before = _line_shares(order, order.refunded_qty)
    value_after, earn_after = _line_shares(order, refunded_qty)
    ratio = _advance(order.refunded_ratio, value_before, value_after)
    earn_ratio = _advance(order.refunded_earn_ratio, earn_before, earn_after)
    amount = math.floor(order.payable * ratio) - order.refunded_amount
    return _targets(order, ratio, earn_ratio, amount), refunded_qty


def refund_by_amount(order: OrderFigures, amount: int) -> RefundShare:
    """Refund fen of the payable: every figure comes back in the same proportion."""
    if amount <= 0:
        raise ValidationFailed([{"field": "amount", "message": "must be at least 1"}])
    left = order.payable - order.refunded_amount
    if amount > left:
        raise RefundExceedsOrder(f"Only {left} fen left to refund.")
    ratio = Fraction(order.refunded_amount + amount, order.payable)
    earn_ratio = _advance(order.refunded_earn_ratio, order.refunded_ratio, ratio)
    return _targets(order, ratio, earn_ratio, amount)
