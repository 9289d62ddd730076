"""Points and time: pending points vest, lots expire on the right local day, spending draws the
lots that expire first. The clock is frozen and moved by hand."""
from datetime import datetime


from loyalty_core.verify import verify

from ..helpers import adjustment, ledger_items, problem
from .programs import line, order, program


def at(clock, iso: str) -> str:
    clock.at = datetime.fromisoformat(iso)
    return iso



async def job(till, name: str) -> dict:
    response = await till.admin("POST", f"/v1/jobs/{name}")
    assert response.status == 200, await response.text()
    return await response.json()


async def entries(till, member_id: int, kind: str) -> list[dict]:
    return [e for e in await ledger_items(till, member_id) if e["kind"] == kind]


async def test_pending_points_vest_after_pending_days(till, clock):
    await till.set_program(program(pending_days=7))
    member = await till.new_member("13700000001")
    sold = await till.sale(order("P1", [line("BEANS", "coffee", 5000)], member_id=member["id"],
                                 at=at(clock, "2026-11-20T10:00:00+08:00")))
    # 5000 fen -> 50 points, pending until 7 days after the sale.
    assert sold["points_earned"] == 50
    assert datetime.fromisoformat(sold["points_pending_until"]) == datetime.fromisoformat("2026-11-27T10:00:00+08:00")
    assert sold["balances"]["pending_points"] == 50 and sold["balances"]["points"] == 0
    # pending points can't be spent
    spend = await till.pos("POST", "/v1/pos/orders", order("P2", [line("LATTE", "coffee", 1000)], 950,
                                                            member_id=member["id"], redeem_points=50,
                                                            at=at(clock, "2026-11-21T10:00:00+08:00")))
    await problem(spend, 422, "invalid_redeem_points")
    at(clock, "2026-11-27T09:59:59+08:00")
    assert (await job(till, "vest_points"))["processed"] == 0
    at(clock, "2026-11-27T10:00:00+08:00")
    vested = await job(till, "vest_points")
    assert (vested["processed"], vested["points"]) == (1, 50)
    assert (await job(till, "vest_points"))["processed"] == 0  # safe to run twice
    balances = (await till.member(member["id"]))["balances"]
    assert (balances["points"], balances["pending_points"]) == (50, 0)
    assert len(await entries(till, member["id"], "vest")) == 1
    assert await verify() == []


async def test_refund_before_vesting_takes_from_pending(till, clock):
    await till.set_program(program(pending_days=7))
    member = await till.new_member("13700000002")
    await till.sale(order("P3", [line("BEANS", "coffee", 5000)], member_id=member["id"],
                          at=at(clock, "2026-11-20T10:00:00+08:00")))
    back = await (await till.pos("POST", "/v1/pos/orders/P3/refunds", {"refund_id": "R", "amount": 2500})).json()
    # half of 50 pending points are reversed where they wait
    assert back["points_reversed"] == 25
    assert (back["balances"]["pending_points"], back["balances"]["points"]) == (25, 0)
    at(clock, "2026-11-28T00:00:00+08:00")
    assert (await job(till, "vest_points"))["points"] == 25
    assert (await till.member(member["id"]))["balances"]["points"] == 25
    assert await verify() == []


async def test_rolling_expiry_on_the_right_local_day(till, clock):
    await till.set_program(program(expiry={"mode": "rolling_months", "months": 12}))
    member = await till.new_member("13700000003")
    # Lot 1 vests 2026-03-01 07:00 Shanghai = 2026-02-28 23:00 UTC: its last day is 2027-03-01 (Shanghai).
    await till.sale(order("E1", [line("BEANS", "coffee", 1000)], member_id=member["id"],
                          at=at(clock, "2026-03-01T07:00:00+08:00")))
    # Lot 2 vests 2026-03-15: its last day is 2027-03-15.
    await till.sale(order("E2", [line("BEANS", "coffee", 2000)], member_id=member["id"],
                          at=at(clock, "2026-03-15T12:00:00+08:00")))
    # Noon on 2027-03-01 in Shanghai is already 2027-03-01 04:00 UTC: a UTC calendar would expire lot 1 now.
    at(clock, "2027-03-01T12:00:00+08:00")
    assert (await job(till, "expire_points"))["processed"] == 0
    at(clock, "2027-03-02T00:00:00+08:00")
    first = await job(till, "expire_points")
    assert (first["processed"], first["points"]) == (1, 10)
    assert (await job(till, "expire_points"))["processed"] == 0  # safe to run twice
    at(clock, "2027-03-15T23:59:59+08:00")
    assert (await job(till, "expire_points"))["processed"] == 0
    at(clock, "2027-03-16T00:00:00+08:00")
    assert (await job(till, "expire_points"))["points"] == 20
    expiries = await entries(till, member["id"], "expiry")
    assert [e["changes"]["points"] for e in expiries] == [-20, -10]
    assert [datetime.fromisoformat(e["occurred_at"]) for e in expiries] == [
        datetime.fromisoformat("2027-03-16T00:00:00+08:00"), datetime.fromisoformat("2027-03-02T00:00:00+08:00")]
    assert (await till.member(member["id"]))["balances"]["points"] == 0
    assert await verify() == []


