"""Raw SQL where the ORM's query building would cost on a hot path, on either database.

Statements are written once with PostgreSQL's ``$1`` placeholders; on SQLite they become ``?1``
(numbered, so a parameter may be used twice). They run on the current connection: inside
``in_transaction()`` that is the transaction's own.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime, timezone
from typing import Any

import asyncpg
from tortoise.connection import connections
from tortoise.exceptions import IntegrityError, OperationalError, TransactionManagementError

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


def aware(value: Any) -> datetime | None:
    """A time column as read by ``rows``: PostgreSQL answers an aware datetime, SQLite the text
    the ORM or ``_dialect_params`` wrote (UTC)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def locking(sql: str, clause: str) -> str:
    """``sql`` with a row-lock clause (``FOR UPDATE`` ...) on PostgreSQL; SQLite locks the whole
    database for a writing transaction and has no such clause."""
    return f"{sql} {clause}" if dialect() == "postgres" else sql


async def rows(sql: str, *params: Any) -> list[dict]:
    connection = _connection()
    if connection.capabilities.dialect == "postgres":
        return await _postgres_rows(connection, sql, params)
    return await connection.execute_query_dict(_dialect_sql(connection, sql), _dialect_params(connection, params))


async def _postgres_rows(client, sql: str, params: tuple) -> list[dict]:
    return [dict(row) for row in await _on_postgres(client, "fetch", sql, params)]


async def _postgres_execute(client, sql: str, params: tuple) -> int:
    status = await _on_postgres(client, "execute", sql, params)  # "UPDATE 3", "INSERT 0 1", "SET"
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _on_postgres(client, method: str, sql: str, params: tuple):
    """Straight to asyncpg, with the ORM's error classes: inside ``in_transaction()`` on the
    transaction's own connection, else on one from the pool for this statement. (The ORM's own
    path adds a lock, a log call and a wrapper per statement: a tenth of a till request's CPU.)"""
    try:
        if (own := getattr(client, "_connection", None)) is not None:
            return await getattr(own, method)(sql, *params)
        async with client.acquire_connection() as pooled:
            return await getattr(pooled, method)(sql, *params)
    except (asyncpg.SyntaxOrAccessError, asyncpg.exceptions.DataError) as error:
        raise OperationalError(error) from error
    except asyncpg.IntegrityConstraintViolationError as error:
        raise IntegrityError(error) from error
    except asyncpg.InvalidTransactionStateError as error:
        raise TransactionManagementError(error) from error


async def execute(sql: str, *params: Any) -> int:
    """Runs ``sql``; returns the number of rows it touched."""
    connection = _connection()
    if connection.capabilities.dialect == "postgres":
        return await _postgres_execute(connection, sql, params)
    count, _ = await connection.execute_query(_dialect_sql(connection, sql), _dialect_params(connection, params))
    return count


async def one(model, sql: str, *params: Any):
    """The first row of ``sql`` as an instance of the Tortoise ``model`` (its columns, all of
    them: ``SELECT <table>.*``), or None: the ORM's own hydration without its query building."""
    found = await rows(sql, *params)
    return model._init_from_db(**found[0]) if found else None


_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


async def together(*statements: tuple[str, list]) -> list[int]:
    """Write statements (inserts, updates, deletes of different rows, each with its own ``$1``
    numbering; an empty one is skipped) in one round trip on PostgreSQL, and answer, per
    statement, how many rows it returned (0 for one without RETURNING). On PostgreSQL they
    become data-modifying CTEs of one statement, their parameters renumbered: all see the
    snapshot from before it, so none may read what another writes. On SQLite, one after another."""
    texts = tuple(statement for statement, _ in statements)
    if dialect() != "postgres":
        return [await _sqlite_count(statement, params, returns) if statement else 0
                for (statement, params), returns in zip(statements, _returning(texts))]
    combined, counted = _combined(texts, tuple(len(params) for _, params in statements))
    if combined is None:
        return [0] * len(statements)
    found = await rows(combined, *[value for statement, params in statements if statement for value in params])
    row = found[0]
    return [int(row[f"n{index}"]) if returns else 0 for index, returns in enumerate(counted)]


@functools.lru_cache(maxsize=256)
def _returning(texts: tuple[str, ...]) -> tuple[bool, ...]:
    return tuple(bool(_RETURNING.search(text)) for text in texts)


@functools.lru_cache(maxsize=256)
def _combined(texts: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[str | None, tuple[bool, ...]]:
    """The one statement of ``together`` for these statements (their parameter counts fixed),
    built once per shape: the hot path sends a handful of shapes, each thousands of times."""
    returning = _returning(texts)
    parts, selects, shift = [], [], 0
    counted = []
    for index, (text, size) in enumerate(zip(texts, sizes)):
        counted.append(bool(text) and returning[index])
        if not text:
            continue
        parts.append(f"w{index} AS ({renumbered(text, shift)})")
        shift += size
        if returning[index]:
            selects.append(f"(SELECT count(*) FROM w{index}) AS n{index}")
    if not parts:
        return None, tuple(counted)
    return f"WITH {', '.join(parts)} SELECT {', '.join(selects) or '1'}", tuple(counted)


async def _sqlite_count(statement: str, params: list, returns: bool) -> int:
    if returns:
        return len(await rows(statement, *params))
    await execute(statement, *params)
    return 0


def renumbered(statement: str, shift: int) -> str:
    """``statement`` with its placeholders moved up by ``shift`` (``$1`` becomes ``$<shift+1>``)."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + shift}", statement)
