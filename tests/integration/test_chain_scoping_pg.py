"""The migrated schema distributes by chain_id (docs/scaling.md): every table but the global ones
has chain_id, every unique key includes it (the exceptions are listed, each with its reason), and
deploy/citus/distribute.sql places every table. Read from the PostgreSQL catalog of the run's
migrated database."""
from __future__ import annotations

import asyncpg
import pytest

from ..catalog import GLOBAL_TABLES, PRIMARY_ON_ID, UNSCOPED_UNIQUE, columns, placement, unique_keys

pytestmark = pytest.mark.postgres


@pytest.fixture
async def catalog(database_url):
    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    yield conn
    await conn.close()


async def test_every_table_but_the_global_ones_has_chain_id(catalog):
    tables = await columns(catalog)
    assert set(GLOBAL_TABLES) <= set(tables), "a listed global table no longer exists: drop it from the list"
    without = {table for table, cols in tables.items() if "chain_id" not in cols}
    assert without == set(GLOBAL_TABLES), f"tables without chain_id that are not listed as global: {without}"


async def test_every_unique_key_includes_chain_id(catalog):
    keys = await unique_keys(catalog)
    unscoped = [key for key in keys if "chain_id" not in key.columns]
    unexplained = [key for key in unscoped
                   if not (key.primary and key.columns == PRIMARY_ON_ID) and (key.table, key.columns) not in UNSCOPED_UNIQUE]
    assert unexplained == [], "unique keys without chain_id (add chain_id, or list the key with its reason)"
    stale = set(UNSCOPED_UNIQUE) - {(key.table, key.columns) for key in keys}
    assert stale == set(), f"listed exceptions that no longer exist: {stale}"


async def test_distribute_sql_places_every_table(catalog):
    """A table added by a later migration must be placed too: by chain_id, or as a reference table."""
    tables = await columns(catalog)
    reference, distributed = placement()
    assert reference & set(distributed) == set()
    assert set(tables) - {"tortoise_migrations"} == reference | set(distributed)
    assert set(distributed.values()) == {"chain_id"}
    # A reference table may keep a key without chain_id; a distributed one may not (its primary key
    # apart, which reshape.sql gives chain_id).
    for (table, _) in UNSCOPED_UNIQUE:
        assert table not in distributed, table
    assert set(GLOBAL_TABLES) - {"tortoise_migrations"} <= reference