async def test_year_end_and_never(till, clock):
    await till.set_program(program(expiry={"mode": "year_end", "years_after": 1}))
    member = await till.new_member("13700000004")
    # vested in 2026, years_after 1: lives through 2027-12-31 (Shanghai), gone at 2028-01-01 00:00.
    await till.sale(order("Y1", [line("BEANS", "coffee", 1000)], member_id=member["id"],
                          at=at(clock, "2026-06-01T10:00:00+08:00")))
    await till.set_program(program(expiry={"mode": "never"}))
    await till.sale(order("N1", [line("BEANS", "coffee", 3000)], member_id=member["id"],
                          at=at(clock, "2026-06-02T10:00:00+08:00")))
    at(clock, "2027-12-31T23:59:59+08:00")
    assert (await job(till, "expire_points"))["processed"] == 0
    at(clock, "2028-01-01T00:00:00+08:00")
    assert (await job(till, "expire_points"))["points"] == 10
    at(clock, "2099-01-01T00:00:00+08:00")
    assert (await job(till, "expire_points"))["processed"] == 0  # "never" lots stay
    assert (await till.member(member["id"]))["balances"]["points"] == 30


async def test_spending_draws_the_lot_that_expires_first(till, clock):
    await till.set_program(program(expiry={"mode": "never"}))
    member = await till.new_member("13700000005")
    # 100 points that never expire, then 100 that expire after one month.
    await till.sale(order("L1", [line("BEANS", "coffee", 10000)], member_id=member["id"],
                          at=at(clock, "2026-01-05T10:00:00+08:00")))
    await till.set_program(program(expiry={"mode": "rolling_months", "months": 1}))
    await till.sale(order("L2", [line("BEANS", "coffee", 10000)], member_id=member["id"],
                          at=at(clock, "2026-01-06T10:00:00+08:00")))
    # Spend 100 (100 fen off 1000; 900 payable earns 9 more, in a lot that lives through 2026-02-07).
    await till.sale(order("L3", [line("LATTE", "coffee", 1000)], 900, member_id=member["id"], redeem_points=100,
                          at=at(clock, "2026-01-07T10:00:00+08:00")))
    at(clock, "2026-03-01T00:00:00+08:00")
    expired = await job(till, "expire_points")
    # The spend took the expiring lot (100), so only the 9 earned by L3 expire; the 100 "never" points remain.
    assert expired["points"] == 9
    assert (await till.member(member["id"]))["balances"]["points"] == 100
    assert await verify() == []


async def test_a_redemption_draws_lots_without_an_order_across_several_and_only_the_members_own(till, clock):
    """Adjustment lots name no order: a redemption draws them like any other, soonest to expire
    first, across as many lots as it needs, and never another member's."""
    await till.set_program(program(expiry={"mode": "rolling_months", "months": 12}))
    spender, keeper = await till.new_member("13700000021"), await till.new_member("13700000022")
    for day in ("01", "02", "03"):
        at(clock, f"2026-01-{day}T10:00:00+08:00")
        for member in (spender, keeper):
            assert (await adjustment(till, member["id"], 60, reason=f"lot {day}")).status == 201
    # 100 points off 1000 fen: the 1st's lot goes whole, 40 of the 2nd's; 900 paid earns 9.
    sold = await till.sale(order("D1", [line("LATTE", "coffee", 1000)], 900, member_id=spender["id"],
                                 redeem_points=100, at=at(clock, "2026-01-10T10:00:00+08:00")))
    assert (sold["points_redeemed"], sold["points_earned"], sold["balances"]["points"]) == (100, 9, 89)
    assert await verify() == []
    # Twelve months on, the adjustments' lots are due (the spender's 20 + 60 left, the keeper's
    # 3 x 60), the order's 9 not yet.
    at(clock, "2027-01-04T00:00:00+08:00")
    assert (await job(till, "expire_points"))["points"] == 20 + 60 + 3 * 60
    assert (await till.member(spender["id"]))["balances"]["points"] == 9
    assert (await till.member(keeper["id"]))["balances"]["points"] == 0
    at(clock, "2027-02-01T00:00:00+08:00")
    assert (await job(till, "expire_points"))["points"] == 9
    assert await verify() == []


