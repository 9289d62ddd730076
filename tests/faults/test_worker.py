"""The worker under faults: killed between delivering an event and marking it, and the retention
of what it keeps for a while only (delivered outbox rows, idempotency records)."""
from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from gateway.worker import Schedule
from loyalty_core.chains import create_chain, get_program
from loyalty_core.clock import FrozenClock
from loyalty_core.crypto import Vault
from loyalty_core.members import NewMember, adjust, register_member
from loyalty_core.models import IdempotencyRecord, OutboxEvent

from .checks import assert_ledger_clean, opened, rows
from .lab import SECRET

pytestmark = pytest.mark.postgres


async def members_with_events(count: int) -> int:
    """A chain whose members were registered and credited: real ledger entries and their events."""
    chain, _ = await create_chain("Outbox Chain")
    program, vault, now = await get_program(chain.id), Vault(SECRET), datetime.now(timezone.utc)
    for i in range(count):
        member = await register_member(chain.id, NewMember(phone=f"1380000{i:04d}"), program, vault, now)
        await adjust(chain.id, member.id, "points", 10 + i, "seed", "test", program, now)
    return chain.id


async def until_none_pending(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await OutboxEvent.filter(status="pending").exists():
        assert time.monotonic() < deadline, await rows("SELECT id, status, attempts, locked_until FROM outbox_events "
                                                       "WHERE status = 'pending'")
        await asyncio.sleep(0.2)


async def test_a_worker_killed_after_delivering_and_before_marking_delivers_that_event_again(lab):
    async with asyncio.timeout(60):
        database_url = await lab.database()
        receiver = await lab.receiver()
        env = lab.env(DATABASE_URL=database_url, OUTBOX_LEASE_SECONDS="2")
        worker = [sys.executable, "-m", "tests.faults.sink_worker", receiver.url]
        async with opened(database_url):
            await members_with_events(6)
            events = await OutboxEvent.all().order_by("id").values_list("event_id", flat=True)
            victim = events[len(events) // 3]
            receiver.hold = lambda event: event["event_id"] == victim  # answered only once released

            first = lab.process("worker-1", worker, env)
            first.start()
            await asyncio.wait_for(receiver.held.wait(), 20)
            first.kill()  # the receiver has the event; the worker never heard back, so never marked it
            row = await OutboxEvent.get(event_id=victim)
            assert (row.status, row.attempts, row.delivered_at) == ("pending", 0, None)
            assert row.locked_until is not None  # still leased by the dead worker
            receiver.release.set()

            lab.process("worker-2", worker, env).start()
            await until_none_pending(timeout=20)
            assert await OutboxEvent.exclude(status="delivered").count() == 0
            counts = receiver.counts()
            assert counts[victim] == 2, "the event the dead worker had delivered is delivered once more"
            assert {e: n for e, n in counts.items() if e != victim} == {e: 1 for e in events if e != victim}
            await assert_ledger_clean()


async def test_retention_deletes_old_delivered_rows_in_bounded_batches_and_keeps_the_rest(lab):
    async with asyncio.timeout(60):
        database_url = await lab.database()
        async with opened(database_url):
            chain_id = await members_with_events(2)
            seeded = await OutboxEvent.all().count()
            now = datetime.now(timezone.utc).replace(microsecond=0)
            days = lambda n: now - timedelta(days=n)  # noqa: E731
            await OutboxEvent.all().update(status="delivered", attempts=1, delivered_at=now)  # the seed's: recent

            async def event(name: str, status: str, at: datetime, delivered_at: datetime | None) -> None:
                await OutboxEvent.create(chain_id=chain_id, event_id=f"retention-{name}", topic="test", payload={},
                                         status=status, attempts=1, next_attempt_at=at, created_at=at,
                                         delivered_at=delivered_at)

            for i in range(5):
                await event(f"old-{i}", "delivered", days(9 + i), days(8 + i))
            await event("delivered-late", "delivered", days(30), days(6))  # created long ago, delivered recently
            await event("new", "delivered", days(1), days(1))
            await event("dead-old", "dead", days(40), None)
            await event("pending-old", "pending", days(40), None)
            for i in range(3):
                await IdempotencyRecord.create(chain_id=chain_id, key=f"old-{i}", fingerprint="f", state="done",
                                               status=201, locked_until=now - timedelta(hours=49),
                                               created_at=now - timedelta(hours=49 + i))
            await IdempotencyRecord.create(chain_id=chain_id, key="new", fingerprint="f", state="done", status=201,
                                           locked_until=now, created_at=now - timedelta(hours=47))

            schedule = Schedule(FrozenClock(now), retention=timedelta(days=7), batch=2, max_batches=2)
            # at most batch x max_batches rows per table and run, the next run goes on
            assert await schedule.prune(now) == {"outbox_events": 4, "idempotency_records": 3, "message_sends": 0}
            assert await schedule.prune(now) == {"outbox_events": 1, "idempotency_records": 0, "message_sends": 0}
            assert await schedule.prune(now) == {"outbox_events": 0, "idempotency_records": 0, "message_sends": 0}
            kept = set(await OutboxEvent.filter(event_id__startswith="retention-").values_list("event_id", flat=True))
            assert kept == {"retention-delivered-late", "retention-new", "retention-dead-old", "retention-pending-old"}
            assert await IdempotencyRecord.all().values_list("key", flat=True) == ["new"]
            assert await OutboxEvent.exclude(event_id__startswith="retention-").count() == seeded  # delivered now

            # the worker process, its retention from OUTBOX_RETENTION_DAYS, on its first schedule run
            await event("two-days", "delivered", days(3), days(2))
            receiver = await lab.receiver()
            env = lab.env(DATABASE_URL=database_url, OUTBOX_RETENTION_DAYS="1.5")
            lab.process("worker", [sys.executable, "-m", "tests.faults.sink_worker", receiver.url], env).start()
            await until_none_pending(timeout=20)  # the pending row
            deadline = time.monotonic() + 20
            while await OutboxEvent.filter(event_id__in=["retention-two-days", "retention-delivered-late"]).exists():
                assert time.monotonic() < deadline, "the worker did not prune the row delivered 2 days ago"
                await asyncio.sleep(0.2)
            left = await OutboxEvent.filter(event_id__startswith="retention-").values_list("event_id", "status")
            assert sorted(left) == [("retention-dead-old", "dead"), ("retention-new", "delivered"),
                                    ("retention-pending-old", "delivered")]
            assert receiver.counts() == {"retention-pending-old": 1}  # nothing else was due; nothing twice
            await assert_ledger_clean()
