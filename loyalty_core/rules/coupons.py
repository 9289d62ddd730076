"""What coupons take off an order: pure arithmetic, no I/O, no clock.

Coupons come off what the tier discount left (``after_tier``), one after another in the order
sent, each on what the ones before it left; the order's pricing then shares their sum over the
lines by largest remainder, as every discount. A coupon that cannot be used raises
``CouponNotUsable`` with the reason, and the order applies nothing.

- ``cash``: ``amount_off``, once ``min_spend`` is reached;
- ``percent``: ``percent_off`` % of what is left, rounded down, at most ``max_off`` (when set);
- ``gift``: one unit of the line with ``sku`` free (its ``unit_price``), and the order must hold it.

``min_spend`` is compared with what the tier discount left, before any coupon. Several coupons
in one order are allowed only when every one of them is ``stackable``; the same code twice never.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import CouponNotUsable
from .pricing import Line


@dataclass(frozen=True)
class Held:
    """A coupon as an order may use it: its code, owner, state and validity, and its template's offer."""

    code: str
    member_id: int
    status: str
    valid_from: datetime
    valid_to: datetime
    kind: str
    amount_off: int
    percent_off: int
    max_off: int | None
    sku: str | None
    min_spend: int
    stackable: bool


def usable(coupon: Held, member_id: int | None, at: datetime) -> None:
    """Refuse a coupon that is not this member's to use at ``at``."""
    if member_id is None:
        raise CouponNotUsable(f"Coupon {coupon.code}: a guest sale cannot use a coupon; name its member")
    if coupon.member_id != member_id:
        raise CouponNotUsable(f"Coupon {coupon.code} belongs to another member")
    if coupon.status == "redeemed":
        raise CouponNotUsable(f"Coupon {coupon.code} was used already")
    if coupon.status != "issued":
        raise CouponNotUsable(f"Coupon {coupon.code} was voided")
    if at >= coupon.valid_to:
        raise CouponNotUsable(f"Coupon {coupon.code} expired at {coupon.valid_to.isoformat()}")
    if at < coupon.valid_from:
        raise CouponNotUsable(f"Coupon {coupon.code} is valid from {coupon.valid_from.isoformat()}")


def value(coupon: Held, lines: list[Line], left: int, after_tier: int) -> int:
    """What ``coupon`` takes off when ``left`` fen remain to pay (``after_tier`` for its min_spend)."""
    if after_tier < coupon.min_spend:
        raise CouponNotUsable(f"Coupon {coupon.code} needs a spend of {coupon.min_spend} fen; "
                              f"this order comes to {after_tier} fen")
    if coupon.kind == "cash":
        return min(coupon.amount_off, left)
    if coupon.kind == "percent":
        off = left * coupon.percent_off // 100
        return min(off, coupon.max_off) if coupon.max_off is not None else off
    gift = next((line for line in lines if line.sku == coupon.sku), None)
    if gift is None:
        raise CouponNotUsable(f"Coupon {coupon.code} gives {coupon.sku!r}, which is not in this order")
    return min(gift.unit_price, gift.amount, left)


def discount(coupons: list[Held], lines: list[Line], after_tier: int, member_id: int | None, at: datetime) -> int:
    """The coupons' total discount for this order, or ``CouponNotUsable`` with the first reason."""
    codes = [coupon.code for coupon in coupons]
    if len(set(codes)) != len(codes):
        raise CouponNotUsable("The same coupon is sent twice")
    if len(coupons) > 1 and not all(coupon.stackable for coupon in coupons):
        plain = next(coupon.code for coupon in coupons if not coupon.stackable)
        raise CouponNotUsable(f"Coupon {plain} cannot be combined with another coupon")
    total = 0
    for coupon in coupons:
        usable(coupon, member_id, at)
        total += value(coupon, lines, after_tier - total, after_tier)
    return total
