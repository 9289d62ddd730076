"""The double-entry ledger: the only code that changes a balance.

An entry's legs sum to zero per unit. Member legs update the member's ``Account`` row in the
same transaction with a guarded atomic update; chain-level legs (points issued, cash received
...) are postings only, summed on read, so no single hot row serialises a chain's sales.
Each entry's ``key`` is unique per chain and derived from its cause: a retry of the same cause
hits the constraint and raises ``DuplicateEntry`` instead of posting twice.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise import timezone
from tortoise.exceptions import IntegrityError

from . import sql, tiers
from .errors import DuplicateEntry, InsufficientPoints, InsufficientStoredValue, InvariantViolation
from .models import Account, JournalEntry, Posting
from .rules.calendar import day_number

MEMBER_ACCOUNTS: dict[str, str] = {
    "points": "points",
    "points_pending": "points",
    "growth": "growth",
    "sv_principal": "fen",
    "sv_bonus": "fen_bonus",
}

CHAIN_LEDGERS: dict[str, str] = {
    "points_issued": "points",
    "points_redeemed": "points",
    "points_expired": "points",
    "points_adjusted": "points",
    "growth_issued": "growth",
    "cash_received": "fen",
    "sv_spent": "fen",
    "sv_adjusted": "fen",
    "bonus_granted": "fen_bonus",
    "bonus_spent": "fen_bonus",
    "bonus_adjusted": "fen_bonus",
}

SHORTFALL = {"points": InsufficientPoints, "sv_principal": InsufficientStoredValue, "sv_bonus": InsufficientStoredValue}


def unit_of(ledger: str) -> str:
    if ledger in MEMBER_ACCOUNTS:
        return MEMBER_ACCOUNTS[ledger]
    if ledger in CHAIN_LEDGERS:
        return CHAIN_LEDGERS[ledger]
    raise ValueError(f"unknown ledger {ledger!r}")


@dataclass(frozen=True)
class Leg:
    """One posting. ``member_id`` is set for a member account; ``guard`` refuses to take the
    member's balance below zero (a spend), while unguarded debits (a refund's claw-back) may."""

    ledger: str
    amount: int
    member_id: int | None = None
    guard: bool = False


@dataclass
class Entry:
    key: str
    kind: str
    legs: list[Leg]
    occurred_at: datetime
    member_id: int | None = None
    channel: str = "admin"
    actor: str | None = None
    reason: str | None = None
    ref: str | None = None
    extra: dict = field(default_factory=dict)
    tally: tiers.Tally | None = None      # what the entry adds to the member's tier figures
    zone: str | None = None               # the chain's timezone: the entry rolls up into the member's day
    # PostgreSQL: the entry's ``ref`` is ``ref`` followed by the next value of this sequence, drawn
    # in the entry's statement and answered as ``Posted.ref_id`` (an order's id before its row is
    # written, so that the row is written once, with its result, in the order's last statement)
    ref_sequence: str | None = None


def check_balanced(legs: list[Leg]) -> None:
    sums: dict[str, int] = defaultdict(int)
    for leg in legs:
        if leg.ledger in MEMBER_ACCOUNTS and leg.member_id is None:
            raise InvariantViolation(f"member account {leg.ledger} needs a member")
        sums[unit_of(leg.ledger)] += leg.amount
    unbalanced = {unit: total for unit, total in sums.items() if total}
    if unbalanced:
        raise InvariantViolation(f"entry does not balance: {unbalanced}")


@dataclass(frozen=True)
class Posted:
    """A posted entry: its id; each moved member account's balance just after the move; every
    account of the entry's member as the entry left it (``accounts``); and, when the entry carried
    a tally, the member's tier standing just after it (``standing``)."""

    id: int
    balances: dict[tuple[int, str], int]
    accounts: dict[str, int] = field(default_factory=dict)
    standing: tiers.Reading | None = None
    ref_id: int | None = None

    def balance(self, member_id: int, kind: str) -> int | None:
        return self.balances.get((member_id, kind))


async def post(chain_id: int, entry: Entry) -> Posted:
    """Write ``entry``, move the member balances it touches and add its tally to the member's
    figures. Call inside a transaction. On PostgreSQL this is one statement; on SQLite one per part."""
    legs = [leg for leg in entry.legs if leg.amount]
    check_balanced(legs)
    try:
        if sql.dialect() == "postgres":
            return await _post_at_once(chain_id, entry, legs)
        return await _post_in_parts(chain_id, entry, legs)
    except IntegrityError as error:
        raise DuplicateEntry(entry.key) from error


def _shortfall(legs: list[Leg], moved: set[tuple[int, str]]) -> None:
    """A member leg that moved no account: a guard that held (a spend beyond the balance), or a
    missing account (a bug)."""
    for leg in legs:
        if leg.member_id is not None and (leg.member_id, leg.ledger) not in moved:
            if leg.guard and leg.amount < 0:
                raise SHORTFALL.get(leg.ledger, InsufficientPoints)()
            raise InvariantViolation(f"member {leg.member_id} has no {leg.ledger} account")


