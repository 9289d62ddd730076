"""The one hook a caller may add to the core's transactions.

The core owns its transaction boundaries: one per order, per refund, per vested batch. A caller
that must commit something together with the action (the gateway's stored answer to an
Idempotency-Key) passes a ``Seal``: the core awaits it last, inside the transaction, with the
action's result. If the seal raises, the whole action rolls back.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

Seal = Callable[[Any], Awaitable[None]]


async def seal_with(seal: Seal | None, result: Any) -> None:
    if seal is not None:
        await seal(result)
