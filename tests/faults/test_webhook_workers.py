"""Two ``loyalty worker`` processes over one PostgreSQL deliver each event of a chain's webhooks to
its receiver once: every event fanned out once per subscription, each delivery claimed by one
worker (``FOR UPDATE SKIP LOCKED`` and a lease), the duplicates a receiver would drop counted (none
without a crash)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from aiohttp import web

from loyalty_core import webhooks
from loyalty_core.crypto import Vault
from loyalty_core.models import OutboxEvent

from ..fakes.receiver import Receiver
from .checks import assert_ledger_clean, opened
from .lab import LOYALTY, REDIS_URL, SECRET, free_port
from .test_worker import members_with_events

pytestmark = pytest.mark.postgres


async def serve(receiver: Receiver) -> web.AppRunner:
    runner = web.AppRunner(receiver.application())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hooks"
    return runner


async def test_two_worker_processes_deliver_each_webhook_event_once(lab):
    async with asyncio.timeout(90):
        database_url = await lab.database()
        receiver = Receiver()
        runner = await serve(receiver)
        lab.on_close(runner.cleanup)
        env = lab.env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=lab.redis_prefix())
        async with opened(database_url):
            chain_id = await members_with_events(0)
            made = await webhooks.subscribe(chain_id, receiver.url, ["*"], Vault(SECRET), datetime.now(timezone.utc))
            receiver.secrets.append(made.secret)
            await members_with_events_in(chain_id, 40)
            wanted = set(await OutboxEvent.filter(chain_id=chain_id).exclude(topic=webhooks.DELIVERY)
                         .values_list("event_id", flat=True))
            assert len(wanted) == 80  # 40 members: member.created and balance.changed each

            for name in ("worker-1", "worker-2"):
                lab.process(name, [LOYALTY, "worker"], env).start()
            deadline = time.monotonic() + 60
            while set(receiver.events) != wanted:
                assert time.monotonic() < deadline, f"{len(receiver.events)} of {len(wanted)} received"
                await asyncio.sleep(0.2)
            while await OutboxEvent.filter(chain_id=chain_id, status="pending").exists():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            assert await OutboxEvent.filter(chain_id=chain_id, topic=webhooks.DELIVERY).count() == 80
            assert receiver.refused == 0
            assert sum(receiver.duplicates.values()) == 0, receiver.duplicates
            assert len(receiver.received) == 80
            await assert_ledger_clean()


async def members_with_events_in(chain_id: int, count: int) -> None:
    from loyalty_core.chains import get_program
    from loyalty_core.members import NewMember, adjust, register_member

    program, vault, now = await get_program(chain_id), Vault(SECRET), datetime.now(timezone.utc)
    for i in range(count):
        member = await register_member(chain_id, NewMember(phone=f"1390000{i:04d}"), program, vault, now)
        await adjust(chain_id, member.id, "points", 10 + i, "seed", "test", program, now)
