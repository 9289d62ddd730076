"""Marketplace stores: one module per platform behind one small interface (``base.Platform``: which
shop a delivery names, verify its signature, read it into the core's ``MarketEvent`` s, the ack the
platform expects, and the order's details from its open API when the push only names the order),
a registry, and ``OpenApis``, what completes thin events for the inbox (``marketplace.Details``).
Taobao/Tmall pushes nothing: the worker pulls its messages (``taobao.TmcPull``).
"""
from __future__ import annotations

import aiohttp

from loyalty_core import channels
from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault
from loyalty_core.errors import PlatformUnavailable
from loyalty_core.marketplace import MarketEvent, Shop

from .base import OpenApi, Platform
from . import taobao
from .douyin import Douyin
from .eleme import Eleme
from .youzan import Youzan

PLATFORMS: dict[str, Platform] = {p.name: p for p in (Youzan(), Douyin(), Eleme())}  # the pushing ones
BASE_URLS = {**{name: p.base_url for name, p in PLATFORMS.items()}, "taobao": taobao.BASE_URL}
TIMEOUT = aiohttp.ClientTimeout(total=5)


class OpenApis:
    """The platforms' open APIs for one process (the gateway's, the worker's): completes an event
    whose push only named its order (``loyalty_core.marketplace.Details``)."""

    def __init__(self, base_urls: dict[str, str], vault: Vault, cache, clock: Clock) -> None:
        self.base_urls, self.vault, self.cache, self.clock = base_urls, vault, cache, clock
        self._http: aiohttp.ClientSession | None = None

    def api(self, platform: str) -> OpenApi:
        if self._http is None:  # made on first use, inside the running loop
            self._http = aiohttp.ClientSession(timeout=TIMEOUT)
        base = self.base_urls.get(platform) or BASE_URLS[platform]
        return OpenApi(self._http, base.rstrip("/"), self.cache, self.clock)

    async def __call__(self, shop: Shop, event: MarketEvent) -> MarketEvent:
        channel = await channels.connected_by_id(shop.chain_id, shop.channel_id, self.vault)
        if channel is None:
            raise PlatformUnavailable("the shop's channel is gone")
        return await PLATFORMS[shop.platform].detail(channel, event, self.api(shop.platform))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
