"""evaluate_tiers over the HTTP API: a tier is lowered only after its retention and only while the
window's metric is below its threshold; safe to run twice; per chain."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta

from ..helpers import sql_rows
from .programs import PROGRAM, line, order

START = datetime.fromisoformat("2026-11-20T10:05:00+08:00")


def laddered() -> dict:
    changed = copy.deepcopy(PROGRAM)
    changed["tiers"] = {"metric": "growth", "window_months": 12, "retention_months": 12, "levels": [
        {"code": "regular", "name": "普通会员", "threshold": 0, "earn_multiplier": 1},
        {"code": "silver", "name": "银卡", "threshold": 100, "earn_multiplier": 1},
        {"code": "gold", "name": "金卡", "threshold": 500, "earn_multiplier": 1}]}
    return changed


async def evaluate(kit) -> dict:
    response = await kit.admin("POST", "/v1/jobs/evaluate_tiers")
    assert response.status == 200, await response.text()
    return await response.json()


async def tiers_of(kit, members) -> list[str]:
    return [(await kit.member(m["id"]))["tier"]["code"] for m in members]


async def test_lowered_after_retention_while_below_the_threshold(chain, other_chain, clock):
    clock.at = START
    for kit in (chain, other_chain):
        await kit.set_program(laddered())
    lapsed, silver, loyal, plain = [await chain.new_member(f"1320000000{i}") for i in range(4)]
    elsewhere = await other_chain.new_member("13200000009")

    async def buy(kit, member, txn: str, fen: int) -> None:
        await kit.sale(order(txn, [line("BEANS", "coffee", fen)], at=clock.now().isoformat(), member_id=member["id"]))

    # growth 1 per yuan: 600 >= gold's 500, 150 >= silver's 100
    await buy(chain, lapsed, "A1", 60000)
    await buy(chain, silver, "B1", 15000)
    await buy(chain, loyal, "C1", 60000)
    await buy(other_chain, elsewhere, "X1", 60000)
    assert await tiers_of(chain, [lapsed, silver, loyal, plain]) == ["gold", "silver", "gold", "regular"]

    clock.at = START + timedelta(days=180)  # within retention: nobody moves, whatever the metric
    assert (await evaluate(chain))["processed"] == 0
    clock.at = START + timedelta(days=360)
    await buy(chain, loyal, "C2", 60000)  # keeps the window's growth above gold
    clock.at = START + timedelta(days=400)  # retention over; the first purchases are out of the window
    # the 12-month window now starts about day 35: lapsed 0 < 100 and silver 0 < 100 go to regular;
    # loyal holds C2's 600 >= 500 and stays gold; plain is regular already: 2 lowered
    report = await evaluate(chain)
    assert report["job"] == "evaluate_tiers" and report["processed"] == 2
    assert await tiers_of(chain, [lapsed, silver, loyal, plain]) == ["regular", "regular", "gold", "regular"]
    assert (await chain.member(loyal["id"]))["tier"]["progress"]["current"] == 600
    assert (await evaluate(chain))["processed"] == 0  # a second run lowers nobody twice
    assert await tiers_of(other_chain, [elsewhere]) == ["gold"]  # its own chain's run has not come
    assert (await evaluate(other_chain))["processed"] == 1
    events = await sql_rows("SELECT payload FROM outbox_events WHERE topic = 'tier.changed'")
    assert sum('"evaluation"' in str(e["payload"]) for e in events) == 3
