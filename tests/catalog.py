"""What a PostgreSQL database's catalog says about chain scoping: tables and their columns, unique
keys, foreign keys; and how deploy/citus/distribute.sql places each table."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTE_SQL = REPO / "deploy" / "citus" / "distribute.sql"
RESHAPE_SQL = REPO / "deploy" / "citus" / "reshape.sql"

# Tables without chain_id, and why.
GLOBAL_TABLES = {
    "chains": "the chains themselves: their id is the chain id (a reference table on Citus)",
    "tortoise_migrations": "the migration recorder's own, one row per migration (a local table of the coordinator)",
}
# Unique keys without chain_id (primary keys on id apart, see PRIMARY_ON_ID), and why.
UNSCOPED_UNIQUE = {
    ("terminals", ("terminal_id",)): "a till's credential: found by X-Terminal-Id before its chain is known "
                                     "(a reference table on Citus, where a global key is allowed)",
    ("admin_keys", ("key_hash",)): "an admin key's credential: found by its hash before its chain is known "
                                   "(a reference table on Citus)",
    ("channels", ("platform", "external_id")): "a WeChat app or a shop: a login or a push names only the app, "
                                                "which belongs to one chain (a reference table on Citus)",
    ("tortoise_migrations", ("app", "name")): "the migration recorder's own key (a table of the coordinator only)",
}
PRIMARY_ON_ID = ("id",)  # every table's primary key as migrated; reshape.sql makes it (id, chain_id) for Citus


@dataclass(frozen=True)
class UniqueKey:
    table: str
    name: str
    columns: tuple[str, ...]
    primary: bool


@dataclass(frozen=True)
class ForeignKey:
    table: str
    name: str
    columns: tuple[str, ...]
    target: str
    target_columns: tuple[str, ...]


async def columns(conn) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT c.relname AS tbl, a.attname AS col FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["tbl"], set()).add(row["col"])
    return found


async def unique_keys(conn) -> list[UniqueKey]:
    """Every unique index (those behind primary keys and unique constraints included)."""
    rows = await conn.fetch(
        "SELECT t.relname AS tbl, x.relname AS name, i.indisprimary AS primary_key, "
        "array_agg(a.attname ORDER BY k.n) AS cols FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class x ON x.oid = i.indexrelid "
        "JOIN pg_namespace s ON s.oid = t.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
        "WHERE i.indisunique AND s.nspname = 'public' GROUP BY t.relname, x.relname, i.indisprimary")
    return [UniqueKey(r["tbl"], r["name"], tuple(r["cols"]), r["primary_key"]) for r in rows]


async def foreign_keys(conn) -> list[ForeignKey]:
    rows = await conn.fetch(
        "SELECT c.conname AS name, t.relname AS tbl, f.relname AS target, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n) AS cols, "
        "ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n) AS target_cols "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class f ON f.oid = c.confrelid "
        "WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace")
    return [ForeignKey(r["tbl"], r["name"], tuple(r["cols"]), r["target"], tuple(r["target_cols"])) for r in rows]


def placement() -> tuple[set[str], dict[str, str]]:
    """distribute.sql's reference tables, and its distributed tables with their distribution column."""
    text = DISTRIBUTE_SQL.read_text()
    reference = set(re.findall(r"create_reference_table\('(\w+)'\)", text))
    distributed = dict(re.findall(r"create_distributed_table\('(\w+)',\s*'(\w+)'", text))
    return reference, distributed


def reshape_statements() -> str:
    """reshape.sql as one script (its own BEGIN and COMMIT included)."""
    return RESHAPE_SQL.read_text()
