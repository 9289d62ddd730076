"""deploy/citus/reshape.sql on a freshly migrated throwaway PostgreSQL database (Citus is not
needed for it; distribute.sql's calls are): the result is what Citus asks of distributed tables,
and the app's hot paths still work on it over the HTTP API, for two chains side by side."""
from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import pytest

from gateway import db
from gateway.app import create_app
from gateway.settings import Settings
from gateway.worker import Relay
from loyalty_core.models import OutboxEvent
from loyalty_core.verify import verify
from tests.conftest import REDIS_URL, SECRET
from tests.e2e.programs import PROGRAM, line, order, program

from ..catalog import PRIMARY_ON_ID, UNSCOPED_UNIQUE, columns, foreign_keys, placement, reshape_statements, unique_keys
from ..databases import throwaway_database
from ..helpers import adjustment, make_chain, member_code, problem

pytestmark = pytest.mark.postgres

NOW = "2026-11-20T10:05:00+08:00"


@pytest.fixture
async def reshaped(tmp_path):
    """The URL of a migrated database that reshape.sql has run on, and a connection to it."""
    async with throwaway_database(tmp_path, "postgres") as url:
        await db.migrate(url)
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute(reshape_statements())
            yield url, conn
        finally:
            await conn.close()


async def test_reshaped_keys_are_what_citus_asks_of_distributed_tables(reshaped):
    _, conn = reshaped
    reference, distributed = placement()
    keys = await unique_keys(conn)
    for key in keys:
        if key.table in distributed:
            assert "chain_id" in key.columns, key
        elif key.table in reference:  # a reference table keeps its keys as migrated
            assert "chain_id" in key.columns or key.columns == PRIMARY_ON_ID or (key.table, key.columns) in UNSCOPED_UNIQUE
    primaries = {key.table: key.columns for key in keys if key.primary}
    assert all(primaries[table] == ("id", "chain_id") for table in distributed)
    between = [fk for fk in await foreign_keys(conn) if fk.table in distributed and fk.target in distributed]
    assert len(between) == 25
    for fk in between:  # the distribution column in both keys, at the same position
        assert fk.columns[0] == "chain_id" and fk.target_columns == ("chain_id", "id"), fk
    others = [fk for fk in await foreign_keys(conn) if fk.target not in distributed]
    assert {fk.target for fk in others} <= reference
    assert all(fk.table in reference for fk in await foreign_keys(conn) if fk.table not in distributed)
    assert set(await columns(conn)) - {"tortoise_migrations"} == reference | set(distributed)


async def _chain(client, clock, name: str, chain_program: dict):
    kit = await make_chain(client, clock, name)
    await kit.set_program(chain_program)
    return kit


async def test_orders_refunds_scans_and_jobs_run_on_the_reshaped_schema(reshaped, aiohttp_client, clock, redis_prefix):
    url, conn = reshaped
    clock.at = datetime.fromisoformat(NOW)
    settings = Settings(database_url=url, redis_url=REDIS_URL, redis_prefix=redis_prefix, secret=SECRET)
    client = await aiohttp_client(create_app(settings, clock=clock))
    first = await _chain(client, clock, "Reshaped One", PROGRAM)
    second = await _chain(client, clock, "Reshaped Two", program(pending_days=7))

    for kit, phone in ((first, "13300000001"), (second, "13300000002")):
        member = await kit.new_member(phone)
        assert (await adjustment(kit, member["id"], 1000, reason="to redeem")).status == 201
        scanned = await kit.pos("POST", "/v1/pos/scan", {"code": phone})
        assert scanned.status == 200 and (await scanned.json())["member"]["id"] == member["id"]
        code = await member_code(kit, member["id"])
        assert (await kit.pos("POST", "/v1/pos/scan", {"code": code})).status == 200
        earned = await kit.sale(order("O1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
        assert earned["points_earned"] == 10
        redeemed = await kit.sale(order("O2", [line("LATTE", "coffee", 1000)], 900, member_code=code, at=NOW,
                                        redeem_points=100))
        assert redeemed["points_redeemed"] == 100 and redeemed["member_id"] == member["id"]
        assert (await kit.sale(order("O1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW),
                               status=200))["duplicate"] is True
        for txn in ("O1", "O2"):
            refund = await kit.pos("POST", f"/v1/pos/orders/{txn}/refunds", {"refund_id": "R1", "amount": 500})
            assert refund.status == 201, await refund.text()
            again = await kit.pos("POST", f"/v1/pos/orders/{txn}/refunds", {"refund_id": "R1", "amount": 500})
            assert again.status == 200 and (await again.json())["duplicate"] is True
        await problem(await adjustment(kit, member["id"], -1_000_000), 422, "insufficient_points")
        assert (await kit.admin("GET", f"/v1/members/{member['id']}/ledger")).status == 200
        kit.extra["member"] = member

    # the other chain's ids are unknown here, as on the schema before
    await problem(await first.admin("GET", f"/v1/members/{second.extra['member']['id']}"), 404, "not_found")
    # the pending points of the second chain vest, and expire with the rest two years on
    clock.at = datetime.fromisoformat(NOW) + timedelta(days=8)
    vested = await second.admin("POST", "/v1/jobs/vest_points", {})
    assert vested.status == 200 and (await vested.json())["processed"] == 2, await vested.text()
    clock.at = datetime.fromisoformat(NOW) + timedelta(days=3 * 366)
    for kit in (first, second):
        expired = await kit.admin("POST", "/v1/jobs/expire_points", {})
        assert expired.status == 200 and (await expired.json())["processed"] >= 1, await expired.text()
        erased = await kit.admin("DELETE", f"/v1/members/{kit.extra['member']['id']}")
        assert erased.status == 204, await erased.text()

    relay = Relay(clock)
    while await relay.run_once():
        pass
    assert await OutboxEvent.filter(status="pending").count() == 0
    assert await verify() == []
