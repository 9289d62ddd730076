"""Merging two records of one person: everything of the source moves to the target, once.

One transaction, with both member rows locked in id order (two merges, or a merge and an order,
never wait on each other in a circle):

- **balances** move by one journal entry (``merge:<source id>``, with who and why): each of the
  source's accounts is emptied into the target's same account, negative balances included, so
  ``verify`` holds on both and the source's own history stays with it, ending in the move;
- **lots, pending points, coupons, identities (cards, WeChat, marketplace ids), orders, top-ups,
  mall redemptions, behaviours, mini-program sessions and WeChat member cards** are handed to the target, so refunds of the source's orders,
  vesting and expiry go on as if the target had them all along;
- **tier figures** and daily activity roll-ups are added into the target's, and the target keeps the higher
  of the two tiers; **tags** are joined; the source's pending reviews are closed;
- the source is **closed**: frozen, with ``merged_into``. Looking it up by phone or id answers the
  target (``codes``), and the admin view of the source says where it went.
"""
from __future__ import annotations

from datetime import datetime

import structlog
from tortoise.transactions import in_transaction

from . import ledger, sql, tiers
from .errors import MemberErased, NotFound, ValidationFailed
from .members import announce_balance
from .models import Account, Member, MemberTag
from .outbox import emit
from .program import Program
from .unit import Seal, seal_with

MOVED = ("points_lots", "pending_points", "coupons", "identities", "orders", "topups", "reward_redemptions",
         "behavior_events", "member_sessions", "member_cards")
log = structlog.get_logger("merge")
FIGURES = ("INSERT INTO member_figures (chain_id, member_id, period, growth, points_earned, spend, stored_value, orders, "
           "last_order_at) SELECT chain_id, $3, period, growth, points_earned, spend, stored_value, orders, last_order_at "
           "FROM member_figures WHERE chain_id = $1 AND member_id = $2 ON CONFLICT (chain_id, member_id, period) DO UPDATE "
           "SET " + ", ".join(f"{c} = member_figures.{c} + excluded.{c}" for c in tiers.FIGURES) + ", " + tiers.LATEST)
DAYS = ("INSERT INTO member_days (chain_id, member_id, day, channel, orders, points_issued, points_redeemed, "
        "points_expired) SELECT chain_id, $3, day, channel, orders, points_issued, points_redeemed, points_expired "
        "FROM member_days WHERE chain_id = $1 AND member_id = $2 ON CONFLICT (chain_id, member_id, day, channel) DO "
        "UPDATE SET " + ", ".join(f"{c} = member_days.{c} + excluded.{c}"
                                  for c in ("orders", "points_issued", "points_redeemed", "points_expired")))
CLOSE_REVIEWS = ("UPDATE reviews SET status = 'rejected', decided_at = $3, decided_by = $4, note = $5 "
                 "WHERE chain_id = $1 AND member_id = $2 AND status = 'pending'")


async def merge(chain_id: int, target_id: int, source_id: int, program: Program, actor: str, now: datetime,
                seal: Seal | None = None) -> Member:
    """Move everything of ``source_id`` to ``target_id`` and close the source; the target."""
    if target_id == source_id:
        raise ValidationFailed([{"field": "from_member_id", "message": "a member cannot be merged into itself"}])
    async with in_transaction():
        target, source = await _lock_both(chain_id, target_id, source_id)
        if target.unclaimed and not source.unclaimed:
            raise ValidationFailed([{"field": "member_id", "message": f"member {target_id} only holds a marketplace "
                                     "buyer's points: merge it into the member instead"}])
        entry = await _move_all(chain_id, target, source, f"merge:{source.id}", actor, now)
        await _join_tags(chain_id, target, source)
        await sql.execute(CLOSE_REVIEWS, chain_id, source.id, now, actor, f"merged into member {target.id}")
        await _keep_higher_tier(target, source, program, now)
        await Member.filter(chain_id=chain_id, id=source.id).update(
            merged_into=target.id, merged_at=now, frozen=True, frozen_reason=f"merged into member {target.id}")
        await emit(chain_id, "member.merged", {"member_id": target.id, "from_member_id": source.id}, now)
        if entry is not None:
            await announce_balance(chain_id, source.id, entry.id, now)
            await announce_balance(chain_id, target.id, entry.id, now)
        await seal_with(seal, target)
    return target


