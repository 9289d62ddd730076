"""Available points and their lots, kept in step with the ledger.

Invariant (checked by ``verify``): a member's lots hold ``max(points balance, 0)`` in all.
Every function here runs inside the caller's transaction, after the entry that moved the
points account was posted (which holds that account's row lock until commit).
"""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise.expressions import F

from . import sql
from .ledger import Posted
from .models import PointsLot
from .program import Program
from .rules.lots import LotView, draw, lot_expiry


async def points_balance(chain_id: int, member_id: int) -> int:
    found = await sql.rows("SELECT balance FROM accounts WHERE chain_id = $1 AND member_id = $2 AND kind = 'points'",
                           chain_id, member_id)
    return int(found[0]["balance"])


ADD_LOT = ("INSERT INTO points_lots (chain_id, member_id, entry_id, order_id, amount, remaining, vested_at, expires_at) "
           "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")


async def add_lot(chain_id: int, member_id: int, entry: Posted, amount: int, vested_at: datetime,
                  program: Program, order_id: int | None = None) -> None:
    """Record ``amount`` points just credited by ``entry`` as a lot; a negative balance absorbs
    them first (the entry knows the points balance it left)."""
    balance_after = entry.balance(member_id, "points")
    if balance_after is None:
        balance_after = await points_balance(chain_id, member_id)
    statement, params = new_lot(chain_id, member_id, entry.id, balance_after, amount, vested_at, program, order_id)
    await sql.execute(statement, *params)


def new_lot(chain_id: int, member_id: int, entry_id: int, balance_after: int, amount: int, vested_at: datetime,
            program: Program, order_id: int | None = None) -> tuple[str, list]:
    """``add_lot``'s insert and its parameters, for a caller that sends it with its other writes
    (``sql.together``), after any draw-down of the same entry."""
    remaining = min(amount, max(balance_after, 0))
    expires_at = lot_expiry(vested_at, program.points.expiry, ZoneInfo(program.timezone))
    return ADD_LOT, [chain_id, member_id, entry_id, order_id, amount, remaining, vested_at, expires_at]


async def take_from_lots(chain_id: int, member_id: int, amount: int, order_first: int | None = None) -> int:
    """Draw ``amount`` from the lots expiring first; returns what the lots could give.

    A refund's claw-back names its order (``order_first``): the lots that order made are drawn
    first, so that taking back its points never leaves the member later-expiring ones. The
    caller holds the points account's row lock (it posted the entry first), so no other change
    to these lots runs meanwhile. On PostgreSQL this is one statement."""
    if amount <= 0:
        return 0
    if sql.dialect() == "postgres":
        taken = await sql.rows(DRAW, chain_id, member_id, order_first, amount)
        return sum(int(row["taken"]) for row in taken)
    lots = await PointsLot.filter(chain_id=chain_id, member_id=member_id, remaining__gt=0).order_by("id")
    views = [LotView(lot.id, int(lot.remaining), lot.expires_at, order_first is not None and lot.order_id == order_first)
             for lot in lots]
    total = 0
    for lot_id, take in draw(views, amount):
        await PointsLot.filter(chain_id=chain_id, id=lot_id).update(remaining=F("remaining") - take)
        total += take
    return total


# rules.lots.draw_order in SQL: the refunded order's lots, then the soonest to expire, never-expiring
# last; each lot gives what is left of the amount after the lots before it ("before": their sum).
# Every open lot holds at least one point, so no draw needs more than ``amount`` lots of either
# kind: each part reads at most that many, in the order of the index of a member's open lots
# (migration 0006), never the member's whole history.
DRAW = """
WITH candidates AS (
  (SELECT id, remaining, expires_at, 0 AS first_rank FROM points_lots
   WHERE chain_id = $1 AND member_id = $2 AND remaining > 0 AND order_id = $3::bigint
   ORDER BY expires_at, id LIMIT $4)
  UNION ALL
  (SELECT id, remaining, expires_at, 1 FROM points_lots
   WHERE chain_id = $1 AND member_id = $2 AND remaining > 0 AND NOT COALESCE(order_id = $3::bigint, false)
   ORDER BY expires_at, id LIMIT $4)
), open AS (
  SELECT id, remaining, SUM(remaining) OVER (ORDER BY first_rank, expires_at, id) - remaining AS before
  FROM candidates
)
UPDATE points_lots l SET remaining = l.remaining - LEAST(o.remaining, $4::bigint - o.before)
FROM open o WHERE l.chain_id = $1 AND l.id = o.id AND o.before < $4::bigint
RETURNING LEAST(o.remaining, $4::bigint - o.before) AS taken
"""
