"""`expire_points` in batches: one entry per member per run for the sum of their expired lots, in
small transactions, exactly once however often and in however many places it runs."""
from __future__ import annotations

import asyncio
import contextvars
from datetime import datetime

import pytest

from loyalty_core import jobs
from loyalty_core.verify import verify

from ..helpers import adjustment, ledger_items

PROGRAM = {"behaviors": {"register": {"points": 0}}, "points": {"expiry": {"mode": "rolling_months", "months": 1}}}


@pytest.fixture
def small_batches(monkeypatch):
    """Steps of 3 lots and transactions of 2 members, so that a member's lots straddle both."""
    monkeypatch.setattr(jobs, "EXPIRY_SCAN", 3)
    monkeypatch.setattr(jobs, "EXPIRY_MEMBERS", 2)


def at(clock, iso: str) -> None:
    clock.at = datetime.fromisoformat(iso)


async def credit(kit, member_id: int, amount: int) -> None:
    response = await adjustment(kit, member_id, amount)
    assert response.status == 201, await response.text()


async def run_expiry(kit) -> dict:
    response = await kit.admin("POST", "/v1/jobs/expire_points")
    assert response.status == 200, await response.text()
    return await response.json()


async def expiries(kit, member_id: int) -> list[dict]:
    return [e for e in await ledger_items(kit, member_id) if e["kind"] == "expiry"]


async def lots_of_five_members(kit, clock) -> list[int]:
    """Members 0-3: a lot of 10 x (n + 1) vested 2026-01-05, one of 5 vested 2026-01-15 (both due by
    2026-02-16) and one of 7 vested 2026-02-14 (due 2026-03-15); member 3 spent 8 on 2026-01-25 (from
    its soonest-expiring lot). Member 4: only the lot of 7."""
    await kit.set_program(PROGRAM)
    members = [(await kit.new_member(f"1360000000{n}"))["id"] for n in range(5)]
    at(clock, "2026-01-05T10:00:00+08:00")
    for n, member_id in enumerate(members[:4]):
        await credit(kit, member_id, 10 * (n + 1))
    at(clock, "2026-01-15T10:00:00+08:00")
    for member_id in members[:4]:
        await credit(kit, member_id, 5)
    at(clock, "2026-01-25T10:00:00+08:00")
    await credit(kit, members[3], -8)
    at(clock, "2026-02-14T10:00:00+08:00")
    for member_id in members:
        await credit(kit, member_id, 7)
    return members


EXPECTED = [15, 25, 35, 37]  # what expires of members 0-3: 10 (n + 1) + 5, member 3 less the 8 spent


async def test_one_entry_per_member_for_the_sum_of_its_due_lots_and_a_second_run_does_nothing(
        chain, clock, small_batches):
    members = await lots_of_five_members(chain, clock)
    at(clock, "2026-02-16T00:00:00+08:00")  # both early lots have expired; the February ones have not
    report = await run_expiry(chain)
    assert (report["processed"], report["points"]) == (8, sum(EXPECTED))
    for member_id, amount in zip(members[:4], EXPECTED):
        [entry] = await expiries(chain, member_id)
        assert entry["changes"] == {"points": -amount}
        assert datetime.fromisoformat(entry["occurred_at"]) == datetime.fromisoformat("2026-02-16T00:00:00+08:00")
        assert entry["channel"] == "job" and "2 lots expired" in entry["reason"]
        assert (await chain.member(member_id))["balances"]["points"] == 7
    assert await expiries(chain, members[4]) == []
    assert (await chain.member(members[4]))["balances"]["points"] == 7

    again = await run_expiry(chain)
    assert (again["processed"], again["points"]) == (0, 0)
    assert [len(await expiries(chain, m)) for m in members] == [1, 1, 1, 1, 0]
    at(clock, "2026-03-15T00:00:00+08:00")  # a later run: the February lots, one more entry each
    later = await run_expiry(chain)
    assert (later["processed"], later["points"]) == (5, 35)
    assert [len(await expiries(chain, m)) for m in members] == [2, 2, 2, 2, 1]
    assert [(await chain.member(m))["balances"]["points"] for m in members] == [0] * 5
    assert await verify() == []


