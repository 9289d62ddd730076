"""The demo's single process also runs the worker loop: its outbox drains without a second process."""
import asyncio

from gateway.app import create_app
from loyalty_core.models import OutboxEvent

from ..conftest import empty_database
from ..helpers import make_chain


async def test_demo_app_relays_its_own_outbox(aiohttp_client, settings, clock):
    client = await aiohttp_client(create_app(settings, clock=clock, with_worker=True))
    await empty_database()
    kit = await make_chain(client, clock, "Demo")
    await kit.new_member("13400000001")
    for _ in range(50):
        if not await OutboxEvent.filter(status="pending").exists():
            break
        await asyncio.sleep(0.1)
    assert await OutboxEvent.filter(topic="member.created", status="delivered").count() == 1
