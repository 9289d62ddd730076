"""Migration 0005 (chain_id in every unique key) on a database that already holds rows: every row
stays with its id, references still hold, ids are not reused, and the new keys refuse what the
old ones did."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError
from tortoise.migrations.api import migrate as migrate_api

from gateway import db
from gateway.settings import tortoise_config
from loyalty_core import chains
from loyalty_core.crypto import Vault
from loyalty_core.models import Account, Order, OutboxEvent, Refund, Terminal
from tests.conftest import BACKEND, SECRET

from ..databases import throwaway_database

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
TABLES = ("chains", "stores", "terminals", "members", "identities", "accounts", "journal_entries", "postings",
          "points_lots", "orders", "refunds", "member_figures", "outbox_events", "admin_keys")


async def _snapshot() -> dict[str, list[int]]:
    connection = Tortoise.get_connection("default")
    return {table: [row["id"] for row in await connection.execute_query_dict(f"SELECT id FROM {table} ORDER BY id")]
            for table in TABLES}


async def _seed() -> dict:
    """Rows as the code of 0004's time wrote them. The member's rows go in as SQL: today's model of a
    member (and its figures) has columns that later migrations added."""
    vault = Vault(SECRET)
    chain, _ = await chains.create_chain("Before 0005")
    store = await chains.create_store(chain.id, "S01", "Store", None)
    await chains.create_terminal(chain.id, "S01", "POS1", vault)
    member = await _member_as_in_0004(chain.id)
    order = await Order.create(chain_id=chain.id, store_id=store.id, source="store:1", txn_id="T-1", member_id=member,
                               occurred_at=NOW, subtotal=100, payable=100)
    await Refund.create(chain_id=chain.id, order_id=order.id, refund_id="R-1", amount=10)
    for i in range(2):
        await OutboxEvent.create(chain_id=chain.id, event_id=f"e-{i}", topic="member.created", payload={},
                                 next_attempt_at=NOW, created_at=NOW)
    last = await OutboxEvent.filter(chain_id=chain.id).order_by("-id").first()
    await OutboxEvent.filter(id=last.id).delete()  # the highest id, gone: 0005 must not hand it out again
    return {"chain": chain.id, "store": store.id, "member": member, "order": order.id, "deleted_event": last.id}


async def _member_as_in_0004(chain_id: int) -> int:
    """A member with a card, five accounts, 50 points adjusted in (entry, postings, lot) and a month of figures."""
    connection = Tortoise.get_connection("default")
    at = "'2026-12-03 12:00:00+00:00'"

    async def insert(sql: str) -> int:
        await connection.execute_script(sql)
        return int((await connection.execute_query_dict("SELECT max(id) AS id FROM " + sql.split()[2]))[0]["id"])

    member = await insert(f"INSERT INTO members (chain_id, phone_hash, card_no, tier_code, tags, frozen, created_at) "
                          f"VALUES ({chain_id}, 'hash-13800138000', '900000000001', 'regular', '[]', FALSE, {at})")
    await insert(f"INSERT INTO identities (chain_id, member_id, channel, external_id, created_at) "
                 f"VALUES ({chain_id}, {member}, 'card', '900000000001', {at})")
    for kind in ("points", "points_pending", "growth", "sv_principal", "sv_bonus"):
        await insert(f"INSERT INTO accounts (chain_id, member_id, kind, balance) "
                     f"VALUES ({chain_id}, {member}, '{kind}', {50 if kind == 'points' else 0})")
    points = (await connection.execute_query_dict(
        f"SELECT id FROM accounts WHERE member_id = {member} AND kind = 'points'"))[0]["id"]
    entry = await insert(f"INSERT INTO journal_entries (chain_id, key, kind, member_id, channel, actor, reason, "
                         f"occurred_at, created_at) VALUES ({chain_id}, 'adjustment:seed', 'adjustment', {member}, "
                         f"'admin', 'test', 'seed', {at}, {at})")
    await insert(f"INSERT INTO postings (entry_id, chain_id, account_id, ledger, unit, amount) "
                 f"VALUES ({entry}, {chain_id}, {points}, 'points', 'points', 50)")
    await insert(f"INSERT INTO postings (entry_id, chain_id, account_id, ledger, unit, amount) "
                 f"VALUES ({entry}, {chain_id}, NULL, 'points_adjusted', 'points', -50)")
    await insert(f"INSERT INTO points_lots (chain_id, member_id, entry_id, amount, remaining, vested_at, expires_at) "
                 f"VALUES ({chain_id}, {member}, {entry}, 50, 50, {at}, NULL)")
    await insert(f"INSERT INTO member_figures (chain_id, member_id, period, growth, points_earned, spend, "
                 f"stored_value, orders) VALUES ({chain_id}, {member}, 202612, 0, 0, 0, 0, 0)")
    return member


async def test_0005_keeps_every_row_and_refuses_what_the_old_keys_refused(tmp_path):
    async with throwaway_database(tmp_path) as url:
        await migrate_api(config=tortoise_config(url, command_timeout=None), target="loyalty.0004_orders_keys_on_sqlite")
        await Tortoise.close_connections()
        await db.open_database(url)
        try:
            seeded = await _seed()
            before = await _snapshot()
            assert all(before[table] for table in TABLES), before
        finally:
            await db.close_database()

        await db.migrate(url)

        await db.open_database(url)
        try:
            assert await _snapshot() == before
            connection = Tortoise.get_connection("default")
            if BACKEND != "postgres":
                assert await connection.execute_query_dict("PRAGMA foreign_key_check") == []
            chain, member = seeded["chain"], seeded["member"]
            event = await OutboxEvent.create(chain_id=chain, event_id="e-after-0005", topic="t", payload={},
                                             next_attempt_at=NOW, created_at=NOW)
            assert event.id > seeded["deleted_event"]
            for duplicate in (
                lambda: Account.create(chain_id=chain, member_id=member, kind="points", balance=0),
                lambda: Refund.create(chain_id=chain, order_id=seeded["order"], refund_id="R-1", amount=1),
                lambda: OutboxEvent.create(chain_id=chain, event_id="e-after-0005", topic="t", payload={},
                                           next_attempt_at=NOW, created_at=NOW),
                lambda: Terminal.create(chain_id=chain, store_id=seeded["store"], code="POS1", terminal_id="T-other",
                                        secret_enc="x"),
            ):
                with pytest.raises(IntegrityError):
                    await duplicate()
            assert await Account.filter(member_id=member).count() == 5
        finally:
            await db.close_database()
