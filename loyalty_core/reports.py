"""What an operator reads about the whole chain, not one member.

Read from the member accounts (one row per member and kind, kept by the ledger in every
posting's transaction), so a report costs one pass over the chain's members, never over its
history.
"""
from __future__ import annotations

from . import sql

# What the chain owes its members: a balance below zero (a refund that clawed back points already
# spent) is owed to nobody and counts as zero, so that it does not hide what others hold.
OWED = ("SELECT kind, COALESCE(SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END), 0) AS owed FROM accounts "
        "WHERE chain_id = $1 AND kind IN ('points', 'points_pending', 'sv_principal', 'sv_bonus') GROUP BY kind")


async def liability(chain_id: int) -> dict:
    """Points (available, pending) and stored value (principal, bonus in fen) held by members."""
    owed = {row["kind"]: int(row["owed"]) for row in await sql.rows(OWED, chain_id)}
    return {"points": {"available": owed.get("points", 0), "pending": owed.get("points_pending", 0)},
            "stored_value": {"principal": owed.get("sv_principal", 0), "bonus": owed.get("sv_bonus", 0)}}
