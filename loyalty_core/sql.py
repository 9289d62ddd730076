"""Raw SQL where the ORM's query building would cost on a hot path, on either database.

Statements are written once with PostgreSQL's ``$1`` placeholders; on SQLite they become ``?1``
(numbered, so a parameter may be used twice). They run on the current connection: inside
``in_transaction()`` that is the transaction's own.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from tortoise.connection import connections

_PLACEHOLDER = re.compile(r"\$(\d+)")


def _connection():
    return connections.get("default")


def dialect() -> str:
    """``postgres`` or ``sqlite``: where a hot path writes one statement or several."""
    return _connection().capabilities.dialect


def _dialect_sql(connection, sql: str) -> str:
    if connection.capabilities.dialect == "postgres":
        return sql
    return _PLACEHOLDER.sub(r"?\1", sql)


def _dialect_params(connection, params: tuple) -> list:
    """On SQLite a time is stored as text, so every time is written in UTC, as the ORM writes it
    (text in one zone compares in time order)."""
    if connection.capabilities.dialect == "postgres":
        return list(params)
    return [p.astimezone(timezone.utc) if isinstance(p, datetime) and p.tzinfo is not None else p for p in params]


def locking(sql: str, clause: str) -> str:
    """``sql`` with a row-lock clause (``FOR UPDATE`` ...) on PostgreSQL; SQLite locks the whole
    database for a writing transaction and has no such clause."""
    return f"{sql} {clause}" if dialect() == "postgres" else sql


async def rows(sql: str, *params: Any) -> list[dict]:
    connection = _connection()
    return await connection.execute_query_dict(_dialect_sql(connection, sql), _dialect_params(connection, params))


async def execute(sql: str, *params: Any) -> int:
    """Runs ``sql``; returns the number of rows it touched."""
    connection = _connection()
    count, _ = await connection.execute_query(_dialect_sql(connection, sql), _dialect_params(connection, params))
    return count


async def one(model, sql: str, *params: Any):
    """The first row of ``sql`` as an instance of the Tortoise ``model`` (its columns, all of
    them: ``SELECT <table>.*``), or None: the ORM's own hydration without its query building."""
    found = await rows(sql, *params)
    return model._init_from_db(**found[0]) if found else None
