"""Where a member stands on the tier ladder, from figures kept per member and month.

Every change that moves a tier metric (an order, a refund, a welcome) adds to the member's
figures for its month (``MemberFigure``, ``period`` = yyyymm in the chain's timezone) and to
their lifetime row (``period`` 0), in the same transaction as its postings. A metric is the
sum of the window's rows: at most ``window_months`` rows, however long the member's history.

Windows count whole calendar months in the chain's timezone: a rolling window of N months is
the current month and the N - 1 before it; ``calendar_year`` is January to December of the
current year (growth starts again from zero each 1 January).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from . import reviews, sql
from .models import Member
from .outbox import emit
from .program import Level, Program

METRICS = ("growth", "points_earned", "spend", "stored_value")


def metric_column(program: Program) -> str:
    """The ``member_figures`` column the program's tier metric sums (never text from a request:
    the program allows only these names)."""
    metric = program.tiers.metric
    if metric not in METRICS:
        raise ValueError(f"unknown tier metric {metric!r}")
    return metric


@dataclass(frozen=True)
class Figures:
    """What one cause adds to a member's figures (negative for a refund)."""

    growth: int = 0
    points_earned: int = 0
    spend: int = 0
    stored_value: int = 0
    orders: int = 0
    last_order_at: datetime | None = None  # an order's occurred_at: the figures keep the latest


def period_of(moment: datetime, program: Program) -> int:
    """The month a cause counts in: yyyymm on the chain's local calendar."""
    local = moment.astimezone(ZoneInfo(program.timezone))
    return local.year * 100 + local.month


