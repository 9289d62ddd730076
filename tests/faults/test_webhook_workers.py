"""Two ``loyalty worker`` processes over one PostgreSQL deliver each event of a chain's webhooks to
its receiver once: every event fanned out once per subscription, each delivery claimed by one
worker (``FOR UPDATE SKIP LOCKED`` and a lease), the duplicates a receiver would drop counted (none
without a crash)."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from loyalty_core import channels, joining, ledger, webhooks
from loyalty_core.chains import get_program
from loyalty_core.members import NewMember, adjust, register_member
from loyalty_core.crypto import Vault
from loyalty_core.models import OutboxEvent

from ..fakes.receiver import Receiver
from ..fakes.youzan import FakeYouzanCloud, YouzanShop
from .checks import assert_ledger_clean, opened
from .lab import LOYALTY, REDIS_URL, SECRET
from .test_worker import members_with_events

pytestmark = pytest.mark.postgres


async def test_two_worker_processes_deliver_each_webhook_event_once(lab):
    async with asyncio.timeout(90):
        database_url = await lab.database()
        receiver = Receiver()
        receiver.url = await lab.served(receiver.application(), "/hooks")
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


async def test_two_worker_processes_push_each_balance_change_to_youzan_once(lab):
    """Each ``balance.changed`` of a member bound to a Youzan account becomes one sync row, sent once
    by one of two workers (Youzan's ``biz_value`` would drop a second; none comes), the last total
    the member's."""
    async with asyncio.timeout(90):
        database_url, cloud, shop, env = await youzan_lab(lab)
        async with opened(database_url):
            chain_id = await chain_with_shop(shop)
            await members_with_events_in(chain_id, 30)
            members, program, now = await ledger_members(chain_id), await get_program(chain_id), datetime.now(timezone.utc)
            for member_id in members:
                await joining.bind(chain_id, member_id, "youzan", f"yz-{member_id}", program, now)
            changes = set(await OutboxEvent.filter(chain_id=chain_id, topic="balance.changed")
                          .values_list("event_id", flat=True))
            assert len(changes) == 30

            for name in ("worker-1", "worker-2"):
                lab.process(name, [LOYALTY, "worker"], env).start()
            deadline = time.monotonic() + 60
            while len(cloud.syncs) < 30 or await OutboxEvent.filter(chain_id=chain_id, status="pending").exists():
                assert time.monotonic() < deadline, f"{len(cloud.syncs)} of 30 synced"
                await asyncio.sleep(0.2)
            syncs = set(await OutboxEvent.filter(chain_id=chain_id, topic="youzan.points").values_list(
                "event_id", flat=True))  # one per balance change (one shop, one account each)
            assert len(syncs) == 30 and {s["biz_value"].split(":")[0] for s in cloud.syncs} == syncs
            assert (len(cloud.syncs), cloud.duplicates) == (30, 0)
            for member_id in members:
                total = (await ledger.balances(chain_id, member_id))["points"]
                assert cloud.points[(shop.kdt_id, f"yz-{member_id}")] == total
            await assert_ledger_clean()


async def youzan_lab(lab) -> tuple[str, FakeYouzanCloud, YouzanShop, dict[str, str]]:
    """A fresh database, a fake Youzan cloud that knows one shop, and the workers' environment."""
    database_url, cloud, shop = await lab.database(), FakeYouzanCloud(), YouzanShop.any()
    cloud.shop(shop)
    env = lab.env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=lab.redis_prefix(),
                  YOUZAN_API_BASE_URL=await lab.served(cloud.application()))
    return database_url, cloud, shop, env


async def chain_with_shop(shop: YouzanShop) -> int:
    chain_id = await members_with_events(0)
    await channels.connect_shop(chain_id, "youzan", {"shop_id": shop.kdt_id, "client_id": shop.client_id,
                                                     "client_secret": shop.client_secret}, Vault(SECRET),
                                datetime.now(timezone.utc))
    return chain_id


async def ledger_members(chain_id: int) -> list[int]:
    from loyalty_core.models import Member

    return list(await Member.filter(chain_id=chain_id).order_by("id").values_list("id", flat=True))


async def test_two_workers_leave_youzan_with_the_members_latest_total(lab):
    """Twenty balance changes of one member, synced by two workers at once: whatever order they are
    sent in, the last sync sent carries the latest balance (one sync of an account at a time)."""
    async with asyncio.timeout(90):
        database_url, cloud, shop, env = await youzan_lab(lab)
        async with opened(database_url):
            chain_id = await chain_with_shop(shop)
            vault, now = Vault(SECRET), datetime.now(timezone.utc)
            program = await get_program(chain_id)
            member = await register_member(chain_id, NewMember(phone="13900009999"), program, vault, now)
            await joining.bind(chain_id, member.id, "youzan", "yz-busy", program, now)
            for i in range(20):
                await adjust(chain_id, member.id, "points", -20 if i % 3 == 2 else 50, f"change {i}", "test", program, now)
            for name in ("worker-1", "worker-2"):
                lab.process(name, [LOYALTY, "worker"], env).start()
            deadline = time.monotonic() + 60
            while await OutboxEvent.filter(chain_id=chain_id, status="pending").exists() or not cloud.syncs:
                assert time.monotonic() < deadline, f"{len(cloud.syncs)} synced"
                await asyncio.sleep(0.2)
            total = (await ledger.balances(chain_id, member.id))["points"]
            assert cloud.points[(shop.kdt_id, "yz-busy")] == total
            await assert_ledger_clean()
