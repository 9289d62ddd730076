"""Counts what a request sends to PostgreSQL and Redis: statements and commands, never times.

Every statement asyncpg sends passes one of the public ``Connection`` methods (transactions and
the pool's reset query included), and every Redis command passes ``execute_command``. The
counter patches those for the duration of a ``with`` block and records each statement's text.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import asyncpg.connection
import redis.asyncio.client

SQL_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


@dataclass
class Count:
    statements: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.statements.clear()
        self.commands.clear()

    def report(self) -> str:
        return "\n".join([f"{len(self.statements)} statements:", *("  " + s[:160] for s in self.statements),
                          f"{len(self.commands)} Redis commands:", *("  " + c for c in self.commands)])


@contextlib.contextmanager
def counting():
    count = Count()
    originals = {name: getattr(asyncpg.connection.Connection, name) for name in SQL_METHODS}
    send = redis.asyncio.client.Redis.execute_command

    def wrap(name, method):
        async def counted(self, query, *args, **kwargs):
            count.statements.append(" ".join(str(query).split()))
            return await method(self, query, *args, **kwargs)
        counted.__name__ = name
        return counted

    async def command(self, *args, **options):
        count.commands.append(" ".join(str(a) for a in args[:2]))
        return await send(self, *args, **options)

    for name, method in originals.items():
        setattr(asyncpg.connection.Connection, name, wrap(name, method))
    redis.asyncio.client.Redis.execute_command = command
    try:
        yield count
    finally:
        for name, method in originals.items():
            setattr(asyncpg.connection.Connection, name, method)
        redis.asyncio.client.Redis.execute_command = send
