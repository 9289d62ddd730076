"""Taobao's TMC pull under faults: a ``loyalty worker`` killed after keeping a batch and before its
confirm reached TMC; TMC hands the batch out again to the next worker, which finds every message
in the inbox: each order earns once."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from loyalty_core import channels, joining, ledger
from loyalty_core.chains import create_chain, put_program
from loyalty_core.crypto import Vault
from loyalty_core.members import NewMember, register_member
from loyalty_core.models import InboxEvent, Order
from loyalty_core.program import load_program

from ..e2e.programs import PROGRAM
from ..fakes.taobao import FakeTop, Seller
from .checks import assert_ledger_clean, opened
from .lab import LOYALTY, SECRET

pytestmark = pytest.mark.postgres
APP_KEY, APP_SECRET = "23456789", "5f0c1d2e3b4a59687766554433221100"


async def shop_with_buyers(seller: Seller, buyers: int) -> tuple[int, list[int]]:
    """A chain with its Tmall shop connected and members who bound their buyer ids ``OPEN<i>``."""
    chain, _ = await create_chain("Tmall Chain")
    program, vault, now = await put_program(chain.id, load_program(PROGRAM, "Asia/Shanghai")), Vault(SECRET), \
        datetime.now(timezone.utc)
    await channels.connect_shop(chain.id, "taobao", {"shop_id": seller.user_id, "app_key": APP_KEY,
                                                     "app_secret": APP_SECRET, "session": "6100e2sessionkey"}, vault, now)
    members = []
    for i in range(buyers):
        member = await register_member(chain.id, NewMember(phone=f"1360000{i:04d}"), program, vault, now)
        await joining.bind(chain.id, member.id, "taobao", f"OPEN{i}", program, now)
        members.append(member.id)
    return chain.id, members


async def test_a_worker_killed_between_keeping_a_batch_and_confirming_it_has_one_effect(lab):
    async with asyncio.timeout(90):
        database_url = await lab.database()
        fake, seller = FakeTop(), Seller("2200000001")
        fake.app(APP_KEY, APP_SECRET)
        fake.base_url = await lab.served(fake.application(), "/router/rest")
        env = lab.env(DATABASE_URL=database_url, TAOBAO_API_BASE_URL=fake.base_url)
        async with opened(database_url):
            chain_id, members = await shop_with_buyers(seller, 3)
            for i in range(3):
                fake.paid(APP_KEY, seller, f"{4000 + i}", f"{100 + i}.00", open_uid=f"OPEN{i}")
            fake.success(APP_KEY, seller, "4000")
            batch = fake.unconfirmed(APP_KEY)
            fake.hold_confirm = asyncio.Event()  # a confirm that comes now never reaches TMC

            first = lab.process("worker-1", [LOYALTY, "worker"], env)
            first.start()
            await asyncio.wait_for(fake.confirm_arrived.wait(), 30)
            first.kill()  # the batch is kept and applied; TMC never heard back
            assert await InboxEvent.filter(chain_id=chain_id, status="applied").count() == 4
            assert fake.unconfirmed(APP_KEY) == batch
            fake.hold_confirm.set()
            fake.hold_confirm = None

            lab.process("worker-2", [LOYALTY, "worker"], env).start()
            deadline = time.monotonic() + 30
            while fake.unconfirmed(APP_KEY):
                assert time.monotonic() < deadline, "the second worker did not confirm the batch"
                await asyncio.sleep(0.2)
            assert sorted(fake.confirmed) == batch
            consumes = [c for c in fake.calls if c["method"] == "taobao.tmc.messages.consume"]
            assert len(consumes) >= 2  # handed out twice
            assert await Order.filter(chain_id=chain_id).count() == 3
            assert await InboxEvent.filter(chain_id=chain_id).count() == 4
            held = [await ledger.balances(chain_id, m) for m in members]
            # 100 yuan confirmed (vested), 101 and 102 pending until their trades succeed: once each
            assert [(b.get("points", 0), b.get("points_pending", 0)) for b in held] == [(100, 0), (0, 101), (0, 102)]
            await assert_ledger_clean()
