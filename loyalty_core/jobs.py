"""Scheduled jobs that move points with time. Each is safe to run twice, or in two processes at
once: every unit of work re-reads its rows under lock before acting and posts under a cause key
(``vest:<pending id>``; ``expire:<member id>:<highest lot id>``) that a second run of it collides on."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from tortoise.connection import connections
from tortoise.transactions import in_transaction

from . import automation, ledger, points, sql, tiers
from .chains import get_program
from .clock import utc
from .errors import DuplicateEntry, InsufficientPoints, UnknownJob
from .members import announce_balance, shown_balances
from .models import Account, PendingPoints, PointsLot
from .outbox import emit_all
from .rules.calendar import shift_months


@dataclass(frozen=True)
class JobReport:
    job: str
    processed: int
    points: int

    def as_dict(self, ran_at: datetime) -> dict:
        return {"job": self.job, "processed": self.processed, "points": self.points, "ran_at": ran_at.isoformat()}


async def vest_points(chain_id: int, now: datetime) -> JobReport:
    """Pending points whose time has come become available, each batch as a new lot."""
    program = await get_program(chain_id)
    due = await PendingPoints.filter(chain_id=chain_id, vested=False, vest_at__lte=utc(now)).values_list("id", flat=True)
    done = total = 0
    for pending_id in due:
        amount = await _vest_one(chain_id, pending_id, program, now)
        if amount is not None:
            done, total = done + 1, total + amount
    return JobReport("vest_points", done, total)


async def _vest_one(chain_id: int, pending_id: int, program, now: datetime) -> int | None:
    try:
        async with in_transaction():
            pending = await PendingPoints.select_for_update().get(chain_id=chain_id, id=pending_id)
            if pending.vested:
                return None
            amount = int(pending.remaining)
            entry = await ledger.post(chain_id, ledger.Entry(
                key=f"vest:{pending.id}", kind="vest", member_id=pending.member_id, channel="job",
                ref=f"order:{pending.order_id}" if pending.order_id else None, occurred_at=pending.vest_at,
                legs=[ledger.Leg("points_pending", -amount, pending.member_id, guard=True),
                      ledger.Leg("points", amount, pending.member_id)]))
            if amount:
                await points.add_lot(chain_id, pending.member_id, entry, amount, pending.vest_at, program,
                                      order_id=pending.order_id)
            await PendingPoints.filter(chain_id=chain_id, id=pending.id).update(vested=True, remaining=0)
            await announce_balance(chain_id, pending.member_id, entry.id, now)
            return amount
    except DuplicateEntry:
        return None


async def vest_order_now(chain_id: int, order_id: int, now: datetime) -> int:
    """An order's pending points vest now (a marketplace order was confirmed); 0 when none wait."""
    program = await get_program(chain_id)
    total = 0
    for pending_id in await PendingPoints.filter(chain_id=chain_id, order_id=order_id, vested=False).values_list(
            "id", flat=True):
        await PendingPoints.filter(chain_id=chain_id, id=pending_id, vested=False).update(vest_at=utc(now))
        total += await _vest_one(chain_id, pending_id, program, now) or 0
    return total


EXPIRY_SCAN = 1000  # due lots read per step, in expiry order
# The open lots in expiry order from where the last step stopped (an index of the open lots
# only, migration 0006): the scan stops at the first lot not yet due, whatever the chain's history.
DUE_LOTS = ("SELECT id, member_id, expires_at FROM points_lots "
            "WHERE chain_id = $1 AND remaining > 0 AND expires_at <= $2 AND (expires_at, id) > ($3, $4) "
            "ORDER BY expires_at, id LIMIT $5")
BEFORE_ANY = datetime(1970, 1, 1, tzinfo=timezone.utc)
EXPIRY_MEMBERS = 100  # members per transaction: their points accounts stay locked only that long


