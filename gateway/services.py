"""What a request handler or the worker may use, built once per process by the app factory."""
from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault

from adapters.marketplaces import OpenApis
from adapters.wechat.client import WeChat

from .cache import Recent
from .redis import KeySpace
from .settings import Settings


@dataclass
class Services:
    settings: Settings
    vault: Vault
    clock: Clock
    cache: KeySpace
    terminals: Recent = field(default_factory=Recent)  # terminal_id -> its credentials, at most 1 s old
    programs: Recent = field(default_factory=Recent)   # chain id -> its parsed Program, at most 1 s old
    channels: Recent = field(default_factory=Recent)   # (platform, app id) -> its connection, at most 1 s old
    wechat: WeChat | None = None                       # wechatpy behind its thread pool (set on start-up)
    marketplaces: OpenApis | None = None               # the marketplaces' open APIs (set on start-up)


SERVICES = web.AppKey("services", Services)
