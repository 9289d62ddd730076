"""Idempotency-Key leases, tokens and the answer sealed inside the core's transaction."""
import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from tortoise.exceptions import IntegrityError

from gateway import idempotency
from gateway.services import SERVICES
from loyalty_core import jobs, orders
from loyalty_core.chains import get_program
from loyalty_core.errors import InvariantViolation
from loyalty_core.models import IdempotencyRecord, Member, Order, PendingPoints, Refund

from ..helpers import problem
from .programs import line, order, program

NOW = "2026-11-20T10:05:00+08:00"


@pytest.fixture
async def till(till, clock):
    clock.at = datetime.fromisoformat(NOW)
    return till


async def test_a_retry_that_took_over_keeps_its_answer(till, clock):
    """The first holder's lease ran out and a retry took the key over: the first can no longer
    write its answer (or delete the retry's claim)."""
    vault = till.client.server.app[SERVICES].vault
    first = await idempotency.claim(till.chain_id, "k-1", "print", clock.now(), vault)
    clock.advance(seconds=61)
    second = await idempotency.claim(till.chain_id, "k-1", "print", clock.now(), vault)
    assert second.id == first.id and second.token != first.token
    assert await idempotency.finish(first, 201, '{"who":"first"}', vault) is False
    await idempotency.release(first)
    assert await idempotency.finish(second, 201, '{"who":"second"}', vault) is True
    replay = await idempotency.claim(till.chain_id, "k-1", "print", clock.now(), vault)
    assert replay == idempotency.Replay(201, '{"who":"second"}')


async def test_an_order_whose_lease_was_lost_rolls_back_and_its_retry_applies_once(till, monkeypatch):
    member = await till.new_member("13500000001")
    body = order("LEASE-1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW)
    real_finishing = idempotency.finishing

    def taken_over(claim, status, text, vault):  # the answer is written as a retry's: another token
        return real_finishing(replace(claim, token="a retry's token"), status, text, vault)

    monkeypatch.setattr(idempotency, "finishing", taken_over)
    lost = await till.pos("POST", "/v1/pos/orders", body, idempotency_key="lease-1")
    await problem(lost, 409, "request_in_progress")
    assert not await Order.exists(txn_id="LEASE-1")  # the order and its answer went together
    assert (await till.member(member["id"]))["balances"]["points"] == 0

    monkeypatch.setattr(idempotency, "finishing", real_finishing)
    retried = await till.pos("POST", "/v1/pos/orders", body, idempotency_key="lease-1")
    assert retried.status == 201, await retried.text()
    replay = await till.pos("POST", "/v1/pos/orders", body, idempotency_key="lease-1")
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json())["order_id"] == (await retried.json())["order_id"]
    assert (await till.member(member["id"]))["balances"]["points"] == 10


async def test_a_refund_whose_lease_was_lost_rolls_back_and_its_retry_applies_once(till, monkeypatch):
    member = await till.new_member("13500000002")
    await till.sale(order("LEASE-2", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW))
    real_finishing = idempotency.finishing
    monkeypatch.setattr(idempotency, "finishing", lambda claim, status, text, vault: real_finishing(
        replace(claim, token="a retry's token"), status, text, vault))
    refund = {"refund_id": "R1", "amount": 500}
    lost = await till.pos("POST", "/v1/pos/orders/LEASE-2/refunds", refund, idempotency_key="lease-2")
    await problem(lost, 409, "request_in_progress")
    assert not await Refund.exists(refund_id="R1")  # the refund and its answer went together
    assert (await till.member(member["id"]))["balances"]["points"] == 10

    monkeypatch.setattr(idempotency, "finishing", real_finishing)
    retried = await till.pos("POST", "/v1/pos/orders/LEASE-2/refunds", refund, idempotency_key="lease-2")
    assert retried.status == 201, await retried.text()
    replay = await till.pos("POST", "/v1/pos/orders/LEASE-2/refunds", refund, idempotency_key="lease-2")
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == await retried.json()
    assert (await till.member(member["id"]))["balances"]["points"] == 5


async def test_a_job_under_a_key_is_many_small_transactions(till, clock, monkeypatch):
    await till.set_program(program(pending_days=1))
    members = [await till.new_member(f"1350000001{i}") for i in range(3)]
    for i, member in enumerate(members):
        await till.sale(order(f"J{i}", [line("BEANS", "coffee", 1000)], member_id=member["id"], at=NOW))
    clock.advance(days=2)
    real_vest, seen = jobs._vest_one, []

    async def third_fails(chain_id, pending_id, program_, now):
        seen.append(pending_id)
        if len(seen) == 3:
            raise RuntimeError("the worker's database went away")
        return await real_vest(chain_id, pending_id, program_, now)

    monkeypatch.setattr(jobs, "_vest_one", third_fails)
    failed = await till.admin("POST", "/v1/jobs/vest_points", idempotency_key="vest-1")
    assert failed.status == 500
    # the two lots vested before the failure stay vested: each was its own transaction
    assert await PendingPoints.filter(chain_id=till.chain_id, vested=True).count() == 2
    assert not await IdempotencyRecord.exists(key="vest-1")  # a 5xx is not kept: the key can be sent again
    monkeypatch.setattr(jobs, "_vest_one", real_vest)
    again = await (await till.admin("POST", "/v1/jobs/vest_points", idempotency_key="vest-1")).json()
    assert (again["processed"], again["points"]) == (1, 10)
    assert [(await till.member(m["id"]))["balances"]["points"] for m in members] == [10, 10, 10]


