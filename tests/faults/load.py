"""Load that a fault test drives while it breaks things: tills placing orders, each retried with
its own Idempotency-Key and body until the gateway gives a definitive answer."""
from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .client import Answer, Client, until_definitive


@dataclass
class Sale:
    txn_id: str
    body: dict
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    answer: Answer | None = None


async def place(client: Client, sales: Iterator[Sale], bases: Callable[[], str], deadline: float, tills: int,
                pace: float) -> dict[str, dict]:
    """Send the sales from ``tills`` concurrent tills (a fresh signature per try, to the gateway
    ``bases()`` picks), each until 201 or 200; returns the answered bodies by txn id. ``sales``
    may be endless until the test says the load is over."""
    placed: list[Sale] = []

    async def till() -> None:
        for sale in sales:
            placed.append(sale)

            def attempt(sale: Sale = sale):
                return client.pos(bases(), "POST", "/v1/pos/orders", sale.body, sale.key)

            sale.answer = await until_definitive(attempt, deadline)
            assert sale.answer.status in (200, 201), str(sale.answer) + f" {sale.answer.body}"
            await asyncio.sleep(random.uniform(0, 2 * pace))

    await asyncio.gather(*(till() for _ in range(tills)))
    return {sale.txn_id: sale.answer.body for sale in placed if sale.answer is not None}


def until(over: asyncio.Event, make: Callable[[int], Sale]) -> Iterator[Sale]:
    """Sales made one by one (``make(n)``) until ``over`` is set."""
    n = 0
    while not over.is_set():
        yield make(n)
        n += 1
