"""Points lots: when a lot expires, and which lots a spend draws from."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from ..program import Expiry
from .calendar import shift_months


def lot_expiry(vested_at: datetime, expiry: Expiry, tz: ZoneInfo) -> datetime | None:
    """The instant a lot vested at ``vested_at`` expires, in the chain's timezone.

    Points live through their last day: ``rolling_months`` ends with the local day N months after
    vesting (clamped to the month's last day), ``year_end`` with 31 December of the year
    ``years_after`` years on. The lot expires at the following local midnight.
    """
    if expiry.mode == "never":
        return None
    local = vested_at.astimezone(tz)
    if expiry.mode == "year_end":
        return datetime.combine(date(local.year + expiry.years_after + 1, 1, 1), time(0), tz)
    last_day = shift_months(local, expiry.months or 0).date()
    return datetime.combine(last_day + timedelta(days=1), time(0), tz)


@dataclass(frozen=True)
class LotView:
    id: int
    remaining: int
    expires_at: datetime | None
    first: bool = False  # drawn before every other lot (the refunded order's own lot)


def draw_order(lots: list[LotView]) -> list[LotView]:
    """Lots marked ``first`` come first; then lots that expire first; lots that never expire last."""
    return sorted(lots, key=lambda lot: (not lot.first, lot.expires_at is None,
                                         lot.expires_at or datetime.max.replace(tzinfo=timezone.utc), lot.id))


def draw(lots: list[LotView], amount: int) -> list[tuple[int, int]]:
    """``(lot id, points taken)`` to cover ``amount`` from the lots, soonest-expiring first.
    Takes what there is when the lots hold less (a claw-back into a negative balance)."""
    taken: list[tuple[int, int]] = []
    left = amount
    for lot in draw_order(lots):
        if left <= 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            taken.append((lot.id, take))
            left -= take
    return taken
