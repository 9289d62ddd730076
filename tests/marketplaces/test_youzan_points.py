"""Youzan keeps its own member points: the worker sets each member's total there after every
balance change, wherever it happened (a Youzan order, the till), for the Youzan account bound to
the member (bound by their first Youzan order that named their phone); a resent event changes
nothing, an expired token is fetched again once, Youzan being down only delays the push."""
from __future__ import annotations

import pytest

from gateway.services import SERVICES
from gateway.worker import Relay, channel_routes
from loyalty_core.models import OutboxEvent

from ..e2e.programs import PROGRAM, line, order
from ..fakes.youzan import FakeYouzanCloud
from .shops import connected, pointed_at, served
from .test_youzan import beijing, new_shop, send


@pytest.fixture
async def cloud(aiohttp_server) -> FakeYouzanCloud:
    return await served(aiohttp_server, FakeYouzanCloud())


@pytest.fixture
def settings(settings, cloud):
    return pointed_at(settings, "youzan", cloud)


@pytest.fixture
async def relay(chain):
    services = chain.client.server.app[SERVICES]
    routes, held = channel_routes(services.settings, services.cache, services.clock)
    yield Relay(services.clock, routes)
    await held.close()


async def drain(relay: Relay) -> None:
    for _ in range(3):
        await relay.run_once()


async def points(kit, member_id: int) -> int:
    return (await kit.member(member_id))["balances"]["points"]


async def test_every_balance_change_sets_the_members_total_on_youzan(chain, cloud, relay, clock):
    await chain.set_program(PROGRAM)
    shop = await connected(chain, new_shop())
    cloud.shop(shop)
    alice = await chain.new_member("13800000001")
    bob = await chain.new_member("13800000002")  # never bought on Youzan: nothing to tell it
    await send(chain, shop.paid("Y1", "188.00", phone="13800000001", open_id="yz-alice", pay_time=beijing(clock)))
    await send(chain, shop.success("Y1"))
    await chain.sale(order("POS-B1", [line("LATTE", "coffee", 5000)], member_id=bob["id"], at=clock.now().isoformat()))
    await drain(relay)
    assert cloud.points == {(shop.kdt_id, "yz-alice"): 188}

    # spent and earned at the till: Youzan shows the new total
    await chain.sale(order("POS-A1", [line("LATTE", "coffee", 5000)], 4900, member_id=alice["id"], redeem_points=100,
                           at=clock.now().isoformat()))
    await drain(relay)
    assert await points(chain, alice["id"]) == 188 - 100 + 49
    assert cloud.points == {(shop.kdt_id, "yz-alice"): 137}
    assert {s["user"]["account_id"] for s in cloud.syncs} == {"yz-alice"}
    assert all(s["points"] >= 0 and s["biz_value"] for s in cloud.syncs)
    assert await OutboxEvent.filter(chain_id=chain.chain_id, status="pending").count() == 0

    # the outbox sends a sync again (a worker died before marking it): the same total, dropped by Youzan;
    # the balance change sent again adds no sync row
    rows = await OutboxEvent.filter(chain_id=chain.chain_id, topic="youzan.points").count()
    resent = await OutboxEvent.filter(chain_id=chain.chain_id, topic="youzan.points").order_by("-id").first()
    change = await OutboxEvent.filter(chain_id=chain.chain_id, topic="balance.changed").order_by("-id").first()
    applied = len(cloud.syncs)
    await OutboxEvent.filter(id__in=[resent.id, change.id]).update(status="pending", next_attempt_at=clock.now())
    await drain(relay)
    assert (len(cloud.syncs), cloud.duplicates) == (applied, 1)
    assert await OutboxEvent.filter(chain_id=chain.chain_id, topic="youzan.points").count() == rows
    assert cloud.points == {(shop.kdt_id, "yz-alice"): 137}
    assert cloud.token_fetches == 1  # one token for the shop, shared


async def test_an_expired_token_is_fetched_again_once_and_youzan_down_only_delays(chain, cloud, relay, clock):
    await chain.set_program(PROGRAM)
    shop = await connected(chain, new_shop())
    cloud.shop(shop)
    member = await chain.new_member("13800000011")
    await send(chain, shop.paid("Y2", "50.00", phone="13800000011", open_id="yz-carol", pay_time=beijing(clock)))
    await send(chain, shop.success("Y2"))
    await drain(relay)
    assert cloud.points == {(shop.kdt_id, "yz-carol"): 50}

    cloud.expire_tokens = True
    await chain.sale(order("POS-C1", [line("LATTE", "coffee", 2000)], member_id=member["id"], at=clock.now().isoformat()))
    await drain(relay)
    assert cloud.points == {(shop.kdt_id, "yz-carol"): 70} and cloud.token_fetches == 2

    cloud.down = True
    await chain.sale(order("POS-C2", [line("LATTE", "coffee", 3000)], member_id=member["id"], at=clock.now().isoformat()))
    await drain(relay)
    waiting = await OutboxEvent.filter(chain_id=chain.chain_id, topic="youzan.points", status="pending").count()
    assert waiting == 1 and cloud.points == {(shop.kdt_id, "yz-carol"): 70}
    cloud.down = False
    clock.advance(minutes=10)  # past the retry's backoff
    await drain(relay)
    assert cloud.points == {(shop.kdt_id, "yz-carol"): 100} == {(shop.kdt_id, "yz-carol"): await points(chain, member["id"])}


async def test_a_shop_youzan_refuses_holds_up_no_other(chain, cloud, relay, clock):
    await chain.set_program(PROGRAM)
    refused, fine = await connected(chain, new_shop()), await connected(chain, new_shop())
    cloud.shop(fine)  # the other shop's app is unknown to Youzan: every token request is refused
    member = await chain.new_member("13800000021")
    await send(chain, fine.paid("Y3", "80.00", phone="13800000021", open_id="yz-dora", pay_time=beijing(clock)))
    await send(chain, fine.success("Y3"))
    await drain(relay)
    assert cloud.points == {(fine.kdt_id, "yz-dora"): 80}
    stuck = await OutboxEvent.filter(chain_id=chain.chain_id, topic="youzan.points", status="pending")
    assert [row.payload["channel_id"] for row in stuck] == [refused.channel_id] * len(stuck) and stuck
    assert await points(chain, member["id"]) == 80
