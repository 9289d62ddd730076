"""The one hook a caller may add to the core's transactions.

The core owns its transaction boundaries: one per order, per refund, per vested batch. A caller
that must commit something together with the action (the gateway's stored answer to an
Idempotency-Key) passes a ``Seal``: the core asks it last, inside the transaction, for the write
that stores the action's result, and sends that write itself, on its own or (orders, refunds)
with the action's last statement, in the same round trip. A seal's write answers a row when it
took effect; when it did not, the whole action rolls back with the seal's refusal.
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
