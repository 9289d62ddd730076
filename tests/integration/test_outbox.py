"""The outbox: events written with their cause, delivered by the relay at least once, retried
with backoff, and never handed to two relays at the same time."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from gateway.worker import Relay
from loyalty_core.models import OutboxEvent
from loyalty_core.outbox import emit

from ..helpers import adjustment, problem

WELCOME = {"behaviors": {"register": {"points": 100}}}


class Receiver:
    """A stand-in for another system: records what it got, fails while told to."""

    def __init__(self, failing: bool = False) -> None:
        self.got: list[OutboxEvent] = []
        self.failing = failing

    async def __call__(self, event: OutboxEvent) -> None:
        if self.failing:
            raise RuntimeError("receiver down")
        self.got.append(event)
        await asyncio.sleep(0)


async def test_registration_writes_its_events_with_it(chain):
    await chain.set_program(WELCOME)
    member = await chain.new_member("13300133000")
    events = await OutboxEvent.filter(chain_id=chain.chain_id).order_by("id")
    assert sorted(e.topic for e in events) == ["balance.changed", "member.created"]
    by_topic = {e.topic: e for e in events}
    assert by_topic["member.created"].payload == {"member_id": member["id"], "channel": "admin"}
    changed = by_topic["balance.changed"].payload
    assert changed["member_id"] == member["id"] and changed["balances"]["points"] == 100
    assert all(e.status == "pending" and e.attempts == 0 for e in events)
    assert len({e.event_id for e in events}) == 2

    # A refused change writes no event: the duplicate phone, the overdraft.
    await problem(await chain.admin("POST", "/v1/members", {"phone": "13300133000"}), 409, "already_exists")
    await problem(await adjustment(chain, member["id"], -500), 422, "insufficient_points")
    assert await OutboxEvent.filter(chain_id=chain.chain_id).count() == 2
    assert (await adjustment(chain, member["id"], -40)).status == 201
    last = await OutboxEvent.filter(chain_id=chain.chain_id).order_by("-id").first()
    assert last.topic == "balance.changed" and last.payload["balances"]["points"] == 60


async def test_relay_delivers_each_event_once(chain, clock):
    await chain.set_program(WELCOME)
    member = await chain.new_member("13300133001")
    receiver = Receiver()
    relay = Relay(clock, routes={"member.created": [receiver], "balance.changed": [receiver]})
    assert await relay.run_once() == 2
    assert sorted(e.topic for e in receiver.got) == ["balance.changed", "member.created"]
    assert {e.payload["member_id"] for e in receiver.got} == {member["id"]}
    for row in await OutboxEvent.filter(chain_id=chain.chain_id):
        assert row.status == "delivered" and row.attempts == 1 and row.last_error is None
        assert row.delivered_at == clock.now() and row.locked_until is None
    assert await relay.run_once() == 0
    assert len(receiver.got) == 2


async def test_failed_delivery_is_retried_after_backoff(chain, clock):
    member = await chain.new_member("13300133002")
    receiver = Receiver(failing=True)
    relay = Relay(clock, routes={"member.created": [receiver]})
    assert await relay.run_once() == 1
    row = await OutboxEvent.get(chain_id=chain.chain_id, topic="member.created")
    assert row.status == "pending" and row.attempts == 1
    assert "receiver down" in row.last_error
    assert row.next_attempt_at > clock.now()
    assert row.locked_until is None and row.delivered_at is None

    assert await relay.run_once() == 0  # not due yet
    clock.advance(seconds=1)
    assert await relay.run_once() == 0
    receiver.failing = False
    clock.advance(seconds=(row.next_attempt_at - clock.now()).total_seconds())
    assert await relay.run_once() == 1
    row = await OutboxEvent.get(id=row.id)
    assert row.status == "delivered" and row.attempts == 2 and row.last_error is None
    assert [e.event_id for e in receiver.got] == [row.event_id]
    assert receiver.got[0].payload == {"member_id": member["id"], "channel": "admin"}


async def test_backoff_grows_with_each_failure(chain, clock):
    await chain.new_member("13300133003")
    relay = Relay(clock, routes={"member.created": [Receiver(failing=True)]})
    delays = []
    for _ in range(4):
        before = clock.now()
        assert await relay.run_once() == 1
        row = await OutboxEvent.get(chain_id=chain.chain_id, topic="member.created")
        delays.append(row.next_attempt_at - before)
        clock.at = row.next_attempt_at
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert row.attempts == 4 and row.status == "pending"


async def test_a_claimed_event_of_a_dead_relay_is_delivered_after_its_lease(chain, clock):
    await chain.new_member("13300133004")
    crashed = Relay(clock, routes={"member.created": [Receiver()]})
    claimed = await crashed.claim(clock.now())  # claims, then "dies" before delivering
    assert [e.topic for e in claimed] == ["member.created"]
    receiver = Receiver()
    relay = Relay(clock, routes={"member.created": [receiver]})
    assert await relay.run_once() == 0
    clock.advance(seconds=61)
    assert await relay.run_once() == 1
    assert [e.event_id for e in receiver.got] == [claimed[0].event_id]


@pytest.mark.postgres
async def test_two_relays_never_deliver_the_same_event_twice(chain, clock):
    now = clock.now()
    for i in range(120):
        await emit(chain.chain_id, "test.event", {"n": i}, now - timedelta(seconds=1))
    calls: Counter[str] = Counter()
    delivered_by: dict[str, str] = {}

    def receiver(name: str):
        async def deliver(event: OutboxEvent) -> None:
            calls[event.event_id] += 1
            delivered_by[event.event_id] = name
            await asyncio.sleep(0.001)

        return deliver

    relays = [Relay(clock, routes={"test.event": [receiver(name)]}, batch=7) for name in ("a", "b", "c")]
    for _ in range(100):
        done = await asyncio.gather(*[relay.run_once() for relay in relays])
        if not sum(done):
            break
    assert len(calls) == 120
    assert set(calls.values()) == {1}, [k for k, v in calls.items() if v > 1]
    assert await OutboxEvent.filter(chain_id=chain.chain_id, status="delivered", attempts=1).count() == 120
    assert len(set(delivered_by.values())) >= 2  # they really worked side by side


async def test_a_claim_takes_a_share_of_every_chain_with_due_events(chain, other_chain, clock):
    """One chain's backlog never holds back another's: the batch is shared between the chains."""
    now = clock.now()
    for kit in (chain, other_chain):
        for i in range(5):
            await emit(kit.chain_id, "test.event", {"n": i}, now - timedelta(seconds=1))
    claimed = await Relay(clock, batch=4).claim(now)
    assert Counter(event.chain_id for event in claimed) == {chain.chain_id: 2, other_chain.chain_id: 2}
    again = await Relay(clock, batch=50).claim(now)  # the rest, none of the leased ones
    assert Counter(event.chain_id for event in again) == {chain.chain_id: 3, other_chain.chain_id: 3}
    assert {e.id for e in claimed} & {e.id for e in again} == set()
