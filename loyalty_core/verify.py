"""Recompute every balance from the journal and report what disagrees."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tortoise.functions import Sum
from tortoise.transactions import in_transaction

from .ledger import MEMBER_ACCOUNTS
from .models import Account, MemberFigure, PendingPoints, PointsLot, Posting


@dataclass(frozen=True)
class Difference:
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


async def verify(chain_id: int | None = None) -> list[Difference]:
    """Every check reads one snapshot (REPEATABLE READ on PostgreSQL; one read transaction on
    SQLite), so a live system's commits between two reads show no false differences."""
    async with in_transaction() as connection:
        if connection.capabilities.dialect == "postgres":
            await connection.execute_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        found: list[Difference] = []
        found += await _unbalanced_entries(chain_id)
        found += await _account_balances(chain_id)
        found += await _lots_match_points(chain_id)
        found += await _pending_matches(chain_id)
        found += await _figures_match(chain_id)
    return found


def _scoped(query, chain_id: int | None):
    return query.filter(chain_id=chain_id) if chain_id is not None else query


async def _unbalanced_entries(chain_id: int | None) -> list[Difference]:
    rows = await _scoped(Posting.all(), chain_id).group_by("entry_id", "unit").annotate(
        total=Sum("amount")).values("entry_id", "unit", "total")
    return [Difference("entry does not balance", f"entry {r['entry_id']} unit {r['unit']} sums to {r['total']}")
            for r in rows if int(r["total"] or 0) != 0]


async def _account_balances(chain_id: int | None) -> list[Difference]:
    sums = await _scoped(Posting.filter(account_id__not_isnull=True), chain_id).group_by("account_id").annotate(
        total=Sum("amount")).values("account_id", "total")
    journal = {r["account_id"]: int(r["total"] or 0) for r in sums}
    found = []
    for account in await _scoped(Account.all(), chain_id):
        if account.kind not in MEMBER_ACCOUNTS:
            found.append(Difference("unknown account kind", f"account {account.id} kind {account.kind}"))
        expected = journal.pop(account.id, 0)
        if int(account.balance) != expected:
            found.append(Difference("balance differs from journal",
                                    f"member {account.member_id} {account.kind}: stored {account.balance}, journal {expected}"))
    found += [Difference("postings on a missing account", f"account {a}") for a in journal]
    return found


async def _lots_match_points(chain_id: int | None) -> list[Difference]:
    lots = await _scoped(PointsLot.all(), chain_id).group_by("member_id").annotate(
        total=Sum("remaining")).values("member_id", "total")
    in_lots = defaultdict(int, {r["member_id"]: int(r["total"] or 0) for r in lots})
    negative = await _scoped(PointsLot.filter(remaining__lt=0), chain_id).count()
    found = [Difference("lot below zero", f"{negative} lots")] if negative else []
    for account in await _scoped(Account.filter(kind="points"), chain_id):
        want = max(int(account.balance), 0)
        if in_lots[account.member_id] != want:
            found.append(Difference("lots differ from available points",
                                    f"member {account.member_id}: lots {in_lots[account.member_id]}, points {want}"))
    return found


async def _pending_matches(chain_id: int | None) -> list[Difference]:
    rows = await _scoped(PendingPoints.filter(vested=False), chain_id).group_by("member_id").annotate(
        total=Sum("remaining")).values("member_id", "total")
    waiting = defaultdict(int, {r["member_id"]: int(r["total"] or 0) for r in rows})
    found = []
    for account in await _scoped(Account.filter(kind="points_pending"), chain_id):
        if int(account.balance) != waiting[account.member_id]:
            found.append(Difference("pending points differ from pending records",
                                    f"member {account.member_id}: records {waiting[account.member_id]}, account {account.balance}"))
    return found


async def _figures_match(chain_id: int | None) -> list[Difference]:
    """A member's lifetime growth figure is their growth account: growth is never spent."""
    growth = {a.member_id: int(a.balance) for a in await _scoped(Account.filter(kind="growth"), chain_id)}
    figures = {f.member_id: int(f.growth) for f in await _scoped(MemberFigure.filter(period=0), chain_id)}
    return [Difference("growth figures differ from the growth account",
                       f"member {member}: figures {figures.get(member, 0)}, account {growth.get(member, 0)}")
            for member in sorted(set(growth) | set(figures)) if figures.get(member, 0) != growth.get(member, 0)]
