"""Stored value: top-ups at the till, with the program's bonus.

A top-up credits the member's principal (the money paid) and, by the highest ``topup_bonuses``
rule whose ``min`` is at most the amount, their bonus, in two accounts; payments spend principal
first and a refund gives back to each in the proportion the order took (``orders``). It counts
towards the ``stored_value`` tier metric with its principal (the bonus is a gift, not money the
member put in) and may lift the tier at once, like an order.

Once per (store, ``topup_id``), forever: the top-up's row is its transaction's first write, so a
twin under the same key waits there, then rolls back and answers the first result, marked
``duplicate``, whatever it carried itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from tortoise import timezone
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import ledger, outbox, sql, tiers
from .errors import DuplicateEntry, MemberFrozen, ValidationFailed
from .members import balance_changed, shown_balances
from .models import Member
from .orders import Placed
from .program import Program
from .unit import Seal, confirm, sealing


@dataclass(frozen=True)
class TopupInput:
    store_id: int
    topup_id: str
    member: Member
    amount: int  # fen paid, > 0
    payment_method: str


def bonus_for(program: Program, amount: int) -> int:
    """The bonus of the highest rule whose ``min`` the amount reaches (0 below every rule)."""
    reached = [rule for rule in program.stored_value.topup_bonuses if rule.min <= amount]
    return max(reached, key=lambda rule: rule.min).bonus if reached else 0


async def top_up(chain_id: int, topup: TopupInput, program: Program, now: datetime,
                 seal: Seal | None = None) -> Placed:
    """Credit a top-up once per (store, topup_id); a repeat answers the first result."""
    member = topup.member
    if member.frozen:
        raise MemberFrozen("This member is frozen: no top-ups")
    if topup.payment_method == "stored_value":
        raise ValidationFailed([{"field": "payment_method", "message": "stored value cannot top up stored value"}])
    bonus = bonus_for(program, topup.amount)
    try:
        async with in_transaction():
            topup_row = await _record(chain_id, topup, bonus)
            placed = await _credit(chain_id, topup, topup_row, bonus, program, now, seal)
    except (IntegrityError, DuplicateEntry):
        if (first := await topped_up_before(chain_id, topup.store_id, topup.topup_id)) is not None:
            return first
        raise
    return placed


async def topped_up_before(chain_id: int, store_id: int, topup_id: str) -> Placed | None:
    found = await sql.rows(TOPUP_BY_KEY, chain_id, store_id, topup_id)
    if not found:
        return None
    result = found[0]["result"]
    return Placed({**(orjson.loads(result) if isinstance(result, (str, bytes)) else result), "duplicate": True}, True)


TOPUP_BY_KEY = "SELECT result FROM topups WHERE chain_id = $1 AND store_id = $2 AND topup_id = $3"
RECORD = ("INSERT INTO topups (chain_id, store_id, member_id, topup_id, amount, bonus, payment_method, result, "
          "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}', $8) ON CONFLICT DO NOTHING RETURNING id")
RESULT = "UPDATE topups SET entry_id = $3, result = $4 WHERE chain_id = $1 AND id = $2"


async def _record(chain_id: int, topup: TopupInput, bonus: int) -> int:
    inserted = await sql.rows(RECORD, chain_id, topup.store_id, topup.member.id, topup.topup_id, topup.amount, bonus,
                              topup.payment_method, timezone.now())
    if not inserted:
        raise DuplicateEntry(f"topup:{topup.store_id}:{topup.topup_id}")
    return int(inserted[0]["id"])


async def _credit(chain_id: int, topup: TopupInput, topup_row: int, bonus: int, program: Program, now: datetime,
                  seal: Seal | None) -> Placed:
    member = topup.member
    entry = await ledger.post(chain_id, ledger.Entry(
        key=f"topup:{topup.store_id}:{topup.topup_id}", kind="topup", member_id=member.id, channel="pos",
        ref=f"topup:{topup_row}", occurred_at=now, legs=[
            ledger.Leg("sv_principal", topup.amount, member.id), ledger.Leg("cash_received", -topup.amount),
            ledger.Leg("sv_bonus", bonus, member.id), ledger.Leg("bonus_granted", -bonus),
        ], tally=tiers.tally(program, tiers.period_of(now, program), tiers.Figures(stored_value=topup.amount), now)))
    tier = await tiers.raise_tier(member, program, now, entry.standing)
    balances = shown_balances(entry.accounts)
    result = {"topup_id": topup.topup_id, "member_id": member.id, "principal": topup.amount, "bonus": bonus,
              "payment_method": topup.payment_method, "balances": balances, "tier": tier, "duplicate": False}
    placed = Placed(result, False)
    events, params, _ = outbox.inserting(chain_id, [
        balance_changed(member.id, entry.id, balances),
        ("stored_value.topped_up", {"member_id": member.id, "store_id": topup.store_id, "topup_id": topup.topup_id,
                                    "principal": topup.amount, "bonus": bonus})], now)
    *_, stored = await sql.together((RESULT, [chain_id, topup_row, entry.id, orjson.dumps(result).decode()]),
                                    (events, params), await sealing(seal, placed))
    confirm(seal, stored)
    return placed
