"""The chain's own webhooks as its developers live them: subscribe, receive signed events from sales
at the till, never another chain's, each event once however often the outbox delivers it; a
receiver that is down gets it later, and after 24 h it waits as dead until an admin replays it."""
from __future__ import annotations

import pytest

from gateway.services import SERVICES
from gateway.worker import Relay, channel_routes
from loyalty_core.models import OutboxEvent

from ..fakes.receiver import Receiver
from ..helpers import make_chain, problem
from .programs import PROGRAM, line, order


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    fake = Receiver()
    server = await aiohttp_server(fake.application())
    fake.url = str(server.make_url("/hooks"))
    return fake


def relay(kit) -> Relay:
    services = kit.client.server.app[SERVICES]
    routes, _ = channel_routes(services.settings, services.cache, services.clock)
    return Relay(services.clock, routes)


async def subscribe(kit, receiver: Receiver, events: list[str]) -> dict:
    response = await kit.admin("POST", "/v1/webhooks", {"url": receiver.url, "events": events})
    assert response.status == 201, await response.text()
    made = await response.json()
    receiver.secrets.append(made["secret"])
    return made


async def drain(worker: Relay, rounds: int = 4) -> None:
    """Events, then the deliveries they fanned out to."""
    for _ in range(rounds):
        await worker.run_once()


async def sell(kit, clock, txn: str, member_id: int, fen: int) -> dict:
    return await kit.sale(order(txn, [line("BEANS", "coffee", fen)], member_id=member_id, at=clock.now().isoformat()))


async def test_signed_events_of_the_topics_asked_for_once_each_and_only_the_chains_own(
        chain, client, clock, receiver):
    other = await make_chain(client, clock, "Other Chain")
    for kit in (chain, other):
        await kit.set_program(PROGRAM)
    made = await subscribe(chain, receiver, ["order.created", "balance.changed"])
    assert made["secret"].startswith("whsec_") and made["events"] == ["balance.changed", "order.created"]
    listed = (await (await chain.admin("GET", "/v1/webhooks")).json())["items"]
    assert [w["id"] for w in listed] == [made["id"]] and "secret" not in listed[0]
    assert (await (await other.admin("GET", "/v1/webhooks")).json())["items"] == []

    a = await chain.new_member("13600000001")
    b = await chain.new_member("13600000002")
    elsewhere = await other.new_member("13600000001")
    await sell(chain, clock, "W1", a["id"], 12000)
    await sell(chain, clock, "W2", b["id"], 3000)
    await sell(other, clock, "W1", elsewhere["id"], 9900)
    worker = relay(chain)
    await drain(worker)

    orders = receiver.of_type("order.created")
    assert sorted(e["data"]["txn_id"] for e in orders) == ["W1", "W2"]
    assert all(e["data"]["member_id"] in (a["id"], b["id"]) for e in orders)
    balances = {e["data"]["member_id"]: e["data"]["balances"]["points"] for e in receiver.of_type("balance.changed")}
    assert balances == {a["id"]: 120, b["id"]: 30}
    assert receiver.of_type("member.created") == []  # not asked for
    assert receiver.refused == 0 and not receiver.duplicates

    # the outbox delivers every event again (a worker died before marking them): no new delivery
    events = await OutboxEvent.filter(chain_id=chain.chain_id).exclude(topic="webhook.delivery")
    for event in events:
        await worker.deliver(event)
    await drain(worker)
    assert len(receiver.received) == 4 and not receiver.duplicates
    delivered = (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=delivered")).json())["items"]
    assert len(delivered) == 4 and {d["webhook_id"] for d in delivered} == {made["id"]}
    assert {d["event_id"] for d in delivered} == set(receiver.events)


async def test_a_receiver_that_is_down_gets_it_later_then_dead_after_24_hours_until_replayed(
        chain, clock, receiver):
    await chain.set_program(PROGRAM)
    await subscribe(chain, receiver, ["*"])
    member = await chain.new_member("13600000011")
    worker = relay(chain)
    await drain(worker)
    assert [e["type"] for e in receiver.received] == ["member.created"]

    receiver.fail_next = 3
    await sell(chain, clock, "D1", member["id"], 5000)
    await drain(worker)
    pending = (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=pending")).json())["items"]
    assert {d["type"] for d in pending} == {"order.created", "balance.changed"} and {d["attempts"] for d in pending} == {1}
    assert all("500" in d["last_error"] for d in pending)
    for _ in range(3):  # the backoff passes: tried again until the receiver is back
        clock.advance(minutes=5)
        await drain(worker, 2)
    assert {e["type"] for e in receiver.received} == {"member.created", "order.created", "balance.changed"}
    assert (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=pending")).json())["items"] == []

    receiver.fail_next = 10_000  # down for good
    await sell(chain, clock, "D2", member["id"], 2000)
    await drain(worker)
    for _ in range(30):
        clock.advance(hours=1)
        await drain(worker, 1)
    dead = (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=dead")).json())["items"]
    assert {d["type"] for d in dead} == {"order.created", "balance.changed"}
    await sell(chain, clock, "D3", member["id"], 1000)
    await drain(worker, 1)  # D3's events fanned out, their deliveries pending
    waiting = (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=pending")).json())["items"]
    await problem(await chain.admin("POST", f"/v1/webhooks/deliveries/{waiting[0]['id']}/replay"), 409,
                  "delivery_pending")
    assert all(d["next_attempt_at"] is None for d in dead)
    assert len(receiver.of_type("order.created")) == 1  # D2 never got through

    receiver.fail_next = 0
    for delivery in dead:
        replayed = await chain.admin("POST", f"/v1/webhooks/deliveries/{delivery['id']}/replay")
        assert replayed.status == 200 and (await replayed.json())["status"] == "pending"
    await drain(worker, 2)
    assert sorted(e["data"]["txn_id"] for e in receiver.of_type("order.created")) == ["D1", "D2", "D3"]
    assert (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=dead")).json())["items"] == []


async def test_unsubscribed_and_bad_input(chain, client, clock, receiver):
    other = await make_chain(client, clock, "Other Chain")
    made = await subscribe(chain, receiver, ["member.created"])
    for body, field in (({"url": "ftp://example.com/x", "events": ["*"]}, "url"),
                        ({"url": "https://user:pw@example.com/x", "events": ["*"]}, "url"),
                        ({"url": "https://example.com/x", "events": ["member_card.sync"]}, "events"),
                        ({"url": "https://example.com/x", "events": []}, "events"),
                        ({"url": "http://example.com:99999/x", "events": ["*"]}, "url"),
                        ({"url": "http://example.com:abc/x", "events": ["*"]}, "url")):
        found = await problem(await chain.admin("POST", "/v1/webhooks", body), 422, "validation_error")
        assert field in str(found["errors"])
    await problem(await other.admin("DELETE", f"/v1/webhooks/{made['id']}"), 404, "not_found")
    await problem(await other.admin("POST", "/v1/webhooks/deliveries/1/replay"), 404, "not_found")
    await chain.new_member("13600000020")
    await drain(relay(chain))
    [delivered] = (await (await chain.admin("GET", "/v1/webhooks/deliveries?status=delivered")).json())["items"]
    gone = await chain.admin("DELETE", f"/v1/webhooks/{made['id']}")
    assert gone.status == 204
    await problem(await chain.admin("POST", f"/v1/webhooks/deliveries/{delivered['id']}/replay"), 404, "not_found")
    await chain.new_member("13600000021")
    await drain(relay(chain))
    assert len(receiver.received) == 1 and (await (await chain.admin("GET", "/v1/webhooks")).json())["items"] == []