# Everything an entry writes, in one round trip. Each member account it moves is locked first in
# id order (the same order for every entry: two entries touching the same accounts never
# deadlock), then moved once by the sum of its legs, where the guarded debits must be covered by
# the balance before the entry (its credits do not pay for its own spends); the postings name the
# moved accounts; the tally is added to the member's month and lifetime figures, and the entry's
# points and order to the member's day (``rollup``). The answer: the entry's id, the moved balances,
# every account of the member (the moved ones as moved), and the tier standing after the tally.
POST_AT_ONCE = """
WITH {keyshare}legs AS (
  SELECT * FROM unnest($11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::boolean[])
    AS l(ledger, unit, amount, member_id, guarded)
), sums AS (
  SELECT member_id, ledger, SUM(amount) AS amount, SUM(CASE WHEN guarded THEN amount ELSE 0 END) AS guarded_debit
  FROM legs WHERE member_id IS NOT NULL{after_keyshare} GROUP BY member_id, ledger
), locked AS (
  SELECT a.id FROM accounts a JOIN sums s ON a.member_id = s.member_id AND a.kind = s.ledger
  WHERE a.chain_id = $1 ORDER BY a.id FOR NO KEY UPDATE OF a
), moved AS (
  UPDATE accounts a SET balance = a.balance + s.amount FROM sums s, locked k
  WHERE a.chain_id = $1 AND a.id = k.id AND a.member_id = s.member_id AND a.kind = s.ledger
    AND (s.guarded_debit = 0 OR a.balance + s.guarded_debit >= 0)
  RETURNING a.id, a.member_id, a.kind, a.balance
){refs}, entry AS (
  INSERT INTO journal_entries (chain_id, key, kind, member_id, channel, actor, reason, ref, occurred_at, created_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, {ref}, $9, $10) RETURNING id
), posted AS (
  INSERT INTO postings (entry_id, chain_id, account_id, ledger, unit, amount)
  SELECT entry.id, $1, m.id, l.ledger, l.unit, l.amount
  FROM entry CROSS JOIN legs l LEFT JOIN moved m ON m.member_id = l.member_id AND m.kind = l.ledger
){tally}
SELECT 'entry' AS what, NULL::bigint AS member_id, NULL::text AS kind, id AS value FROM entry
UNION ALL SELECT 'moved', member_id, kind, balance FROM moved
UNION ALL SELECT 'account', member_id, kind, balance FROM accounts WHERE chain_id = $1 AND member_id = $4{standing}{ref_row}
"""
# With ``Entry.ref_sequence`` (an order whose row is written last): the entry draws the order's id,
# and takes the key-share lock on its member that the order row's foreign key took first before:
# ahead of the accounts' locks (``sums``, which ``locked`` reads in full before it locks a row,
# waits for it), as every other path does, so that an adjustment holding the member row first
# never waits for accounts this entry holds while this entry waits for the member row.
KEYSHARE = "keyshare AS MATERIALIZED (SELECT id FROM members WHERE chain_id = $1 AND id = $4 FOR KEY SHARE), "
AFTER_KEYSHARE = " AND EXISTS (SELECT 1 FROM keyshare)"
REFS = ", refs AS (SELECT nextval('{sequence}') AS id)"
REF_ROW = "\nUNION ALL SELECT 'ref', NULL, NULL, id FROM refs"


ROLLED = ("points_issued", "points_redeemed", "points_expired")


def rollup(entry: Entry, legs: list[Leg]) -> list | None:
    """What the entry adds to its member's day (``member_days``): the day, the channel, orders,
    points issued (net), redeemed (net) and expired; None when it adds nothing or has no day."""
    if entry.zone is None or entry.member_id is None:
        return None
    moved = {name: sum(leg.amount for leg in legs if leg.ledger == name) for name in ROLLED}
    orders = 1 if entry.kind == "order" else 0
    if not orders and not any(moved.values()):
        return None
    return [day_number(entry.occurred_at.astimezone(ZoneInfo(entry.zone)).date()), entry.channel, orders,
            -moved["points_issued"], moved["points_redeemed"], moved["points_expired"]]


def _rollup_sql(member: str, first: int) -> str:
    """The upsert of a rollup (parameters ``$first`` on, in ``rollup``'s order) into the member's day."""
    values = ", ".join(f"${first + i}" for i in range(6))
    return (f"INSERT INTO member_days (chain_id, member_id, day, channel, orders, points_issued, points_redeemed, "
            f"points_expired) VALUES ($1, {member}, {values}) ON CONFLICT (chain_id, member_id, day, channel) DO UPDATE "
            "SET orders = member_days.orders + excluded.orders, "
            "points_issued = member_days.points_issued + excluded.points_issued, "
            "points_redeemed = member_days.points_redeemed + excluded.points_redeemed, "
            "points_expired = member_days.points_expired + excluded.points_expired")