async def test_unknown_job_and_operator_cannot_run_jobs(till):
    await problem(await till.admin("POST", "/v1/jobs/make_money"), 404, "unknown_job")
    made = await till.admin("POST", "/v1/admin-keys", {"role": "operator"})
    operator = (await made.json())["key"]
    await problem(await till.admin("POST", "/v1/jobs/vest_points", key=operator), 403, "forbidden")


async def test_offline_batch_applies_in_time_order_each_on_its_own(till, clock):
    member = await till.new_member("13700000006")
    at(clock, "2026-11-20T18:00:00+08:00")

    def mk(txn: str, when: str, lines=(line("LATTE", "coffee", 1000),), **fields) -> dict:
        return order(txn, list(lines), member_id=member["id"], at=when, **fields)

    batch = {"orders": [
        # sent out of order: the redeem at 10:00 needs the points earned at 09:00 and 09:30 (no campaign before 11:00)
        mk("OFF-3", "2026-11-20T10:00:00+08:00", redeem_points=100, payments=[{"method": "cash", "amount": 900}]),
        mk("OFF-1", "2026-11-20T09:00:00+08:00", payments=[{"method": "cash", "amount": 10000}],
           lines=[line("BEANS", "coffee", 10000)]),
        mk("OFF-2", "2026-11-20T09:30:00+08:00"),
        mk("OFF-4", "2026-11-20T10:30:00+08:00", redeem_points=500, payments=[{"method": "cash", "amount": 500}]),
        {"txn_id": "OFF-5", "lines": "not a list"},
    ]}
    first = await till.pos("POST", "/v1/pos/orders/batch", batch)
    assert first.status == 200, await first.text()
    results = (await first.json())["results"]
    assert [r["status"] for r in results] == ["created", "created", "created", "rejected", "rejected"]
    assert results[3]["problem"]["code"] == "insufficient_points"
    assert results[4]["problem"]["code"] == "validation_error"
    # 100 (OFF-1) + 10 (OFF-2) - 100 + 9 (OFF-3) = 19
    assert (await till.member(member["id"]))["balances"]["points"] == 19
    again = await (await till.pos("POST", "/v1/pos/orders/batch", batch)).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate", "duplicate", "rejected", "rejected"]
    assert (await till.member(member["id"]))["balances"]["points"] == 19
    assert await verify() == []


async def test_a_batch_resent_days_later_is_all_duplicates(till, clock):
    from ..helpers import member_code

    member = await till.new_member("13700000007")
    at(clock, "2026-11-20T09:00:00+08:00")
    code = await member_code(till, member["id"])
    batch = {"orders": [
        order("LATE-1", [line("LATTE", "coffee", 1000)], member_code=code, at="2026-11-20T09:00:30+08:00"),
        order("LATE-2", [{**line("LATTE", "coffee", 1000), "amount": "1000"}], 1000, at="2026-11-20T09:01:00+08:00"),
    ]}
    at(clock, "2026-11-20T18:00:00+08:00")  # uploaded when the till came back online
    first = await (await till.pos("POST", "/v1/pos/orders/batch", batch)).json()
    assert [r["status"] for r in first["results"]] == ["created", "rejected"]
    # a batch order is validated as strictly as a single order, and keeps its txn_id when rejected
    assert first["results"][1]["txn_id"] == "LATE-2"
    assert first["results"][1]["problem"]["errors"][0]["field"] == "lines[0].amount"
    at(clock, "2026-11-23T09:00:00+08:00")  # three days later the code is long forgotten
    again = await (await till.pos("POST", "/v1/pos/orders/batch", batch)).json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "rejected"]
    assert (await till.member(member["id"]))["balances"]["points"] == 10
