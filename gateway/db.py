"""Database set-up: Tortoise init/close, the committed migrations, and the PostgreSQL client.

``client_class`` makes this module a Tortoise backend (``settings.POSTGRES_ENGINE``): Tortoise's
own asyncpg client with two changes, both found by tests/faults/test_postgres_restart.py:

- Tortoise 1.1.9's pooled transaction takes a connection from the pool and then sends BEGIN
  outside its clean-up: when BEGIN fails (a connection PostgreSQL has just dropped on shutting
  down, a BEGIN that timed out on a hung server) the connection is never given back and the
  task keeps the dead transaction as its current connection. Each such failure costs the pool
  one connection for good; after ``maxsize`` of them (5) every later request waits forever,
  even once PostgreSQL is back. Here the connection is always given back.
- Tortoise waits for a free pooled connection without a limit; on a hung server the pool is
  soon all busy and requests would queue for as long as it hangs. Here a request waits at most
  ``acquire_timeout`` (then 503, see ``gateway/problems.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg.connection
import structlog
from tortoise import Tortoise
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import PoolConnectionWrapper, TransactionContextPooled
from tortoise.connection import get_connection, get_connections
from tortoise.exceptions import TransactionManagementError
from tortoise.migrations.api import migrate as migrate_api

from .settings import DATABASE_ACQUIRE_TIMEOUT, DATABASE_COMMAND_TIMEOUT, tortoise_config

log = structlog.get_logger("gateway")


class _PooledTransaction(TransactionContextPooled):
    """``in_transaction()`` on the pool: waits for a free connection at most the client's
    ``acquire_timeout``, and gives it back (restoring the task's connection) whatever failed:
    BEGIN, the body, COMMIT or ROLLBACK."""

    __slots__ = ()
    client: Any

    async def __aenter__(self) -> Any:
        try:
            await self.ensure_connection()
            parent = self.client._parent
            self.client._connection = await parent._pool.acquire(timeout=parent.acquire_timeout)
            self.token = get_connections().set(self.connection_name, self.client)
            await self.client.begin()
        except BaseException:
            await self._give_back()
            raise
        return self.client

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self.client._finalized:
                if exc_type is None:
                    await self.client.commit()
                elif exc_type is not TransactionManagementError:  # a failed transaction cannot roll back
                    await self.client.rollback()
        finally:
            await self._give_back()

    async def _give_back(self) -> None:
        get_connections().reset(getattr(self, "token", None))
        connection, self.client._connection = self.client._connection, None
        pool = self.client._parent._pool
        if connection is not None and pool is not None:
            try:
                await pool.release(connection)
            except Exception as error:  # asyncpg terminates a connection it cannot reset: its place is free
                log.warning("database.release_failed", error=f"{type(error).__name__}: {error}"[:300])


class _PooledConnection(PoolConnectionWrapper):
    """A connection for one statement outside a transaction, waited for at most ``acquire_timeout``."""

    __slots__ = ()
    client: Any

    async def __aenter__(self) -> Any:
        await self.ensure_connection()
        self.connection = await self.client._pool.acquire(timeout=self.client.acquire_timeout)
        return self.connection


class Connection(asyncpg.connection.Connection):
    """A pooled connection given back without asyncpg's reset query (``pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL``), which costs a round trip after every statement sent
    outside a transaction. The gateway keeps no session state (no advisory locks, cursors,
    LISTEN or session SET; verify's isolation level is per transaction), and asyncpg still rolls
    back a transaction left open."""

    def get_reset_query(self) -> str:
        return ""


class AsyncpgClient(AsyncpgDBClient):
    """Tortoise's asyncpg client, with ``acquire_timeout`` (a ``DATABASE_URL`` parameter too) and
    connections that skip the reset query."""

    connection_class = Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = float(self.extra.pop("acquire_timeout", DATABASE_ACQUIRE_TIMEOUT))

    def acquire_connection(self) -> _PooledConnection:
        return _PooledConnection(self, self._pool_init_lock)

    def _in_transaction(self) -> _PooledTransaction:
        return _PooledTransaction(TransactionWrapper(self), self._pool_init_lock)


client_class = AsyncpgClient


def _ensure_sqlite_dir(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        Path(database_url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)


async def open_database(database_url: str, command_timeout: float | None = DATABASE_COMMAND_TIMEOUT) -> None:
    """Connect Tortoise. On PostgreSQL every statement is limited to ``command_timeout`` seconds
    (None: no limit, for long maintenance commands); see ``settings.with_timeouts``."""
    _ensure_sqlite_dir(database_url)
    await Tortoise.init(config=tortoise_config(database_url, command_timeout), _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()


async def migrate(database_url: str) -> None:
    """Apply every committed migration not applied yet (``loyalty migrate``)."""
    _ensure_sqlite_dir(database_url)
    await migrate_api(config=tortoise_config(database_url, command_timeout=None))  # an index may take long
    await Tortoise.close_connections()


async def ping() -> None:
    await get_connection("default").execute_query("SELECT 1")