ROLL_UP = _rollup_sql("$2", 3)


async def _post_at_once(chain_id: int, entry: Entry, legs: list[Leg]) -> Posted:
    params: list = [chain_id, entry.key, entry.kind, entry.member_id, entry.channel, entry.actor, entry.reason,
                    entry.ref, entry.occurred_at, timezone.now(),
                    [leg.ledger for leg in legs], [unit_of(leg.ledger) for leg in legs], [leg.amount for leg in legs],
                    [leg.member_id for leg in legs], [leg.guard and leg.amount < 0 for leg in legs]]
    tally, standing = "", ""
    if entry.tally is not None:
        tally, standing = tiers.tally_sql(entry.tally, first_param=len(params) + 1)
        params += tiers.tally_params(entry.tally)
    if (day := rollup(entry, legs)) is not None:
        tally += f", rolled AS ({_rollup_sql('$4', len(params) + 1)})\n"
        params += day
    drawn = entry.ref_sequence is not None and entry.member_id is not None
    found = await sql.rows(POST_AT_ONCE.format(
        tally=tally, standing=standing, keyshare=KEYSHARE if drawn else "", after_keyshare=AFTER_KEYSHARE if drawn else "",
        refs=REFS.format(sequence=entry.ref_sequence) if drawn else "", ref="$8 || (SELECT id FROM refs)" if drawn else "$8",
        ref_row=REF_ROW if drawn else ""), *params)
    moved = {(int(r["member_id"]), r["kind"]): int(r["value"]) for r in found if r["what"] == "moved"}
    _shortfall(legs, set(moved))
    accounts = {r["kind"]: int(r["value"]) for r in found if r["what"] == "account"}
    accounts.update({kind: value for (member_id, kind), value in moved.items() if member_id == entry.member_id})
    entry_id = next(int(r["value"]) for r in found if r["what"] == "entry")
    reading = tiers.reading_of(found) if entry.tally is not None else None
    ref_id = next((int(r["value"]) for r in found if r["what"] == "ref"), None)
    return Posted(entry_id, moved, accounts, reading, ref_id)


async def _post_in_parts(chain_id: int, entry: Entry, legs: list[Leg]) -> Posted:
    journal = await JournalEntry.create(
        chain_id=chain_id, key=entry.key, kind=entry.kind, member_id=entry.member_id, channel=entry.channel,
        actor=entry.actor, reason=entry.reason, ref=entry.ref, occurred_at=entry.occurred_at,
    )
    # A fixed order of row locks: two entries touching the same members never deadlock. An
    # account's guarded debits go first: the entry's credits do not pay for its own spends.
    ordered = sorted(legs, key=lambda leg: (leg.member_id or 0, leg.ledger, not (leg.guard and leg.amount < 0)))
    postings, moved = [], {}
    for leg in ordered:
        account_id = None
        if leg.member_id is not None:
            account_id, moved[(leg.member_id, leg.ledger)] = await _move(chain_id, leg)
        postings.append(Posting(entry_id=journal.id, chain_id=chain_id, account_id=account_id, ledger=leg.ledger,
                                unit=unit_of(leg.ledger), amount=leg.amount))
    await Posting.bulk_create(postings)
    reading = None
    if entry.tally is not None and entry.member_id is not None:
        await tiers.add_figures(chain_id, entry.member_id, entry.tally.period, entry.tally.figures)
        t = entry.tally
        reading = await tiers.read_window(chain_id, entry.member_id, t.first, t.last, t.column)
    if (day := rollup(entry, legs)) is not None:
        await sql.execute(ROLL_UP, chain_id, entry.member_id, *day)
    accounts = await balances(chain_id, entry.member_id) if entry.member_id is not None else {}
    return Posted(journal.id, moved, accounts, reading)


MOVE = ("UPDATE accounts SET balance = balance + $4 WHERE chain_id = $1 AND member_id = $2 AND kind = $3{guard} "
        "RETURNING id, balance")


async def _move(chain_id: int, leg: Leg) -> tuple[int, int]:
    """One guarded atomic update that answers the account's id and new balance (no read before)."""
    guarded = leg.guard and leg.amount < 0
    rows = await sql.rows(MOVE.format(guard=" AND balance + $4 >= 0" if guarded else ""),
                          chain_id, leg.member_id, leg.ledger, leg.amount)
    if not rows:
        _shortfall([leg], set())
    return int(rows[0]["id"]), int(rows[0]["balance"])


async def open_accounts(chain_id: int, member_id: int) -> None:
    await Account.bulk_create(
        [Account(chain_id=chain_id, member_id=member_id, kind=kind, balance=0) for kind in MEMBER_ACCOUNTS]
    )


async def balances(chain_id: int, member_id: int) -> dict[str, int]:
    rows = await sql.rows("SELECT kind, balance FROM accounts WHERE chain_id = $1 AND member_id = $2", chain_id, member_id)
    return {row["kind"]: int(row["balance"]) for row in rows}
