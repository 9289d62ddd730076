"""Behaviours a member is rewarded for: check-ins, reviews, shares, a completed profile, invites.

Each is one transaction that starts by locking the member's row, so one member's behaviours are
counted one after another however many processes serve them: that is what makes the caps hold.

- ``checkin``: once per day of the chain's calendar (409 ``already_checked_in``), with a streak
  (yesterday's streak plus one, else 1); ``streak_bonus`` ``{"7": 20}`` adds 20 on every day the
  streak reaches a multiple of 7.
- ``review``: once per thing reviewed (``ref``, e.g. an order id; 409 ``already_done``), at most
  ``daily_cap`` rewarded a day.
- ``share``: at most ``daily_cap`` rewarded a day; each share is one cause (the caller's request).
- ``complete_profile``: once ever (409 ``already_done``).
- ``invite``: once per member invited (``ref``), at most ``monthly_cap`` rewarded a month; a
  ``task_upgrades`` entry ``{"task": "invite", "count": n}`` lifts the inviter when n invites are
  recorded (never down). A ``complete_profile`` task upgrade likewise.

Past a cap the behaviour is still recorded, with 0 points and ``capped: true``. Points earned by
a behaviour count as growth too (API.md: growth is 1 per yuan plus behaviour points) and are
posted like any other: a ledger entry under the behaviour's key, a lot, the member's figures.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from . import codes, ledger, points, sql, tiers
from .errors import AlreadyCheckedIn, AlreadyDone, ValidationFailed
from .members import announce_balance, public_balances
from .models import Member
from .program import Behavior, Program
from .rules.calendar import day_number

BEHAVIORS = ("checkin", "review", "share", "complete_profile", "invite")
NEEDS_REF = {"review", "invite"}


@dataclass(frozen=True)
class Day:
    day: int  # yyyymmdd
    month: int  # yyyymm
    yesterday: int


def day_of(moment: datetime, program: Program) -> Day:
    local = moment.astimezone(ZoneInfo(program.timezone)).date()
    before = local - timedelta(days=1)
    return Day(day_number(local), local.year * 100 + local.month, day_number(before))


def _key(behavior: str, member_id: int, day: Day, ref: str | None, cause: str | None) -> str:
    if behavior == "checkin":
        return f"checkin:{member_id}:{day.day}"
    if behavior == "complete_profile":
        return f"complete_profile:{member_id}"
    if behavior in NEEDS_REF:
        return f"{behavior}:{member_id}:{ref}"
    return f"{behavior}:{member_id}:{cause or uuid.uuid4()}"


def streak_bonus(rule: Behavior, streak: int) -> int:
    return sum(bonus for days, bonus in rule.streak_bonus.items() if streak % int(days) == 0)


STREAK = ("SELECT streak FROM behavior_events WHERE chain_id = $1 AND member_id = $2 AND behavior = 'checkin' "
          "AND day = $3")
REWARDED_TODAY = ("SELECT count(*) AS n FROM behavior_events WHERE chain_id = $1 AND member_id = $2 "
                  "AND behavior = $3 AND day = $4 AND points > 0")
REWARDED_THIS_MONTH = ("SELECT count(*) AS n FROM behavior_events WHERE chain_id = $1 AND member_id = $2 "
                       "AND behavior = $3 AND month = $4 AND points > 0")
DONE = "SELECT count(*) AS n FROM behavior_events WHERE chain_id = $1 AND member_id = $2 AND behavior = $3"
INSERT = ("INSERT INTO behavior_events (chain_id, member_id, behavior, key, day, month, streak, points, ref, "
          "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")


async def record(chain_id: int, member_id: int, behavior: str, program: Program, now: datetime,
                 ref: str | None = None, cause: str | None = None) -> dict:
    """Record one behaviour and reward it within its caps; the answer a member would read."""
    if behavior not in BEHAVIORS:
        raise ValidationFailed([{"field": "behavior", "message": f"one of {', '.join(BEHAVIORS)}"}])
    if behavior in NEEDS_REF and not ref:
        raise ValidationFailed([{"field": "ref", "message": f"a {behavior} names what it is about"}])
    rule: Behavior = getattr(program.behaviors, behavior)
    day = day_of(now, program)
    key = _key(behavior, member_id, day, ref, cause)
    try:
        async with in_transaction():
            await codes.lock_active_member(chain_id, member_id, "This member is frozen: no earning")
            streak = await _streak(chain_id, member_id, day) if behavior == "checkin" else 0
            earned, capped = await _reward(chain_id, member_id, behavior, rule, day, streak)
            await sql.execute(INSERT, chain_id, member_id, behavior, key, day.day, day.month, streak, earned, ref, now)
            balances, tier = await _credit(chain_id, member_id, behavior, key, earned, program, now)
            tier = await _task_upgrade(chain_id, member_id, behavior, program, now) or tier
    except IntegrityError:
        if behavior == "checkin":
            raise AlreadyCheckedIn("Checked in already today; come back tomorrow") from None
        raise AlreadyDone(f"This {behavior.replace('_', ' ')} was recorded already") from None
    return {"behavior": behavior, "points": earned, "capped": capped, "streak": streak or None,
            "balances": balances, "tier": tier}


async def _streak(chain_id: int, member_id: int, day: Day) -> int:
    before = await sql.rows(STREAK, chain_id, member_id, day.yesterday)
    return int(before[0]["streak"]) + 1 if before else 1


async def _reward(chain_id: int, member_id: int, behavior: str, rule: Behavior, day: Day,
                  streak: int) -> tuple[int, bool]:
    """The points this behaviour earns now, and whether a cap held them back."""
    if rule.daily_cap is not None and \
            (await sql.rows(REWARDED_TODAY, chain_id, member_id, behavior, day.day))[0]["n"] >= rule.daily_cap:
        return 0, True
    if rule.monthly_cap is not None and \
            (await sql.rows(REWARDED_THIS_MONTH, chain_id, member_id, behavior, day.month))[0]["n"] >= rule.monthly_cap:
        return 0, True
    return rule.points + (streak_bonus(rule, streak) if behavior == "checkin" else 0), False


async def _credit(chain_id: int, member_id: int, behavior: str, key: str, earned: int, program: Program,
                  now: datetime) -> tuple[dict, dict | None]:
    if earned <= 0:
        return await public_balances(chain_id, member_id), None
    entry = await ledger.post(chain_id, ledger.Entry(
        key=key, kind="behavior", member_id=member_id, channel="mp", reason=behavior, occurred_at=now,
        zone=program.timezone,
        legs=[ledger.Leg("points", earned, member_id), ledger.Leg("points_issued", -earned),
              ledger.Leg("growth", earned, member_id), ledger.Leg("growth_issued", -earned)],
        tally=tiers.tally(program, tiers.period_of(now, program),
                          tiers.Figures(growth=earned, points_earned=earned), now)))
    await points.add_lot(chain_id, member_id, entry, earned, now, program)
    member = await Member.get(chain_id=chain_id, id=member_id)
    tier = await tiers.raise_tier(member, program, now, entry.standing)
    balances = await announce_balance(chain_id, member_id, entry.id, now,
                                      also=(("behavior.rewarded", {"member_id": member_id, "behavior": behavior,
                                                                   "points": earned}),), balances=entry.accounts)
    return balances, tier


async def _task_upgrade(chain_id: int, member_id: int, behavior: str, program: Program, now: datetime) -> dict | None:
    """A task upgrade this behaviour completes (its ``count`` of recorded behaviours), never down."""
    tasks = [u for u in program.tiers.task_upgrades if u.task == behavior]
    if not tasks:
        return None
    done = int((await sql.rows(DONE, chain_id, member_id, behavior))[0]["n"])
    reached = [u for u in tasks if done >= u.count]
    if not reached:
        return None
    member = await Member.get(chain_id=chain_id, id=member_id)
    target = max((program.level(u.to) for u in reached), key=lambda level: level.threshold)
    return await tiers.lift_to(member, program, target.code, now, f"task:{behavior}")