async def expire_points(chain_id: int, now: datetime) -> JobReport:
    """What is left of every lot whose expiry has passed is removed: one journal entry per member
    for the sum of their expired lots, and one balance announcement.

    Due lots are read in steps of ``EXPIRY_SCAN`` in expiry order; their members are expired in
    small groups, one short transaction each. ``processed`` counts the lots expired, ``points``
    their points."""
    due, zone = utc(now), (await get_program(chain_id)).timezone
    after, done, total = (BEFORE_ANY, 0), 0, 0
    while True:
        lots = await sql.rows(DUE_LOTS, chain_id, due, *after, EXPIRY_SCAN)
        if not lots:
            break
        after = (lots[-1]["expires_at"], lots[-1]["id"])
        members = sorted({lot["member_id"] for lot in lots})
        for start in range(0, len(members), EXPIRY_MEMBERS):
            lots_expired, points_expired = await _expire_members(chain_id, members[start:start + EXPIRY_MEMBERS],
                                                                 due, now, zone)
            done, total = done + lots_expired, total + points_expired
    return JobReport("expire_points", done, total)


async def _expire_members(chain_id: int, member_ids: list[int], due: datetime, now: datetime,
                          zone: str) -> tuple[int, int]:
    """One transaction for the group; should one member's entry fail, each member alone."""
    try:
        async with in_transaction():
            return await _expire_locked(chain_id, member_ids, due, now, zone)
    except (DuplicateEntry, InsufficientPoints):
        if len(member_ids) == 1:
            raise
    done = total = 0
    for member_id in member_ids:
        try:
            async with in_transaction():
                lots_expired, points_expired = await _expire_locked(chain_id, [member_id], due, now, zone)
        except DuplicateEntry:  # another run expired these very lots: nothing left to do here
            continue
        done, total = done + lots_expired, total + points_expired
    return done, total


async def _expire_locked(chain_id: int, member_ids: list[int], due: datetime, now: datetime,
                         zone: str) -> tuple[int, int]:
    # The points account row is the member's lock for everything that touches lots: taken in
    # member order (as every path that locks several members does), then the lots are read again.
    # Before it, the member rows' key-share lock that the journal entry's foreign key takes anyway:
    # taken first, as an order or an adjustment (which locks the member row) takes it, so that an
    # adjustment waiting for a points account never holds a member row this job waits for.
    if connections.get("default").capabilities.dialect == "postgres":
        marks = ", ".join(f"${i + 2}" for i in range(len(member_ids)))
        await sql.rows(f"SELECT id FROM members WHERE chain_id = $1 AND id IN ({marks}) ORDER BY id FOR KEY SHARE",
                       chain_id, *member_ids)
    await Account.select_for_update().filter(chain_id=chain_id, member_id__in=member_ids, kind="points"
                                             ).order_by("member_id")
    lots = await PointsLot.filter(chain_id=chain_id, member_id__in=member_ids, remaining__gt=0, expires_at__lte=due
                                  ).order_by("member_id", "id").values("id", "member_id", "remaining", "expires_at")
    by_member: dict[int, list[dict]] = {}
    for lot in lots:
        by_member.setdefault(lot["member_id"], []).append(lot)
    entries: dict[int, int] = {}
    for member_id, expired in by_member.items():
        amount = sum(int(lot["remaining"]) for lot in expired)
        last = max(lot["expires_at"] for lot in expired)
        # The key names the member and the highest lot id of the entry: two entries never expire the
        # same lot (a lot emptied stays empty), so two entries of one member never share it, and two
        # runs that read the same lots collide on it instead of posting twice.
        entry = await ledger.post(chain_id, ledger.Entry(
            key=f"expire:{member_id}:{expired[-1]['id']}", kind="expiry", member_id=member_id, channel="job",
            reason=_expiry_reason(expired, last), occurred_at=last, zone=zone,
            legs=[ledger.Leg("points", -amount, member_id, guard=True), ledger.Leg("points_expired", amount)]))
        entries[member_id] = entry.id
    if not entries:
        return 0, 0
    await PointsLot.filter(chain_id=chain_id, id__in=[lot["id"] for lot in lots]).update(remaining=0)
    raw: dict[int, dict[str, int]] = {}
    for member_id, kind, balance in await Account.filter(chain_id=chain_id, member_id__in=list(entries)).values_list(
            "member_id", "kind", "balance"):
        raw.setdefault(member_id, {})[kind] = int(balance)
    await emit_all(chain_id, [("balance.changed", {"member_id": member_id, "entry_id": entry_id,
                                                   "balances": shown_balances(raw[member_id])})
                              for member_id, entry_id in entries.items()], now)
    return len(lots), sum(int(lot["remaining"]) for lot in lots)


