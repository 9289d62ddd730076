"""The program's risk limits on one member's orders (``risk`` in the program).

- ``max_orders_per_hour``: at most this many orders with ``occurred_at`` in the hour up to the
  order's own (this one included);
- ``max_redeem_points_per_day``: at most this many points redeemed in orders of the order's day
  (the chain's calendar day of ``occurred_at``, this one included).

Checked inside the order's transaction right after its ledger entry has locked the member's
accounts, so concurrent orders of one member are counted one after another (two tills cannot
both slip under a limit). Over a limit the order is refused with 422 ``risk_limit_exceeded``
(``limit`` in the problem names which), applies nothing, and a ``risk`` review is opened for an
operator (one pending per member and limit). One statement, and only when a limit is set; it
reads the member's orders of the last day at most.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from . import reviews, sql
from .errors import RiskLimitExceeded
from .program import Program

HOUR = timedelta(hours=1)
RECENT = ("SELECT COALESCE(SUM(CASE WHEN occurred_at > $4 THEN 1 ELSE 0 END), 0) AS orders, "
          "COALESCE(SUM(CASE WHEN occurred_at >= $5 THEN points_redeemed ELSE 0 END), 0) AS redeemed "
          "FROM orders WHERE chain_id = $1 AND member_id = $2 AND occurred_at <= $3 AND occurred_at > $6")


def limited(program: Program) -> bool:
    return program.risk.max_orders_per_hour is not None or program.risk.max_redeem_points_per_day is not None


def _day_start(moment: datetime, program: Program) -> datetime:
    local = moment.astimezone(ZoneInfo(program.timezone))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def check_order(chain_id: int, member_id: int, occurred_at: datetime, program: Program,
                      unwritten: int | None = None) -> None:
    """Refuse an order that crosses a limit. Call after the order's ledger entry, in its
    transaction: the order's row is written (uncommitted), or, with ``unwritten`` (the points it
    redeems), is still to be written by the transaction's last statement and is counted here."""
    if not limited(program):
        return
    hour_ago, day_start = occurred_at - HOUR, _day_start(occurred_at, program)
    found = (await sql.rows(RECENT, chain_id, member_id, occurred_at, hour_ago, day_start,
                            min(hour_ago, day_start) - timedelta(microseconds=1)))[0]
    orders, redeemed = int(found["orders"]), int(found["redeemed"])
    if unwritten is not None:
        orders, redeemed = orders + 1, redeemed + unwritten
    risk = program.risk
    if risk.max_orders_per_hour is not None and orders > risk.max_orders_per_hour:
        raise RiskLimitExceeded(f"{orders} orders in the hour up to this one; the limit is {risk.max_orders_per_hour}",
                                limit="max_orders_per_hour")
    if risk.max_redeem_points_per_day is not None and redeemed > risk.max_redeem_points_per_day:
        raise RiskLimitExceeded(f"{redeemed} points redeemed today with this order; the limit is "
                                f"{risk.max_redeem_points_per_day}", limit="max_redeem_points_per_day")


async def flag(chain_id: int, member_id: int, refused: RiskLimitExceeded, now: datetime) -> None:
    """After a refused order rolled back: a risk review for an operator, in its own transaction."""
    async with in_transaction():
        await reviews.open_review(chain_id, member_id, "risk", refused.extra["limit"], {"detail": refused.detail}, now)