@pytest.mark.postgres
async def test_four_runs_at_once_expire_every_lot_once(chain, clock, small_batches):
    members = await lots_of_five_members(chain, clock)
    due = datetime.fromisoformat("2026-02-16T00:00:00+08:00")
    reports = await asyncio.gather(*(jobs.expire_points(chain.chain_id, due) for _ in range(4)))
    assert sum(r.processed for r in reports) == 8 and sum(r.points for r in reports) == sum(EXPECTED)
    assert [len(await expiries(chain, m)) for m in members] == [1, 1, 1, 1, 0]
    assert [(await chain.member(m))["balances"]["points"] for m in members] == [7] * 5
    assert await verify() == []


@pytest.mark.postgres
async def test_expiry_racing_spends_and_credits_loses_no_point(chain, clock, small_batches):
    await chain.set_program(PROGRAM)
    members = [(await chain.new_member(f"1361000{n:04d}"))["id"] for n in range(12)]
    at(clock, "2026-01-05T10:00:00+08:00")
    for member_id in members:
        for amount in (10, 20, 30):
            await credit(chain, member_id, amount)
    at(clock, "2026-02-07T10:00:00+08:00")  # every lot has expired; adjustments now make new lots
    due = datetime.fromisoformat("2026-02-07T00:00:00+08:00")
    moves = [adjustment(chain, m, amount) for m in members for amount in (-5, 3)]
    results = await asyncio.gather(jobs.expire_points(chain.chain_id, due), jobs.expire_points(chain.chain_id, due),
                                   *moves)
    spent = results[2:]
    assert all(r.status in (201, 422) for r in spent), [r.status for r in spent]
    expired = sum(r.points for r in results[:2])
    held = in_entries = 0
    for member_id in members:
        entries = await expiries(chain, member_id)
        assert len(entries) <= 1
        in_entries += sum(-e["changes"]["points"] for e in entries)
        held += (await chain.member(member_id))["balances"]["points"]
    debited = sum(5 for r in spent[0::2] if r.status == 201)
    assert held == 12 * 60 + 12 * 3 - debited - expired
    assert in_entries == expired
    assert await verify() == []


@pytest.mark.postgres
async def test_expiry_waits_for_an_adjustment_holding_the_member_row_instead_of_deadlocking(chain, clock):
    """An adjustment locks the member row (FOR UPDATE), then moves the points account. The job's
    journal entry takes a key-share lock on the member row (its foreign key): were the job to take
    it after the points account, the two would wait for each other in a circle."""
    from tortoise.transactions import in_transaction

    await chain.set_program(PROGRAM)
    member_id = (await chain.new_member("13620000000"))["id"]
    at(clock, "2026-01-05T10:00:00+08:00")
    await credit(chain, member_id, 40)
    due = datetime.fromisoformat("2026-02-07T00:00:00+08:00")
    outside = contextvars.copy_context()  # the job runs on its own connections, not in this transaction
    async with in_transaction() as connection:  # an adjustment's first step: the member row
        await connection.execute_query("SELECT id FROM members WHERE id = $1 FOR UPDATE", [member_id])
        job = asyncio.create_task(jobs.expire_points(chain.chain_id, due), context=outside)
        await asyncio.sleep(0.5)  # the job now waits for one of this transaction's locks
        # ... its second: the points account (the job must not be holding it)
        await connection.execute_query("UPDATE accounts SET balance = balance WHERE member_id = $1 AND kind = 'points'",
                                       [member_id])
        assert not job.done()
    report = await asyncio.wait_for(job, 10)
    assert (report.processed, report.points) == (1, 40)
    assert await verify() == []
