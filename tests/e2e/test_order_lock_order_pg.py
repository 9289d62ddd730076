"""The order of row locks a sale takes, on PostgreSQL: the member first (the key-share lock its rows'
foreign keys take), then the member's accounts, as an adjustment (the member row, then the accounts)
and every job does. A sale that met the member row locked by an adjustment and already held the
accounts would deadlock with it; here it waits holding nothing the adjustment needs."""
from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
import pytest

from ..helpers import adjustment
from .programs import PROGRAM, line, order

pytestmark = pytest.mark.postgres


async def test_a_sale_waits_for_a_member_row_locked_elsewhere_before_it_locks_the_accounts(chain, database_url, clock):
    clock.at = datetime.fromisoformat("2026-11-20T10:00:00+08:00")  # no campaign: 1 point a yuan
    await chain.set_program(PROGRAM)
    member = await chain.new_member("13600000091")
    assert (await adjustment(chain, member["id"], 500, reason="to redeem")).status == 201
    holder = await asyncpg.connect(database_url.replace("postgresql://", "postgres://", 1))
    other = await asyncpg.connect(database_url.replace("postgresql://", "postgres://", 1))
    try:
        locking = holder.transaction()
        await locking.start()
        # what an adjustment, a review decision or a merge takes first
        await holder.execute("SELECT id FROM members WHERE chain_id = $1 AND id = $2 FOR UPDATE",
                             chain.chain_id, member["id"])
        sale = asyncio.create_task(chain.sale(order("LOCK-1", [line("LATTE", "coffee", 3000)], 2900,
                                                    member_id=member["id"], redeem_points=100,
                                                    at=clock.now().isoformat())))
        await asyncio.sleep(1.0)
        assert not sale.done(), "the sale should wait for the member row"
        # ... holding none of the member's accounts: another transaction takes them without waiting
        probing = other.transaction()
        await probing.start()
        taken = await other.fetch("SELECT id FROM accounts WHERE chain_id = $1 AND member_id = $2 "
                                  "FOR NO KEY UPDATE NOWAIT", chain.chain_id, member["id"])
        assert taken
        await probing.rollback()
        await locking.rollback()
        placed = await asyncio.wait_for(sale, 10)
        assert placed["points_redeemed"] == 100 and placed["points_earned"] == 29
    finally:
        await holder.close()
        await other.close()
    balances = (await chain.member(member["id"]))["balances"]
    assert balances["points"] == 500 - 100 + 29
