"""Scheduled jobs that move points with time. Each is safe to run twice, or in two processes at
once: every unit of work posts under its own cause key (``vest:<pending id>``, ``expire:<lot id>``)
and re-reads its row under lock before acting."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from . import ledger, points
from .chains import get_program
from .clock import utc
from .errors import DuplicateEntry, UnknownJob
from .members import announce_balance
from .models import Account, PendingPoints, PointsLot


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
            pending = await PendingPoints.select_for_update().get(id=pending_id)
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
            await PendingPoints.filter(id=pending.id).update(vested=True, remaining=0)
            await announce_balance(chain_id, pending.member_id, entry.id, now)
            return amount
    except DuplicateEntry:
        return None


async def expire_points(chain_id: int, now: datetime) -> JobReport:
    """What is left of every lot whose expiry has passed is removed, one journal entry per lot."""
    due = await PointsLot.filter(chain_id=chain_id, remaining__gt=0, expires_at__lte=utc(now)).values_list("id", flat=True)
    done = total = 0
    for lot_id in due:
        amount = await _expire_one(chain_id, lot_id, now)
        if amount:
            done, total = done + 1, total + amount
    return JobReport("expire_points", done, total)


async def _expire_one(chain_id: int, lot_id: int, now: datetime) -> int:
    try:
        async with in_transaction():
            lot = await PointsLot.get(id=lot_id)
            # The points account row is the member's lock for everything that touches lots.
            await Account.select_for_update().get(member_id=lot.member_id, kind="points")
            lot = await PointsLot.get(id=lot_id)
            amount = int(lot.remaining)
            if amount <= 0:
                return 0
            entry = await ledger.post(chain_id, ledger.Entry(
                key=f"expire:{lot.id}", kind="expiry", member_id=lot.member_id, channel="job",
                reason=f"lot {lot.id} expired at {lot.expires_at.isoformat()}", occurred_at=lot.expires_at,
                legs=[ledger.Leg("points", -amount, lot.member_id, guard=True), ledger.Leg("points_expired", amount)]))
            await PointsLot.filter(id=lot.id).update(remaining=0)
            await announce_balance(chain_id, lot.member_id, entry.id, now)
            return amount
    except DuplicateEntry:
        return 0


JOBS = {"vest_points": vest_points, "expire_points": expire_points}


async def run_job(name: str, chain_id: int, now: datetime) -> JobReport:
    if name not in JOBS:
        raise UnknownJob(f"No job {name!r}; jobs: {', '.join(sorted(JOBS))}")
    return await JOBS[name](chain_id, now)
