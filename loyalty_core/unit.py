"""The hooks a caller may add to the core's statements: a seal on its transactions, an opening on
its first read.

The core owns its transaction boundaries: one per order, per refund, per vested batch. A caller
that must commit something together with the action (the gateway's stored answer to an
Idempotency-Key) passes a ``Seal``: the core asks it last, inside the transaction, for the write
that stores the action's result, and sends that write itself, on its own or (orders, refunds)
with the action's last statement, in the same round trip. A seal's write answers a row when it
took effect; when it did not, the whole action rolls back with the seal's refusal.

A caller that must write something before the action starts (the gateway's claim of an
Idempotency-Key) passes an ``Opening``: the core sends it with the action's first read, the
member look-up of a sale or a top-up, in the same round trip (PostgreSQL; on SQLite just before),
and hands what it returned to ``opened``, which may stop the action by raising.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from . import sql

Write = tuple[str, list]  # a statement with RETURNING, and its parameters


@dataclass(frozen=True)
class Seal:
    write: Callable[[Any], Awaitable[Write]]  # the statement that stores this result
    refusal: Callable[[], Exception]  # raised (and the action rolled back) when it stored nothing


async def seal_with(seal: Seal | None, result: Any) -> None:
    """Store ``result`` through the seal with a statement of its own."""
    if seal is not None:
        statement, params = await seal.write(result)
        confirm(seal, len(await sql.rows(statement, *params)))


async def sealing(seal: Seal | None, result: Any) -> Write:
    """The seal's write for ``result``, for the caller to send with its own last statement (then
    ``confirm`` the rows it answered); nothing without a seal."""
    return await seal.write(result) if seal is not None else ("", [])


def confirm(seal: Seal | None, stored: int) -> None:
    if seal is not None and not stored:
        raise seal.refusal()


@dataclass(frozen=True)
class Opening:
    statement: str  # an INSERT ... RETURNING id, its parameters from $1
    params: list
    opened: Callable[[Any], None]  # given the returned id (None: it returned no row)

    async def alone(self) -> None:
        """Sent on its own: the action names nothing to read (a guest's sale)."""
        found = await sql.rows(self.statement, *self.params)
        self.opened(found[0]["id"] if found else None)
