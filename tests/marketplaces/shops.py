"""What the marketplace tests do alike, whatever the platform: serve a fake open API and point the
gateway at it, connect a shop as an operator does, send a signed push as the platform does, and
read the inbox and a member's balances as an operator and the member read them."""
from __future__ import annotations

import dataclasses

from ..e2e.programs import program

PLAIN = program(campaigns=[])  # 1 point per yuan paid whatever the day, no welcome points


async def served(aiohttp_server, fake, path: str = ""):
    """The fake (an aiohttp application) on a loopback port, its ``base_url`` set."""
    server = await aiohttp_server(fake.application())
    fake.base_url = str(server.make_url(path)).rstrip("/")
    return fake


def pointed_at(settings, platform: str, fake):
    """The gateway's settings with that platform's open API on the fake."""
    return dataclasses.replace(settings, platform_base_urls={**settings.platform_base_urls, platform: fake.base_url})


async def connected(kit, shop):
    """The shop connected to the kit's chain with its ``connection()``; its ``channel_id`` set."""
    response = await kit.admin("POST", "/v1/channels", shop.connection())
    assert response.status == 201, await response.text()
    shop.channel_id = (await response.json())["id"]
    return shop


async def push(path: str, kit, pushed: tuple[dict, bytes], status: int = 200) -> dict:
    """One push (headers, body) to the gateway's hook; its answer, the status checked."""
    headers, body = pushed
    response = await kit.client.post(path, data=body, headers=headers)
    assert response.status == status, await response.text()
    return await response.json()


async def inbox(kit, shop, status: str | None = None) -> list[dict]:
    query = f"?status={status}" if status else ""
    response = await kit.admin("GET", f"/v1/channels/{shop.channel_id}/inbox{query}")
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def balances(kit, member_id: int) -> dict:
    return (await kit.member(member_id))["balances"]


async def holder_of(kit, platform: str, buyer_id: str) -> dict:
    """The member an operator finds for that marketplace account (``?identity=``): before anyone
    binds it, the unclaimed holder of its points."""
    response = await kit.admin("GET", f"/v1/members?identity={platform}:{buyer_id}")
    assert response.status == 200, await response.text()
    [found] = (await response.json())["items"]
    return await kit.member(found["id"])
