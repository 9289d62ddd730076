"""What every fault test proves at the end, read from the database it used."""
from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from contextlib import asynccontextmanager
from typing import Any

import orjson

from gateway import db
from loyalty_core.verify import verify


@asynccontextmanager
async def opened(database_url: str):
    """Tortoise on that database, in this process, for the checks."""
    await db.open_database(database_url)
    try:
        yield
    finally:
        await db.close_database()


async def rows(sql: str) -> list[dict]:
    from tortoise import Tortoise

    return await Tortoise.get_connection("default").execute_query_dict(sql)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


async def assert_ledger_clean() -> None:
    differences = await verify()
    assert differences == [], "loyalty verify: " + "; ".join(map(str, differences))


async def assert_orders_applied_once(answers: dict[str, dict], credited: dict[int, int] | None = None) -> None:
    """Each txn id answered (201, or 200 duplicate) is exactly one order, one ``order:`` journal
    entry and one ``order.created`` event, all naming the order that was answered; each member's
    points are what their answers earned (plus ``credited`` by adjustments); nothing is left
    half-done (a ``running`` idempotency record); the ledger verifies."""
    orders = await rows("SELECT id, txn_id, source, member_id, points_earned FROM orders")
    per_txn = Counter(o["txn_id"] for o in orders)
    assert {t: n for t, n in per_txn.items() if n != 1} == {}, "txn ids with several orders"
    assert set(per_txn) == set(answers), (f"orders not answered: {sorted(set(per_txn) - set(answers))[:10]}, "
                                          f"answered without an order: {sorted(set(answers) - set(per_txn))[:10]}")
    by_txn = {o["txn_id"]: o for o in orders}
    for txn, answer in answers.items():
        order = by_txn[txn]
        assert (answer["order_id"], answer["points_earned"]) == (order["id"], order["points_earned"]), (txn, answer)

    journal = Counter(r["key"] for r in await rows("SELECT key FROM journal_entries WHERE key LIKE 'order:%'"))
    expected = {f"order:{o['source']}:{o['txn_id']}" for o in orders}
    assert {k: n for k, n in journal.items() if n != 1} == {}, "order entries posted twice"
    assert set(journal) == expected, f"order entries without an order or orders without one: {set(journal) ^ expected}"

    created = [_json(r["payload"]) for r in await rows("SELECT payload FROM outbox_events WHERE topic = 'order.created'")]
    events = Counter(p["txn_id"] for p in created)
    assert {t: n for t, n in events.items() if n != 1} == {}, "orders announced twice"
    assert set(events) == set(by_txn), "orders without their order.created event"
    assert all(p["order_id"] == by_txn[p["txn_id"]]["id"] for p in created)

    earned: dict[int, int] = defaultdict(int, credited or {})
    for answer in answers.values():
        if answer["member_id"] is not None:
            earned[answer["member_id"]] += answer["points_earned"]
    accounts = await rows("SELECT member_id, balance FROM accounts WHERE kind = 'points'")
    balances = {a["member_id"]: int(a["balance"]) for a in accounts}
    assert balances == {m: earned[m] for m in balances}, "points balances differ from the answers"

    running = await rows("SELECT key, created_at FROM idempotency_records WHERE state = 'running'")
    assert running == [], f"idempotency records left running: {running[:5]}"
    await assert_ledger_clean()


async def assert_outbox_delivered_once(receiver, timeout: float = 30) -> None:
    """Every outbox row ends ``delivered``, and the receiver saw each event id exactly once."""
    deadline = time.monotonic() + timeout
    while True:
        left = await rows("SELECT status, count(*) AS n, max(locked_until) AS leased_until, max(attempts) AS attempts, "
                          "now() AS now FROM outbox_events WHERE status <> 'delivered' GROUP BY status")
        if not left:
            break
        assert time.monotonic() < deadline, f"outbox rows not delivered after {timeout} s: {left}"
        await asyncio.sleep(0.2)
    event_ids = [r["event_id"] for r in await rows("SELECT event_id FROM outbox_events")]
    counts = receiver.counts()
    assert set(counts) == set(event_ids), (f"lost: {sorted(set(event_ids) - set(counts))[:5]}, "
                                           f"unknown: {sorted(set(counts) - set(event_ids))[:5]}")
    assert {e: n for e, n in counts.items() if n != 1} == {}, "events delivered twice"