async def follow(chain_id: int, source_id: int, ref: str, actor: str, now: datetime) -> None:
    """What reached a member after it was merged (an order that waited for the merge's lock, then
    posted to it) moves on to where the member went, under its own key (``merge:<id>:<ref>``);
    nothing when it was not merged."""
    source = await Member.get_or_none(chain_id=chain_id, id=source_id)
    if source is None or source.merged_into is None:
        return
    async with in_transaction():
        target, source = await _lock_pair(chain_id, source.merged_into, source_id)
        entry = await _move_all(chain_id, target, source, f"merge:{source.id}:{ref}"[:128], actor, now)
        if entry is not None:
            await announce_balance(chain_id, target.id, entry.id, now)
    if entry is not None:
        log.info("merge.followed", chain_id=chain_id, member_id=target.id, from_member_id=source_id, ref=ref)


async def _move_all(chain_id: int, target: Member, source: Member, key: str, actor: str, now: datetime):
    """The source's balances (one entry under ``key``), rows and figures, to the target."""
    entry = await _move_balances(chain_id, target, source, key, actor, now)
    for table in MOVED:
        await sql.execute(f"UPDATE {table} SET member_id = $3 WHERE chain_id = $1 AND member_id = $2",
                          chain_id, source.id, target.id)
    await sql.execute(FIGURES, chain_id, source.id, target.id)
    await sql.execute("DELETE FROM member_figures WHERE chain_id = $1 AND member_id = $2", chain_id, source.id)
    await sql.execute(DAYS, chain_id, source.id, target.id)
    await sql.execute("DELETE FROM member_days WHERE chain_id = $1 AND member_id = $2", chain_id, source.id)
    return entry


async def _lock_pair(chain_id: int, target_id: int, source_id: int) -> tuple[Member, Member]:
    found = await _locked(chain_id, target_id, source_id)
    return found[target_id], found[source_id]


async def _locked(chain_id: int, *ids: int) -> dict[int, Member]:
    """The member rows, locked in id order (two merges, or a merge and an order, never wait in a circle)."""
    return {m.id: m for m in await Member.select_for_update().filter(chain_id=chain_id, id__in=sorted(ids)).order_by("id")}


async def _lock_both(chain_id: int, target_id: int, source_id: int) -> tuple[Member, Member]:
    found = await _locked(chain_id, target_id, source_id)
    for member_id in (target_id, source_id):
        member = found.get(member_id)
        if member is None:
            raise NotFound(f"No member {member_id}")
        if member.erased_at is not None:
            raise MemberErased(f"Member {member_id}'s personal data was erased: nothing to merge")
        if member.merged_into is not None:
            raise ValidationFailed([{"field": "from_member_id" if member_id == source_id else "member_id",
                                     "message": f"member {member_id} was merged into {member.merged_into} already"}])
    return found[target_id], found[source_id]


async def _move_balances(chain_id: int, target: Member, source: Member, key: str, actor: str, now: datetime):
    held = {a.kind: int(a.balance) for a in await Account.filter(chain_id=chain_id, member_id=source.id)}
    legs = [leg for kind, balance in sorted(held.items()) if balance
            for leg in (ledger.Leg(kind, -balance, source.id), ledger.Leg(kind, balance, target.id))]
    if not legs:
        return None
    return await ledger.post(chain_id, ledger.Entry(
        key=key, kind="merge", member_id=target.id, actor=actor,
        reason=f"merged from member {source.id}", ref=f"member:{source.id}", occurred_at=now, legs=legs))


async def _join_tags(chain_id: int, target: Member, source: Member) -> None:
    joined = list(dict.fromkeys([*target.tags, *source.tags]))
    have = set(target.tags)
    await MemberTag.filter(chain_id=chain_id, member_id=source.id).delete()
    await MemberTag.bulk_create([MemberTag(chain_id=chain_id, member_id=target.id, tag=tag)
                                 for tag in joined if tag not in have])
    if joined != target.tags:
        target.tags = joined
        await target.save(update_fields=["tags"])


async def _keep_higher_tier(target: Member, source: Member, program: Program, now: datetime) -> None:
    if program.level(source.tier_code).threshold > program.level(target.tier_code).threshold:
        await tiers.lift_to(target, program, source.tier_code, now, "merge")
    else:
        await tiers.raise_tier(target, program, now)  # the joined figures may reach higher
