"""GET /v1/reports/liability as an operator reads it: the sums of what several members of one chain
hold after sales, redemptions, refunds, top-ups and pending points, never another chain's."""
from __future__ import annotations

from datetime import datetime

from ..helpers import adjustment, problem
from .programs import line, order, program
from .test_stored_value import BONUSES, top_up

NOW = "2026-11-20T10:05:00+08:00"


async def liability(kit) -> dict:
    response = await kit.admin("GET", "/v1/reports/liability")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_liability_is_what_the_members_hold(chain, other_chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    for kit in (chain, other_chain):
        await kit.set_program({**program(pending_days=3), "stored_value": BONUSES})
    members = [await chain.new_member(f"1360000000{i}") for i in range(3)]
    outsider = await other_chain.new_member("13600000009")
    assert await liability(chain) == {"points": {"available": 0, "pending": 0},
                                      "stored_value": {"principal": 0, "bonus": 0}}

    await adjustment(chain, members[0]["id"], 500)
    await chain.sale(order("O1", [line("BEANS", "coffee", 20000)], at=NOW, member_id=members[0]["id"]))  # 200 pending
    await chain.sale(order("O2", [line("BEANS", "coffee", 5000)], at=NOW, member_id=members[1]["id"]))  # 50 pending
    await top_up(chain, "T1", 10000, member_id=members[1]["id"])  # 10000 + 1000 bonus
    await top_up(chain, "T2", 60000, member_id=members[2]["id"])  # 60000 + 8000 bonus
    await chain.sale(order("O3", [line("BEANS", "coffee", 10400)], at=NOW, member_id=members[1]["id"],
                           method="stored_value"))  # 10000 principal, 400 bonus; 104 points pending
    refund = await chain.pos("POST", "/v1/pos/orders/O2/refunds", {"refund_id": "R1", "amount": 5000})  # -50 pending
    assert refund.status == 201, await refund.text()
    await adjustment(other_chain, outsider["id"], 7777)
    await top_up(other_chain, "T1", 50000, member_id=outsider["id"])

    shown = [(await chain.member(m["id"]))["balances"] for m in members]
    report = await liability(chain)
    assert report == {
        "points": {"available": sum(b["points"] for b in shown), "pending": sum(b["pending_points"] for b in shown)},
        "stored_value": {"principal": sum(b["stored_value_principal"] for b in shown),
                         "bonus": sum(b["stored_value_bonus"] for b in shown)}}
    assert report == {"points": {"available": 500, "pending": 200 + 104},
                      "stored_value": {"principal": 60000, "bonus": 600 + 8000}}
    assert await liability(other_chain) == {"points": {"available": 7777, "pending": 0},
                                            "stored_value": {"principal": 50000, "bonus": 8000}}


async def test_a_negative_balance_is_owed_to_nobody(chain, clock):
    clock.at = datetime.fromisoformat(NOW)
    await chain.set_program(program())
    spender, saver = await chain.new_member("13600000010"), await chain.new_member("13600000011")
    await chain.sale(order("O1", [line("BEANS", "coffee", 10000)], at=NOW, member_id=spender["id"]))  # +100
    assert (await adjustment(chain, spender["id"], -100, reason="spent elsewhere")).status == 201
    refund = await chain.pos("POST", "/v1/pos/orders/O1/refunds", {"refund_id": "R1", "amount": 10000})
    assert refund.status == 201, await refund.text()
    assert (await chain.member(spender["id"]))["balances"]["points"] == -100
    await adjustment(chain, saver["id"], 300)
    assert (await liability(chain))["points"] == {"available": 300, "pending": 0}


async def test_every_role_reads_it_and_a_terminal_cannot(chain):
    for role in ("operator", "auditor"):
        made = await chain.admin("POST", "/v1/admin-keys", {"role": role})
        assert made.status == 201, await made.text()
        response = await chain.admin("GET", "/v1/reports/liability", key=(await made.json())["key"])
        assert response.status == 200
    await problem(await chain.admin("GET", "/v1/reports/liability", key="not-a-key"), 401, "unauthorized")


async def activity(kit, start: str, end: str) -> dict:
    response = await kit.admin("GET", f"/v1/reports/activity?from={start}&to={end}")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_activity_counts_points_and_members_of_the_period(chain, other_chain, clock):
    clock.at = datetime.fromisoformat("2026-11-10T10:00:00+08:00")
    await chain.set_program(program())
    await other_chain.set_program(program())
    early = await chain.new_member("13600000020")  # joined before the period
    clock.at = datetime.fromisoformat("2026-11-20T10:00:00+08:00")
    twice, once, idle = [await chain.new_member(f"1360000002{i}") for i in (1, 2, 3)]
    at = clock.now().isoformat()
    await adjustment(chain, twice["id"], 1000)  # adjusted, not issued
    await chain.sale(order("A1", [line("BEANS", "coffee", 10000)], at=at, member_id=twice["id"]))  # +100
    await chain.sale(order("A2", [line("BEANS", "coffee", 6000)], 5000, at=at, member_id=twice["id"],
                           redeem_points=1000))  # +50, -1000 redeemed
    await chain.sale(order("B1", [line("BEANS", "coffee", 3000)], at=at, member_id=once["id"]))  # +30
    await chain.sale(order("G1", [line("BEANS", "coffee", 3000)], at=at))  # a guest: not a member
    refund = await chain.pos("POST", "/v1/pos/orders/B1/refunds", {"refund_id": "R1", "amount": 3000})  # -30
    assert refund.status == 201
    await other_chain.sale(order("X1", [line("BEANS", "coffee", 99900)], at=at,
                                 member_id=(await other_chain.new_member("13600000029"))["id"]))
    clock.at = datetime.fromisoformat("2026-12-02T10:00:00+08:00")
    await chain.sale(order("A3", [line("BEANS", "coffee", 2000)], at=clock.now().isoformat(), member_id=early["id"]))

    november = await activity(chain, "2026-11-01", "2026-11-30")
    assert november["points"] == {"issued": 100 + 50 + 30 - 30, "redeemed": 1000, "expired": 0}
    assert november["members"] == {"joined": 4, "active": 2, "repeat": 1, "repeat_rate": 0.5}
    assert november["by_channel"]["pos"]["orders"] == 3 and set(november["by_channel"]) <= {"pos", "admin"}
    assert idle["id"] and early["id"]
    day = await activity(chain, "2026-12-02", "2026-12-02")
    assert day["points"]["issued"] == 20 and day["members"] == {"joined": 0, "active": 1, "repeat": 0,
                                                                  "repeat_rate": 0.0}
    assert (await activity(other_chain, "2026-11-01", "2026-11-30"))["points"]["issued"] == 999
    for query in ("from=2026-11-30&to=2026-11-01", "from=2026-01-01&to=2027-06-01", "from=yesterday&to=2026-11-01",
                  "to=2026-11-01"):
        await problem(await chain.admin("GET", f"/v1/reports/activity?{query}"), 422, "validation_error")


async def test_activity_counts_expiry_on_the_day_points_expired(chain, clock):
    clock.at = datetime.fromisoformat("2026-11-20T10:00:00+08:00")
    await chain.set_program(program(expiry={"mode": "rolling_months", "months": 1}))
    member = await chain.new_member("13600000040")
    await chain.sale(order("E1", [line("BEANS", "coffee", 8000)], at=clock.now().isoformat(), member_id=member["id"]))
    clock.at = datetime.fromisoformat("2026-12-25T10:00:00+08:00")
    assert (await chain.admin("POST", "/v1/jobs/expire_points")).status == 200
    assert (await chain.member(member["id"]))["balances"]["points"] == 0
    # the lot vested on 20 November and expired a month later, at the end of 20 December: the instant
    # 2026-12-21 00:00 in Shanghai, so the expiry is on the 21st
    assert (await activity(chain, "2026-12-21", "2026-12-21"))["points"] == {"issued": 0, "redeemed": 0, "expired": 80}
    assert (await activity(chain, "2026-12-20", "2026-12-20"))["points"]["expired"] == 0
    assert (await activity(chain, "2026-11-01", "2026-11-30"))["points"] == {"issued": 80, "redeemed": 0, "expired": 0}
    december = await activity(chain, "2026-12-01", "2026-12-31")
    assert december["by_channel"]["job"]["points"]["expired"] == 80 and december["members"]["active"] == 0
