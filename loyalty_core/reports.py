"""What an operator reads about the whole chain, not one member.

The liability is read from the member accounts (one row per member and kind, kept by the ledger
in every posting's transaction): one pass over the chain's members, never over its history. The
activity report reads the daily roll-ups the ledger keeps per member and channel as entries post
(``member_days``): the period's active member-days, never the journal.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import sql
from .errors import ValidationFailed
from .program import Program
from .rules.calendar import day_number

# What the chain owes its members: a balance below zero (a refund that clawed back points already
# spent) is owed to nobody and counts as zero, so that it does not hide what others hold.
OWED = ("SELECT kind, COALESCE(SUM(CASE WHEN balance > 0 THEN balance ELSE 0 END), 0) AS owed FROM accounts "
        "WHERE chain_id = $1 AND kind IN ('points', 'points_pending', 'sv_principal', 'sv_bonus') GROUP BY kind")


async def liability(chain_id: int) -> dict:
    """Points (available, pending) and stored value (principal, bonus in fen) held by members."""
    owed = {row["kind"]: int(row["owed"]) for row in await sql.rows(OWED, chain_id)}
    return {"points": {"available": owed.get("points", 0), "pending": owed.get("points_pending", 0)},
            "stored_value": {"principal": owed.get("sv_principal", 0), "bonus": owed.get("sv_bonus", 0)}}


MAX_DAYS = 366
DAYS = ("SELECT channel, member_id, SUM(orders) AS orders, SUM(points_issued) AS issued, "
        "SUM(points_redeemed) AS redeemed, SUM(points_expired) AS expired FROM member_days "
        "WHERE chain_id = $1 AND day BETWEEN $2 AND $3 GROUP BY channel, member_id")
JOINED = ("SELECT count(*) AS n FROM members WHERE chain_id = $1 AND created_at >= $2 AND created_at < $3 "
          "AND NOT unclaimed")  # a marketplace buyer's holder is no member who joined


def period(start: date, end: date, program: Program) -> tuple[datetime, datetime]:
    """``start`` to ``end``, both whole days of the chain's calendar, as instants [from, to)."""
    if end < start:
        raise ValidationFailed([{"field": "to", "message": "must not be before from"}])
    if (end - start).days >= MAX_DAYS:
        raise ValidationFailed([{"field": "to", "message": f"a report covers at most {MAX_DAYS} days"}])
    zone = ZoneInfo(program.timezone)
    return datetime.combine(start, time(), zone), datetime.combine(end + timedelta(days=1), time(), zone)


async def activity(chain_id: int, start: date, end: date, program: Program) -> dict:
    """Points issued, redeemed and expired; members joined, active (with an order), repeat (two or
    more orders) and the repeat rate; the same by channel. Days are the chain's calendar. Read from
    the daily roll-ups each journal entry adds to its member's day (``member_days``)."""
    since, until = period(start, end, program)
    moved: dict[str, Counter] = defaultdict(Counter)
    orders: dict[str, Counter] = defaultdict(Counter)  # channel -> member -> orders
    for row in await sql.rows(DAYS, chain_id, day_number(start), day_number(end)):
        channel = row["channel"]
        for name in ("issued", "redeemed", "expired"):
            moved[channel][name] += int(row[name])
        orders[channel][int(row["member_id"])] += int(row["orders"])
    joined = int((await sql.rows(JOINED, chain_id, since, until))[0]["n"])
    channels = sorted(set(moved) | set(orders))
    return {"from": start.isoformat(), "to": end.isoformat(), "timezone": program.timezone,
            "points": _points(_total(moved.values())), "members": {"joined": joined, **_members(_total(orders.values()))},
            "by_channel": {channel: {"points": _points(moved[channel]), "orders": sum(orders[channel].values()),
                                     **_members(orders[channel])} for channel in channels}}


def _total(counters) -> Counter:
    """The sum of counters, negative counts kept (``Counter``'s own ``+`` drops them)."""
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return total


def _points(moved: Counter) -> dict:
    """Issued (net of refunds' claw-backs), redeemed (net of points given back), expired."""
    return {"issued": moved["issued"], "redeemed": moved["redeemed"], "expired": moved["expired"]}


def _members(orders_by_member: Counter) -> dict:
    active = sum(1 for n in orders_by_member.values() if n > 0)
    repeat = sum(1 for n in orders_by_member.values() if n >= 2)
    return {"active": active, "repeat": repeat, "repeat_rate": round(repeat / active, 4) if active else 0.0}
