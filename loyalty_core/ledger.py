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

from tortoise.exceptions import IntegrityError

from . import sql
from .errors import DuplicateEntry, InsufficientPoints, InsufficientStoredValue, InvariantViolation
from .models import Account, JournalEntry, Posting

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
    """A posted entry: its id, and each moved member account's balance just after the move."""

    id: int
    balances: dict[tuple[int, str], int]

    def balance(self, member_id: int, kind: str) -> int | None:
        return self.balances.get((member_id, kind))


async def post(chain_id: int, entry: Entry) -> Posted:
    """Write ``entry`` and move the member balances it touches. Call inside a transaction."""
    legs = [leg for leg in entry.legs if leg.amount]
    check_balanced(legs)
    try:
        journal = await JournalEntry.create(
            chain_id=chain_id,
            key=entry.key,
            kind=entry.kind,
            member_id=entry.member_id,
            channel=entry.channel,
            actor=entry.actor,
            reason=entry.reason,
            ref=entry.ref,
            occurred_at=entry.occurred_at,
        )
    except IntegrityError as error:
        raise DuplicateEntry(entry.key) from error
    # A fixed order of row locks: two entries touching the same members never deadlock.
    ordered = sorted(legs, key=lambda leg: (leg.member_id or 0, leg.ledger))
    postings, balances = [], {}
    for leg in ordered:
        account_id = None
        if leg.member_id is not None:
            account_id, balances[(leg.member_id, leg.ledger)] = await _move(chain_id, leg)
        postings.append(
            Posting(
                entry_id=journal.id,
                chain_id=chain_id,
                account_id=account_id,
                ledger=leg.ledger,
                unit=unit_of(leg.ledger),
                amount=leg.amount,
            )
        )
    await Posting.bulk_create(postings)
    return Posted(journal.id, balances)


MOVE = ("UPDATE accounts SET balance = balance + $4 WHERE chain_id = $1 AND member_id = $2 AND kind = $3{guard} "
        "RETURNING id, balance")


async def _move(chain_id: int, leg: Leg) -> tuple[int, int]:
    """One guarded atomic update that answers the account's id and new balance (no read before)."""
    guarded = leg.guard and leg.amount < 0
    rows = await sql.rows(MOVE.format(guard=" AND balance + $4 >= 0" if guarded else ""),
                          chain_id, leg.member_id, leg.ledger, leg.amount)
    if not rows:
        if guarded:
            raise SHORTFALL.get(leg.ledger, InsufficientPoints)()
        raise InvariantViolation(f"member {leg.member_id} has no {leg.ledger} account")
    return int(rows[0]["id"]), int(rows[0]["balance"])


async def open_accounts(chain_id: int, member_id: int) -> None:
    await Account.bulk_create(
        [Account(chain_id=chain_id, member_id=member_id, kind=kind, balance=0) for kind in MEMBER_ACCOUNTS]
    )


async def balances(member_id: int) -> dict[str, int]:
    rows = await Account.filter(member_id=member_id).values_list("kind", "balance")
    return {kind: int(balance) for kind, balance in rows}
