"""Where a member stands on the tier ladder: the metric over its window and the next threshold."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise.functions import Sum

from .clock import utc
from .models import Member, Order, Posting
from .program import Level, Program
from .rules.calendar import shift_months


@dataclass(frozen=True)
class Standing:
    level: Level
    metric: str
    current: int
    next_threshold: int | None


def window_start(program: Program, now: datetime) -> datetime:
    tz = ZoneInfo(program.timezone)
    local = now.astimezone(tz)
    if program.tiers.window == "calendar_year":
        return utc(local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0))
    return utc(shift_months(local, -program.tiers.window_months))


async def metric_value(member_id: int, program: Program, now: datetime) -> int:
    since = window_start(program, now)
    metric = program.tiers.metric
    if metric == "spend":
        row = await Order.filter(member_id=member_id, occurred_at__gte=since).annotate(
            paid=Sum("payable"), back=Sum("refunded_amount")).first().values("paid", "back")
        return int((row or {}).get("paid") or 0) - int((row or {}).get("back") or 0)
    ledger, positive_only = {
        "growth": ("growth", False),
        "points_earned": ("points", True),
        "stored_value": ("sv_principal", True),
    }[metric]
    query = Posting.filter(account__member_id=member_id, ledger=ledger, entry__occurred_at__gte=since)
    if positive_only:
        kinds = {"points": ["order", "behavior", "vest"], "sv_principal": ["topup"]}[ledger]
        query = query.filter(amount__gt=0, entry__kind__in=kinds)
    row = await query.annotate(total=Sum("amount")).first().values("total")
    return int((row or {}).get("total") or 0)


def level_for(program: Program, value: int, without_review: bool = False) -> Level:
    """The highest level whose threshold ``value`` reaches (skipping review levels if asked)."""
    reached = program.tiers.levels[0]
    for level in program.tiers.levels:
        if value >= level.threshold and not (without_review and level.manual_review):
            reached = level
    return reached


def next_threshold(program: Program, level: Level) -> int | None:
    above = [lv.threshold for lv in program.tiers.levels if lv.threshold > level.threshold]
    return min(above) if above else None


async def standing(member: Member, program: Program, now: datetime) -> Standing:
    level = program.level(member.tier_code)
    current = await metric_value(member.id, program, now)
    return Standing(level, program.tiers.metric, current, next_threshold(program, level))


async def raise_tier(member: Member, program: Program, now: datetime, first_purchase: bool = False) -> dict:
    """Reaching a threshold upgrades at once, never down (``evaluate_tiers`` lowers after retention).
    A ``first_purchase`` task upgrade may lift further. A level with ``manual_review`` is not
    entered here (a reviewer decides it); the highest level below it that needs none is."""
    current = program.level(member.tier_code)
    target = level_for(program, await metric_value(member.id, program, now), without_review=True)
    if first_purchase:
        for upgrade in program.tiers.task_upgrades:
            if upgrade.task == "first_purchase" and await Order.filter(member_id=member.id).count() >= upgrade.count:
                lifted = program.level(upgrade.to)
                target = lifted if lifted.threshold > target.threshold else target
    changed = target.threshold > current.threshold
    if changed:
        await Member.filter(id=member.id).update(tier_code=target.code, tier_since=now)
        member.tier_code = target.code
    level = target if changed else current
    return {"code": level.code, "name": level.name, "changed": changed}