def window(program: Program, now: datetime) -> tuple[int, int]:
    """The first and last period of the metric's window at ``now``."""
    last = period_of(now, program)
    year, month = divmod(last, 100)
    if program.tiers.window == "calendar_year":
        return year * 100 + 1, last
    index = year * 12 + (month - 1) - (program.tiers.window_months - 1)
    return (index // 12) * 100 + index % 12 + 1, last


FIGURES = ("growth", "points_earned", "spend", "stored_value", "orders")


LATEST = ("last_order_at = CASE WHEN excluded.last_order_at IS NOT NULL AND (member_figures.last_order_at IS NULL "
          "OR excluded.last_order_at > member_figures.last_order_at) THEN excluded.last_order_at "
          "ELSE member_figures.last_order_at END")


def _upsert(chain: str, member: str, first: int) -> str:
    """Add figures (parameters ``$first`` = period, then FIGURES in order, then the order time) to a
    month's row and the lifetime row, in one statement; the later order time is kept."""
    values = ", ".join(f"${first + 1 + i}" for i in range(len(FIGURES) + 1))
    return (f"INSERT INTO member_figures (chain_id, member_id, period, {', '.join(FIGURES)}, last_order_at) "
            f"VALUES ({chain}, {member}, ${first}, {values}), ({chain}, {member}, 0, {values}) "
            "ON CONFLICT (chain_id, member_id, period) DO UPDATE SET "
            + ", ".join(f"{name} = member_figures.{name} + excluded.{name}" for name in FIGURES) + ", " + LATEST)


UPSERT = _upsert("$1", "$2", 3)


def _figures_params(figures: Figures) -> list:
    return [*(getattr(figures, name) for name in FIGURES), figures.last_order_at]


async def add_figures(chain_id: int, member_id: int, period: int, figures: Figures) -> None:
    """Add ``figures`` to the member's month and lifetime rows (one statement). Call inside the
    transaction that posts the cause, after its account rows are locked."""
    await sql.execute(UPSERT, chain_id, member_id, period, *_figures_params(figures))


@dataclass(frozen=True)
class Reading:
    metric: int
    lifetime_orders: int


@dataclass(frozen=True)
class Tally:
    """What a journal entry adds to its member's figures, and the tier window to read back after:
    the ledger writes both in the entry's own statement (``ledger.Entry.tally``)."""

    period: int
    figures: Figures
    first: int
    last: int
    column: str


def tally(program: Program, period: int, figures: Figures, now: datetime) -> Tally:
    first, last = window(program, now)
    return Tally(period, figures, first, last, metric_column(program))


def tally_sql(t: Tally, first_param: int) -> tuple[str, str]:
    """The parts of the ledger's one statement that add a tally (a CTE, after the entry's) and read
    the standing back (rows of its answer). The window's rows other than the tally's month are
    read as they were; the tally's month and the lifetime row as the upsert left them."""
    period, first, last = f"${first_param}", f"${first_param + 7}", f"${first_param + 8}"
    cte = (f", figured AS ({_upsert('$1', '$4', first_param)} RETURNING period, {t.column} AS metric, orders)\n")
    rows = (f"\nUNION ALL SELECT 'window', NULL, NULL, COALESCE(SUM({t.column}), 0) FROM member_figures "
            f"WHERE chain_id = $1 AND member_id = $4 AND period BETWEEN {first} AND {last} AND period <> {period}"
            f"\nUNION ALL SELECT 'window', NULL, NULL, metric FROM figured "
            f"WHERE period = {period} AND period BETWEEN {first} AND {last}"
            "\nUNION ALL SELECT 'orders', NULL, NULL, orders FROM figured WHERE period = 0")
    return cte, rows


def tally_params(t: Tally) -> list:
    return [t.period, *_figures_params(t.figures), t.first, t.last]


def reading_of(found: list[dict]) -> Reading:
    """The standing from the ledger statement's answer rows (see ``tally_sql``)."""
    metric = sum(int(r["value"]) for r in found if r["what"] == "window")
    orders = sum(int(r["value"]) for r in found if r["what"] == "orders")
    return Reading(metric, orders)


async def read(chain_id: int, member_id: int, program: Program, now: datetime) -> Reading:
    """The window's metric and the lifetime orders count, in one query over a bounded set of rows."""
    first, last = window(program, now)
    return await read_window(chain_id, member_id, first, last, metric_column(program))


async def read_window(chain_id: int, member_id: int, first: int, last: int, column: str) -> Reading:
    found = await sql.rows(
        f"SELECT COALESCE(SUM(CASE WHEN period > 0 THEN {column} ELSE 0 END), 0) AS metric, "
        "COALESCE(SUM(CASE WHEN period = 0 THEN orders ELSE 0 END), 0) AS orders "
        "FROM member_figures WHERE chain_id = $1 AND member_id = $2 AND (period = 0 OR period BETWEEN $3 AND $4)",
        chain_id, member_id, first, last)
    row = found[0] if found else {}
    return Reading(int(row.get("metric") or 0), int(row.get("orders") or 0))


def level_for(program: Program, value: int, without_review: bool = False) -> Level:
    """The highest level whose threshold ``value`` reaches (skipping review levels if asked)."""
    reached = program.tiers.levels[0]
    for level in program.tiers.levels:
        if value >= level.threshold and not (without_review and level.manual_review):
            reached = level
    return reached


def higher(program: Program, *levels: Level) -> Level:
    return max(levels, key=lambda level: level.threshold)


def earned_level(program: Program, reading: Reading) -> Level:
    """The level the figures earn by themselves: the metric's, or a first-purchase task upgrade's.
    A level with ``manual_review`` is never entered here (a reviewer decides it)."""
    target = level_for(program, reading.metric, without_review=True)
    for upgrade in program.tiers.task_upgrades:
        if upgrade.task == "first_purchase" and reading.lifetime_orders >= upgrade.count:
            target = higher(program, target, program.level(upgrade.to))
    return target


def next_threshold(program: Program, level: Level) -> int | None:
    above = [lv.threshold for lv in program.tiers.levels if lv.threshold > level.threshold]
    return min(above) if above else None


def tier_answer(level: Level, changed: bool) -> dict:
    return {"code": level.code, "name": level.name, "changed": changed}


async def raise_tier(member: Member, program: Program, now: datetime, reading: Reading | None = None) -> dict:
    """Reaching a threshold upgrades at once, never down (``evaluate_tiers`` lowers after retention).
    ``reading``: the standing the cause's ledger entry read back with its tally (else read here)."""
    current = program.level(member.tier_code)
    if reading is None:
        reading = await read(member.chain_id, member.id, program, now)
    target = earned_level(program, reading)
    await _ask_review(member, program, reading, max(current.threshold, target.threshold), now)
    if target.threshold <= current.threshold:
        return tier_answer(current, False)
    await _move_tier(member, current, target, now, "upgrade")
    return tier_answer(target, True)


async def _ask_review(member: Member, program: Program, reading: Reading, above: int, now: datetime) -> None:
    """The figures reach a ``manual_review`` level above where they take the member: a reviewer
    decides (one pending review per member and level)."""
    reached = level_for(program, reading.metric)
    if reached.manual_review and reached.threshold > above:
        await reviews.open_review(member.chain_id, member.id, "tier_upgrade", reached.code,
                                  {"metric": program.tiers.metric, "value": reading.metric,
                                   "threshold": reached.threshold}, now)


async def lift_to(member: Member, program: Program, code: str, now: datetime, why: str) -> dict:
    """Move the member up to the level ``code`` (a reviewer's approval); never down, and nothing
    for a level the program no longer has."""
    current = program.level(member.tier_code)
    target = next((level for level in program.tiers.levels if level.code == code), None)
    if target is None or target.threshold <= current.threshold:
        return tier_answer(current, False)
    await _move_tier(member, current, target, now, why)
    return tier_answer(target, True)


async def lower_after_retention(chain_id: int, member_id: int, program: Program, kept_since: datetime,
                                now: datetime) -> bool:
    """``evaluate_tiers`` for one member, in its own short transaction: a tier held since before
    ``kept_since`` (its retention is over) whose window metric is below its threshold goes down
    to what the figures earn (first-purchase upgrades included, review levels never). True if lowered."""
    async with in_transaction():
        member = await Member.select_for_update().get_or_none(chain_id=chain_id, id=member_id)
        if member is None or member.erased_at is not None or member.tier_since is None or member.tier_since > kept_since:
            return False
        current = program.level(member.tier_code)
        reading = await read(chain_id, member_id, program, now)
        if reading.metric >= current.threshold:
            return False
        target = earned_level(program, reading)
        if target.threshold >= current.threshold:
            return False
        await _move_tier(member, current, target, now, "evaluation")
    return True


async def settle_after_refund(member: Member, program: Program, lifted_to: str | None, before: str | None,
                              now: datetime, reading: Reading | None = None) -> dict:
    """A refund that takes the figures back below the level its order reached returns the member
    to the tier they had before that order (or to what the figures still earn, if higher). Only
    while that order's level is still the member's tier: a later upgrade stands on its own."""
    current = program.level(member.tier_code)
    if lifted_to is None or member.tier_code != lifted_to:
        return tier_answer(current, False)
    earned = earned_level(program, reading or await read(member.chain_id, member.id, program, now))
    if earned.threshold >= current.threshold:
        return tier_answer(current, False)
    target = higher(program, earned, program.level(before or program.tiers.levels[0].code))
    if target.code == current.code:
        return tier_answer(current, False)
    await _move_tier(member, current, target, now, "refund")
    return tier_answer(target, True)


async def _move_tier(member: Member, current: Level, target: Level, now: datetime, why: str) -> None:
    await Member.filter(chain_id=member.chain_id, id=member.id).update(tier_code=target.code, tier_since=now)
    member.tier_code = target.code
    await emit(member.chain_id, "tier.changed", {"member_id": member.id, "from": current.code, "to": target.code,
                                                 "reason": why}, now)