def _expiry_reason(lots: list[dict], last: datetime) -> str:
    if len(lots) == 1:
        return f"lot {lots[0]['id']} expired at {last.isoformat()}"
    ids = ", ".join(str(lot["id"]) for lot in lots[:20]) + (", ..." if len(lots) > 20 else "")
    return f"{len(lots)} lots expired ({ids}), the last at {last.isoformat()}"


WARN_MEMBERS = 500  # members per step of the warning job
# The members with open lots that expire within the warning window and that nobody was warned
# of (the partial index of migration 0019: a lot leaves it once warned, spent or expired).
TO_WARN = ("SELECT DISTINCT member_id FROM points_lots WHERE chain_id = $1 AND remaining > 0 AND warned_at IS NULL "
           "AND expires_at IS NOT NULL AND expires_at > $2 AND expires_at <= $3 LIMIT $4")
WARNED = ("UPDATE points_lots SET warned_at = $2 WHERE chain_id = $1 AND remaining > 0 AND warned_at IS NULL "
          "AND expires_at IS NOT NULL AND expires_at > $2 AND expires_at <= $3 AND member_id IN ({members}) "
          "RETURNING member_id, remaining, expires_at")


async def warn_expiring_points(chain_id: int, now: datetime) -> JobReport:
    """Members whose points expire within ``points.expiry.warn_days`` are told once per lot: one
    ``points.expiring`` event per member and run, for the points of the lots first warned of
    (``expires_at``: the soonest of them). The lots are marked in the same transaction as the
    event, so a second run, or one beside this one, warns of none of them again. ``processed``
    counts the members warned, ``points`` their points."""
    days = (await get_program(chain_id)).points.expiry.warn_days
    if days <= 0:
        return JobReport("warn_expiring_points", 0, 0)
    due, until = utc(now), utc(now) + timedelta(days=days)
    warned = total = 0
    while members := [row["member_id"] for row in await sql.rows(TO_WARN, chain_id, due, until, WARN_MEMBERS)]:
        async with in_transaction():
            lots = await sql.rows(WARNED.format(members=", ".join(str(int(m)) for m in members)), chain_id, due, until)
            by_member: dict[int, list[dict]] = {}
            for lot in lots:
                by_member.setdefault(lot["member_id"], []).append(lot)
            await emit_all(chain_id, [("points.expiring", {
                "member_id": member_id, "points": sum(int(lot["remaining"]) for lot in held),
                "expires_at": min(sql.aware(lot["expires_at"]) for lot in held).isoformat()})
                for member_id, held in sorted(by_member.items())], now)
        warned, total = warned + len(by_member), total + sum(int(lot["remaining"]) for lot in lots)
        if len(members) < WARN_MEMBERS:
            break
    return JobReport("warn_expiring_points", warned, total)


EVALUATE_BATCH = 500
TIERED = ("SELECT id FROM members WHERE chain_id = $1 AND tier_code <> $2 AND tier_since <= $3 AND erased_at IS NULL "
          "AND id > $4 ORDER BY id LIMIT $5")


async def evaluate_tiers(chain_id: int, now: datetime) -> JobReport:
    """Lower the tiers whose ``retention_months`` are over while the window's metric is below the
    tier's threshold (to what the figures earn). Members are read in batches by id and each is
    lowered in its own short transaction that re-reads it locked; a lowered tier is kept from now
    on, so a second run, or one beside it, lowers nobody twice."""
    program = await get_program(chain_id)
    kept_since = utc(shift_months(now.astimezone(ZoneInfo(program.timezone)), -program.tiers.retention_months))
    lowered, after = 0, 0
    while True:
        batch = [int(row["id"]) for row in await sql.rows(TIERED, chain_id, program.tiers.levels[0].code, kept_since,
                                                           after, EVALUATE_BATCH)]
        for member_id in batch:
            lowered += await tiers.lower_after_retention(chain_id, member_id, program, kept_since, now)
        if len(batch) < EVALUATE_BATCH:
            return JobReport("evaluate_tiers", lowered, 0)
        after = batch[-1]


JOBS = {"vest_points": vest_points, "expire_points": expire_points, "warn_expiring_points": warn_expiring_points,
        "evaluate_tiers": evaluate_tiers,
        "birthday": automation.birthday, "winback": automation.winback}


async def run_job(name: str, chain_id: int, now: datetime) -> JobReport:
    if name not in JOBS:
        raise UnknownJob(f"No job {name!r}; jobs: {', '.join(sorted(JOBS))}")
    return await JOBS[name](chain_id, now)