async def test_an_invariant_violation_is_a_500_and_is_not_stored(till, monkeypatch):
    member = await till.new_member("13500000002")
    body = order("BUG-1", [line("LATTE", "coffee", 1000)], member_id=member["id"], at=NOW)

    def broken(*args, **kwargs):
        raise InvariantViolation("entry does not balance: {'points': 1}")

    monkeypatch.setattr(orders, "_order_legs", broken)
    failed = await till.pos("POST", "/v1/pos/orders", body, idempotency_key="bug-1")
    await problem(failed, 500, "internal_error")
    monkeypatch.undo()
    fixed = await till.pos("POST", "/v1/pos/orders", body, idempotency_key="bug-1")
    assert fixed.status == 201 and "Idempotent-Replayed" not in fixed.headers


async def test_a_conflict_that_is_no_member_code_is_not_called_code_used(till):
    """Only a second order with the same dynamic code is code_used; another broken key is a bug."""
    member = await Member.get(id=(await till.new_member("13500000003"))["id"])
    bad = orders.OrderInput(source="store:999999", txn_id="FK-1", occurred_at=datetime.fromisoformat(NOW),
                            lines=[orders.pricing.Line("LATTE", "coffee", 1, 1000, 1000)],
                            member=member, store_id=999999,  # no such store: a foreign key breaks
                            payments=[orders.Payment("cash", 1000)])
    with pytest.raises(IntegrityError):
        await orders.place_order(till.chain_id, bad, await get_program(till.chain_id), datetime.fromisoformat(NOW))
    assert not await Order.exists(txn_id="FK-1")


async def test_a_long_handler_keeps_its_lease(till, clock):
    vault = till.client.server.app[SERVICES].vault
    claim = await idempotency.claim(till.chain_id, "long-1", "print", clock.now(), vault)
    before = (await IdempotencyRecord.get(id=claim.id)).locked_until
    clock.advance(seconds=50)
    task = asyncio.create_task(idempotency.keep_alive(claim, clock.now, every=0.01))
    await asyncio.sleep(0.1)
    task.cancel()
    after = (await IdempotencyRecord.get(id=claim.id)).locked_until
    assert after - before == timedelta(seconds=50)


async def test_a_handler_renews_its_lease_only_once_it_has_run_a_third_of_it(till, clock):
    vault = till.client.server.app[SERVICES].vault
    lease = timedelta(seconds=0.06)  # renewed after 0.02 s, then every 0.02 s
    quick = await idempotency.claim(till.chain_id, "quick-1", "print", clock.now(), vault, lease)
    first = (await IdempotencyRecord.get(id=quick.id)).locked_until
    renewing = idempotency.Renewing(quick, clock.now, lease)
    clock.advance(seconds=5)
    renewing.cancel()  # ended before a third of its lease: never renewed
    await asyncio.sleep(0.05)
    assert (await IdempotencyRecord.get(id=quick.id)).locked_until == first

    slow = await idempotency.claim(till.chain_id, "slow-1", "print", clock.now(), vault, lease)
    renewing = idempotency.Renewing(slow, clock.now, lease)
    clock.advance(seconds=5)
    await asyncio.sleep(0.1)
    renewing.cancel()
    assert (await IdempotencyRecord.get(id=slow.id)).locked_until == clock.now() + lease


async def test_a_claim_taken_by_a_sales_first_read_keeps_its_lease_while_the_sale_runs(till, clock):
    lease = timedelta(seconds=0.06)
    claiming = idempotency.Claiming(till.chain_id, "sale-long", "print", clock.now(), lease, clock.now)
    await claiming.opening().alone()  # what a guest's sale sends; a member's sends it with the look-up
    assert claiming.claim is not None
    clock.advance(seconds=5)
    await asyncio.sleep(0.1)
    claiming.stop_renewing()
    assert (await IdempotencyRecord.get(id=claiming.claim.id)).locked_until == clock.now() + lease
    again = idempotency.Claiming(till.chain_id, "sale-long", "print", clock.now(), lease, clock.now)
    with pytest.raises(idempotency.KeyTaken):  # a twin's first read finds the key claimed
        await again.opening().alone()
    assert again.renewing is None
