"""Raw SQL where the ORM's query building would cost on a hot path, on either database.

Statements are written once with PostgreSQL's ``$1`` placeholders; on SQLite they become ``?1``
(numbered, so a parameter may be used twice). They run on the current connection: inside
``in_transaction()`` that is the transaction's own.
"""
from __future__ import annotations

import re
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


async def rows(sql: str, *params: Any) -> list[dict]:
    connection = _connection()
    return await connection.execute_query_dict(_dialect_sql(connection, sql), list(params))


async def execute(sql: str, *params: Any) -> int:
    """Runs ``sql``; returns the number of rows it touched."""
    connection = _connection()
    count, _ = await connection.execute_query(_dialect_sql(connection, sql), list(params))
    return count
